//! The daemon as a small operator: besides following edits of its config
//! file, it re-plans its profile's directories and agents now and then
//! (`resync_sec`, default 5 minutes, jittered) and repairs drift — a
//! deleted workspace or `.meta` file is restored, each repair logged as its
//! plan line. A reconcile that fails (disk full, permissions) is retried
//! with a backoff, like a controller's requeue, and its error is shown by
//! `status` until it succeeds. Its own service unit is never rewritten here
//! (that would restart it mid-change): `apply` does that.

use std::sync::Arc;
use std::time::Duration;

use super::reload::{apply_local, context};
use super::shared::Shared;
use super::timing::{Backoff, jitter};
use crate::{config, reconcile};

pub async fn run(shared: Arc<Shared>) {
    initial_drift(&shared).await;
    let mut retry = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
    let mut failed = false;
    loop {
        let s = shared.settings();
        let Some(every) = shared.timing.resync.or(s.resync) else {
            // Off: wait for a settings change that may turn it on.
            let mut rx = shared.watch_settings();
            tokio::select! {
                _ = rx.changed() => continue,
                () = shared.cancel.cancelled() => return,
            }
        };
        let delay = if failed {
            retry.next_delay()
        } else {
            jitter(every, 0.1)
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.cancel.cancelled() => return,
        }
        failed = resync_once(&shared).await.is_err();
        if !failed {
            retry.reset();
        }
    }
}

/// One pass: the file as it is now, applied to this profile's local
/// resources. Nothing to do while parked, or without a config file.
async fn resync_once(shared: &Arc<Shared>) -> Result<(), String> {
    let s = shared.settings();
    let (Some(path), None) = (&s.config_file, &s.parked) else {
        return Ok(());
    };
    // A file that does not load is the reload's to report.
    let Ok(desired) = config::load(path, &s.home) else {
        return Ok(());
    };
    if desired.profile(&s.profile).is_none() {
        return Ok(());
    }
    apply_local(shared, desired, "resync")
        .await
        .inspect_err(|e| tracing::warn!("resync: {e}; retrying"))
}

/// At start (which applied everything else itself): what `apply` would
/// change in the service unit, for `status`.
async fn initial_drift(shared: &Arc<Shared>) {
    let s = shared.settings();
    let Some(path) = s.config_file.clone() else {
        return;
    };
    let (ctx, home, profile) = (context(&s), s.home.clone(), s.profile.clone());
    let drift = tokio::task::spawn_blocking(move || {
        let desired = config::load(&path, &home).ok()?;
        Some(reconcile::service_drift(&desired, &ctx, &profile))
    })
    .await;
    if let Ok(Some(drift)) = drift {
        shared.with_live(|l| l.service_drift = drift);
    }
}
