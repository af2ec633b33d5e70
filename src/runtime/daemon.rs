//! One profile's daemon, assembled: ledger replay, the wake scheduler, the
//! bridge socket, signal handling and the connection, with an orderly
//! shutdown (stop taking work, stop claude groups, persist, exit 0).

use std::sync::Arc;

use thiserror::Error;

use super::delivery::ledger::{Ledger, PendingWake};
use super::ipc::DaemonIpc;
use super::session::{self, Fatal};
use super::settings::Settings;
use super::shared::Shared;
use super::timing::Timing;
use super::wake::leftover;
use super::wake::scheduler::Scheduler;
use crate::bridge::ipc;
use crate::protocol::outbound::Runtime;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Fatal(#[from] Fatal),
    #[error("cannot listen on the bridge socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

pub async fn run(
    settings: Settings,
    timing: Timing,
    ledger: Ledger,
    pending: Vec<PendingWake>,
    runtimes: Vec<Runtime>,
) -> Result<(), DaemonError> {
    // Before any wake runs again: what a daemon killed together with its
    // wakes' supervisors left running (see `wake::leftover`).
    let records = settings.paths.wakes_dir();
    let grace = timing.kill_grace;
    let _ = tokio::task::spawn_blocking(move || leftover::clean_up(&records, grace)).await;
    let socket = settings.socket.clone();
    let max = settings.max_concurrent_wakes;
    let shared = Shared::new(settings, timing, ledger);
    let scheduler = Scheduler::new(shared.clone(), max, tokio::runtime::Handle::current());
    if !pending.is_empty() {
        tracing::info!(
            "replaying {} accepted message(s) that did not finish before the last stop",
            pending.len()
        );
    }
    for wake in pending {
        scheduler.enqueue(wake);
    }

    let (server, listener) = ipc::Server::bind(&socket).map_err(|source| DaemonError::Socket {
        path: socket.display().to_string(),
        source,
    })?;
    let ipc_task = tokio::spawn(server.serve(
        listener,
        Arc::new(DaemonIpc {
            shared: shared.clone(),
        }),
        shared.cancel.clone(),
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DaemonError::Signals)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(DaemonError::Signals)?;
    let cancel = shared.cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
            _ = cancel.cancelled() => return,
        }
        cancel.cancel();
    });

    let watcher = tokio::spawn(super::reload::watch(shared.clone(), scheduler.clone()));
    let syncer = tokio::spawn(super::delivery::syncer::run(shared.clone()));
    let assigns = tokio::spawn(super::assign_queue::run(shared.clone()));
    let resync = tokio::spawn(super::resync::run(shared.clone()));
    let metrics = tokio::spawn(super::metrics_server::run(shared.clone()));
    let result = session::run(shared.clone(), scheduler.clone(), runtimes).await;
    shared.cancel.cancel();
    scheduler.wait().await;
    let _ = ipc_task.await;
    let _ = watcher.await;
    let _ = syncer.await;
    let _ = assigns.await;
    let _ = resync.await;
    let _ = metrics.await;
    shared.with_ledger(|l| {
        l.sync();
        l.compact()
    });
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    tracing::info!("stopped");
    result.map_err(DaemonError::from)
}
