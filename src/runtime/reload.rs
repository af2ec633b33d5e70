//! Live reconfiguration: the daemon watches its config file (the parent
//! directory, so an editor's atomic rename or a nix symlink swap is seen)
//! and reloads on SIGHUP. A change is validated, the profile's local
//! resources are reconciled through the same plan/apply as `apply`, and the
//! new settings take over; a change of server, key or TLS setting
//! reconnects. An invalid file is reported (log and `status`) and the last
//! good configuration stays in force.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// Quiet time after the last event before a reload.
const DEBOUNCE: Duration = Duration::from_millis(200);

use super::settings::{Settings, file_digest};
use super::shared::{Reconcile, Shared};
use super::wake::scheduler::Scheduler;
use crate::config::{self, SecretRef};
use crate::reconcile::{self, Context, lock, render};
use crate::service::Platform;

/// Watch the config file (and the key file it names) and SIGHUP until
/// shutdown.
pub async fn watch(shared: Arc<Shared>, scheduler: Arc<Scheduler>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            return;
        }
    };
    let path = shared.settings().config_file.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watched = watched_files(&shared.settings());
    // Kept alive for the loop below; dropping it stops the watch.
    let mut _watcher = start_watcher(&watched, tx.clone());
    // A change between loading the settings and watching saw no event:
    // compare with what they were loaded from, once, now that we watch.
    let mut last = shared.settings().config_digest;
    let _ = tx.send(());
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            Some(()) = rx.recv() => {
                if !settle(&shared, &mut rx).await {
                    return;
                }
                // Editors produce several events per save; reload only when
                // the content really changed.
                let now = path.as_deref().and_then(file_digest);
                if now == last && !key_rotated(&shared) {
                    continue;
                }
                last = now;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                last = path.as_deref().and_then(file_digest);
            }
        }
        match &path {
            Some(p) => reload(&shared, &scheduler, p).await,
            None => tracing::info!("started without a config file: nothing to reload"),
        }
        // The file may now name another key file.
        let now = watched_files(&shared.settings());
        if now != watched {
            _watcher = start_watcher(&now, tx.clone());
            watched = now;
        }
    }
}

/// The config file and the key file it names.
fn watched_files(s: &Settings) -> Vec<PathBuf> {
    s.config_file
        .iter()
        .chain(&s.api_key_file)
        .cloned()
        .collect()
}

/// Whether the key file now holds another key (rewritten, renamed over,
/// symlink swapped). A key file that cannot be read is an error shown by
/// `status`, and the key in use keeps the connection.
fn key_rotated(shared: &Shared) -> bool {
    let s = shared.settings();
    let Some(file) = &s.api_key_file else {
        return false;
    };
    match SecretRef::File(file.clone()).resolve() {
        Ok(key) if key != s.api_key => true,
        Ok(_) => {
            // Back as it was: the earlier read error no longer holds.
            shared.with_live(|l| l.key_error = None);
            false
        }
        Err(e) => {
            // Not the path: a key pasted into api_key_file would be echoed.
            let text = format!("api_key_file: {e}; the key read before keeps the connection");
            let new = shared.with_live(|l| l.key_error.replace(text.clone()) != Some(text.clone()));
            if new {
                tracing::error!("{text}");
            }
            false
        }
    }
}

/// Watch the files' directories with a plain watcher: each event on one
/// of the names (written, renamed over, symlink replaced) or on a
/// directory itself is passed on, and [`settle`] debounces them. A
/// debouncing watcher would wake every 50 ms for ever, which was most of
/// the idle daemon's CPU (README.md, "Benchmarks").
fn start_watcher(
    files: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<impl Drop + use<>> {
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().filter(|d| !d.as_os_str().is_empty()))
        .map(Path::to_path_buf)
        .collect();
    let names: BTreeSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let watched_dirs = dirs.clone();
    let handler = move |result: notify::Result<notify::Event>| match result {
        // Reading a file is an event too (open, access, close): ours
        // would wake this watcher again, for ever. Only changes count.
        Ok(event) if event.kind.is_access() => {}
        Ok(event) => {
            if event.paths.iter().any(|p| {
                p.file_name().is_some_and(|n| names.contains(n)) || watched_dirs.contains(p)
            }) {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!("watching the config file: {e}"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch the config file: {e}; send SIGHUP to reload");
            return None;
        }
    };
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!("cannot watch {}: {e}; send SIGHUP to reload", dir.display());
        }
    }
    for f in files {
        tracing::info!("watching {} for changes", f.display());
    }
    Some(watcher)
}

/// After a first event: wait until none has come for [`DEBOUNCE`], so an
/// editor's several events per save, or a generator's burst of writes,
/// make one reload. `false` when the daemon stops meanwhile.
async fn settle(shared: &Shared, rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) -> bool {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return false,
            more = rx.recv() => if more.is_none() { return true },
            () = tokio::time::sleep(DEBOUNCE) => return true,
        }
    }
}

/// The same plan/apply as `apply`, for this profile's local resources
/// (never its service unit: that would restart the daemon mid-change).
/// Each change is logged as its plan line; an error is returned, and shown
/// by `status` until a later apply succeeds.
pub async fn apply_local(
    shared: &Arc<Shared>,
    desired: config::Desired,
    label: &'static str,
) -> Result<(), String> {
    let s = shared.settings();
    let profile = s.profile.clone();
    let ctx = context(&s);
    let applied = tokio::task::spawn_blocking(move || {
        let waiting = |pid| {
            let who = lock::holder_note(pid);
            tracing::info!("{label}: waiting for another apply{who} to finish");
        };
        let drift = reconcile::service_drift(&desired, &ctx, &profile);
        let outcome = match reconcile::apply_profile(&desired, &ctx, &profile, waiting) {
            Ok((plan, report)) => {
                let errors: Vec<String> = plan
                    .warnings
                    .iter()
                    .chain(&plan.errors)
                    .map(|e| format!("{}: {}", e.resource, e.message))
                    .chain(report.errors)
                    .collect();
                let summary = if plan.has_changes() {
                    render::summary_line(plan.summary())
                } else {
                    "No changes.".to_string()
                };
                (report.done, errors, summary)
            }
            Err(e) => (Vec::new(), vec![e], "not applied".to_string()),
        };
        (outcome, drift)
    })
    .await;
    let ((done, errors, summary), drift) =
        applied.map_err(|e| format!("applying local resources failed: {e}"))?;
    for d in done {
        tracing::info!("{label}: {d}");
    }
    let result = if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::redact::secrets(&errors.join("; ")).into_owned())
    };
    shared.with_live(|l| {
        l.reconcile_error = result.clone().err();
        l.last_reconcile = Some(Reconcile {
            at: crate::protocol::outbound::now_ts(),
            trigger: label.to_string(),
            summary,
            error: result.clone().err(),
        });
        l.service_drift = drift;
    });
    result
}

/// What plan/apply need to know about this machine.
pub(super) fn context(s: &Settings) -> Context {
    Context {
        home: s.home.clone(),
        exe: s.exe.clone(),
        platform: Platform::detect().unwrap_or(Platform::Systemd),
    }
}

/// The daemon's profile is not in the config file (any more).
struct Gone(PathBuf);

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this daemon's profile is gone from {}: the daemon takes no work and stays disconnected until the profile is back (`apply` removes its service unit, which stops it)",
            self.0.display()
        )
    }
}

/// Park the daemon: keep everything as it is, but disconnected and taking
/// no new wake, until a reload finds the profile again. Never falls back to
/// the original's config.json while a config file exists.
fn park(shared: &Arc<Shared>, old: &Settings, why: String, digest: u64) {
    if old.parked.as_deref() != Some(why.as_str()) {
        tracing::warn!("{why}");
    }
    let mut parked = old.clone();
    parked.parked = Some(why);
    parked.config_digest = Some(digest);
    shared.replace_settings(parked);
    shared.with_live(|l| l.config_error = None);
}

/// The settings of the new file, keeping what the command line fixed.
fn reloaded_settings(desired: &config::Desired, old: &Settings) -> Result<Settings, String> {
    let mut s = Settings::from_desired(desired, &old.profile, old.home.clone(), old.exe.clone())?;
    s.apply_env_overrides()?;
    s.apply_cli(old.cli);
    s.socket = old.socket.clone();
    if s.workspace_root.is_none() {
        s.workspace_root = old.workspace_root.clone();
    }
    Ok(s)
}

/// A new file that cannot be used: said in the log and by `status` (never
/// with a key in it); the running configuration stays.
fn not_used(shared: &Shared, path: &Path, e: String) {
    let e = crate::redact::secrets(&e).into_owned();
    tracing::error!(
        "the new configuration in {} is not used: {e}",
        path.display()
    );
    shared.metrics.reloaded(false);
    shared.with_live(|l| l.config_error = Some(e));
}

/// Load, validate and apply the config file; on any problem keep the
/// running configuration and say why.
pub async fn reload(shared: &Arc<Shared>, scheduler: &Arc<Scheduler>, path: &Path) {
    let old = shared.settings();
    let desired = match config::load(path, &old.home).map_err(|e| e.to_string()) {
        Ok(d) if d.profile(&old.profile).is_none() => {
            let why = Gone(d.source.clone()).to_string();
            return park(shared, &old, why, d.digest);
        }
        Ok(d) => d,
        Err(e) => return not_used(shared, path, e),
    };
    let new = match reloaded_settings(&desired, &old) {
        Ok(s) => s,
        Err(e) => return not_used(shared, path, e),
    };
    // The same plan/apply as `apply`, for this profile's local resources.
    if let Err(e) = apply_local(shared, desired, "config reload").await {
        tracing::warn!("config reload: {e}");
    }
    let reconnect = super::session::needs_reconnect(&old, &new);
    scheduler.set_concurrency(new.max_concurrent_wakes);
    shared.replace_settings(new);
    shared.with_live(|l| {
        l.config_error = None;
        l.key_error = None;
        l.config_loaded_at = Some(crate::protocol::outbound::now_ts());
        l.config_generation += 1;
    });
    shared.metrics.reloaded(true);
    tracing::info!("configuration reloaded from {}", path.display());
    if reconnect {
        // The session sees the new settings through its watch, wherever
        // it is (connected, in a handshake, or waiting to retry).
        tracing::info!("server settings changed: the session reconnects with them");
    }
}
