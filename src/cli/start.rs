//! `start`: run one profile's daemon in the foreground.

use std::path::{Path, PathBuf};

use clap::Args;

use super::profile::{ProfileArg, flag};
use crate::config;
use crate::paths::{Home, ProfileName};
use crate::reconcile::{self, Context, lock as apply_lock, render};
use crate::runtime::delivery::ledger::{Ledger, PendingWake};
use crate::runtime::delivery::original_outbox;
use crate::runtime::lock::{self, LockError, PidFile};
use crate::runtime::settings::{CliOverrides, OneShotTls, Settings};
use crate::runtime::timing::Timing;
use crate::runtime::transport::tls;
use crate::runtime::wake::command::child_environment;
use crate::runtime::{daemon, detect};
use crate::service::Platform;

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// One-shot mode: connect to this server without a config file (needs
    /// --api-key too).
    #[arg(long, value_name = "URL")]
    pub server_url: Option<String>,
    /// One-shot mode: the machine API key (sk_machine_…). Prefer a config
    /// file with api_key_file: command lines are visible to other users.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Skip TLS certificate verification (self-signed development servers).
    #[arg(long)]
    pub insecure: bool,
    /// Allow an http:// --server-url (or the original's config.json
    /// server_url) to another machine: the machine key then crosses the
    /// network unencrypted. Not needed for localhost, 127.0.0.0/8 or ::1. A
    /// cloudagent.toml server opts in with allow_insecure_http = true.
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Transport to the backend: ws, sse or auto (WebSocket, falling back
    /// to SSE when the upgrade is refused). Default: the server's
    /// `transport` in the config file, else auto.
    #[arg(long, value_name = "ws|sse|auto")]
    pub transport: Option<String>,
    /// Host-level workspace root: agents run in <DIR>/<agent id>/workspace.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workspace_root: Option<PathBuf>,
}

fn usage(msg: &str) -> u8 {
    eprintln!("Error: {msg}");
    2
}

fn fail(msg: &str) -> u8 {
    eprintln!("Error: {msg}");
    1
}

pub fn run(config_flag: Option<&Path>, args: &StartArgs) -> u8 {
    let profile = match args.profile.resolve() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let transport = match args.transport.as_deref().map(config::Transport::parse) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return usage(&e),
    };
    if args.insecure {
        eprintln!("⚠️  Insecure: TLS certificate verification disabled.");
    }
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(&format!("cannot find the path of this program: {e}")),
    };
    let (mut settings, desired) = match (&args.server_url, &args.api_key) {
        (Some(url), Some(key)) => {
            if !key.starts_with("sk_machine_") {
                return usage("--api-key must start with sk_machine_");
            }
            let tls = OneShotTls {
                insecure: args.insecure,
                allow_insecure_http: args.allow_insecure_http,
            };
            match Settings::one_shot(url, key, tls, &profile, home.clone(), exe.clone()) {
                Ok(s) => (s, None),
                Err(e) => return usage(&e),
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            return usage("--server-url and --api-key must be used together");
        }
        (None, None) => match from_files(config_flag, &profile, &home, &exe, args) {
            Ok(pair) => pair,
            Err(e) => return fail(&e),
        },
    };
    settings.apply_cli(CliOverrides {
        insecure: args.insecure,
        transport,
    });
    if let Err(e) = settings.apply_env_overrides() {
        return usage(&e);
    }

    // Local resources first, through the same plan/apply as `apply`.
    if let Err(e) = prepare(&settings, desired.as_ref(), &home, &exe) {
        return fail(&e);
    }
    let _lock = match lock::acquire(&settings.paths.lock_file(), &settings.paths.pid_file()) {
        Ok(l) => l,
        Err(LockError::Held(pid)) => {
            let holder = pid
                .map(|p| format!("running pid={p}"))
                .unwrap_or_else(|| "another process holds the lock".into());
            let f = flag(&profile);
            return fail(&format!(
                "profile '{profile}' already has a daemon running ({holder}). Stop it via `cloudagent-daemon stop{f}` or `cloudagent-daemon uninstall-service{f}` before starting another."
            ));
        }
        Err(LockError::Io(e)) => {
            return fail(&format!(
                "cannot lock {}: {e}",
                settings.paths.lock_file().display()
            ));
        }
    };

    let (mut ledger, mut pending) = match Ledger::open(&settings.paths) {
        Ok(x) => x,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(w) = &args.workspace_root {
        let abs = if w.is_absolute() {
            w.clone()
        } else {
            std::env::current_dir()
                .map(|d| d.join(w))
                .unwrap_or_else(|_| w.clone())
        };
        if let Err(e) = crate::fsutil::create_dir_all(&abs, 0o755) {
            return fail(&format!(
                "cannot create --workspace-root {}: {e}",
                abs.display()
            ));
        }
        ledger.set_workspace_root(&abs.display().to_string());
        settings.workspace_root = Some(abs);
    } else if settings.workspace_root.is_none() {
        settings.workspace_root = ledger.workspace_root().map(PathBuf::from);
    }
    let timing = match Timing::from_env() {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let level = desired
        .as_ref()
        .map(|d| d.daemon.log_level.as_str())
        .unwrap_or("info");
    let _log_guard = match crate::logging::init_daemon(&settings.paths.logs_dir(), level) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    let _pid = match PidFile::write(&settings.paths.pid_file()) {
        Ok(p) => p,
        Err(e) => {
            return fail(&format!(
                "cannot write {}: {e}",
                settings.paths.pid_file().display()
            ));
        }
    };
    pending.extend(take_over_original_outbox(&mut ledger, &settings));
    // Children (claude, the bridge, agent shells) find the profile here.
    // SAFETY: single-threaded at this point; no runtime has started.
    unsafe { std::env::set_var(crate::protocol::env::PROFILE, profile.as_str()) };

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    tls::install_crypto_provider();
    let host = ledger.host_id().map(String::from);
    rt.block_on(async {
        let runtimes = detect::detect(&home.home, &child_environment(&settings)).await;
        print!("{}", detect::render(&runtimes));
        let profile_note = if profile.is_default() {
            String::new()
        } else {
            format!(" [profile={profile}]")
        };
        println!(
            "Connecting to {} as host {}{profile_note}...",
            settings.server_url,
            host.as_deref().unwrap_or("(assigned on connect)")
        );
        tracing::info!(
            "starting: profile={profile} server={} pid={}",
            settings.server_url,
            std::process::id()
        );
        match daemon::run(settings, timing, ledger, pending, runtimes).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("Error: {e}");
                1
            }
        }
    })
}

/// Messages the original daemon acknowledged but never ran, for agents
/// this profile knows (see `original_outbox`).
fn take_over_original_outbox(ledger: &mut Ledger, settings: &Settings) -> Vec<PendingWake> {
    let assigned = crate::workspace::assigned::read(&settings.paths.assigned_agents_file());
    original_outbox::take_over(ledger, &settings.paths, |id| {
        settings.agents.contains_key(id)
            || assigned.contains(id.as_str())
            || original_outbox::has_identity(&settings.paths, id)
    })
}

/// The config file if it declares this profile, else the original daemon's
/// `config.json` (written by its `login`).
fn from_files(
    config_flag: Option<&Path>,
    profile: &ProfileName,
    home: &Home,
    exe: &Path,
    args: &StartArgs,
) -> Result<(Settings, Option<config::Desired>), String> {
    let explicit = config_flag.is_some()
        || std::env::var_os(config::CONFIG_ENV).is_some_and(|v| !v.is_empty());
    let path = config::resolve_path(config_flag, home);
    let legacy = home.profile(profile).legacy_config_file();
    if explicit || path.exists() {
        let desired = config::load(&path, home).map_err(|e| e.to_string())?;
        if desired.profile(profile).is_some() || explicit || !legacy.exists() {
            let s = Settings::from_desired(&desired, profile, home.clone(), exe.to_path_buf())?;
            return Ok((s, Some(desired)));
        }
    }
    if legacy.exists() {
        return Settings::from_legacy(
            &legacy,
            profile,
            home.clone(),
            exe.to_path_buf(),
            args.allow_insecure_http,
        )
        .map(|s| (s, None));
    }
    let f = flag(profile);
    Err(format!(
        "no configuration for profile '{profile}': declare [profiles.{profile}] in {} (see the README and examples/), or pass --server-url and --api-key for one-shot mode (`cloudagent-daemon start{f} --server-url URL --api-key sk_machine_...`). An install of the original daemon is picked up from {}.",
        path.display(),
        legacy.display()
    ))
}

/// Bring the profile's directories and declared agents in line before
/// connecting (never its service unit: that is `apply`'s job).
fn prepare(
    settings: &Settings,
    desired: Option<&config::Desired>,
    home: &Home,
    exe: &Path,
) -> Result<(), String> {
    let Some(desired) = desired else {
        for dir in [settings.paths.base.clone(), settings.paths.logs_dir()] {
            crate::fsutil::create_dir_all(&dir, 0o700)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        return Ok(());
    };
    let ctx = Context {
        home: home.clone(),
        exe: exe.to_path_buf(),
        platform: Platform::detect()?,
    };
    let (plan, report) = reconcile::apply_profile(desired, &ctx, &settings.profile, |pid| {
        let who = apply_lock::holder_note(pid);
        eprintln!("Waiting for another apply{who} to finish before applying local resources...");
    })?;
    for e in plan.warnings.iter().chain(&plan.errors) {
        eprintln!("warning: {}: {}", e.resource, e.message);
    }
    if plan.has_changes() {
        print!("{}", render::text(&plan, &[], &home.home));
    }
    for e in &report.errors {
        eprintln!("warning: {e}");
    }
    Ok(())
}
