//! One profile's daemon, assembled: ledger replay, the wake scheduler, the
//! bridge socket, signal handling and the connection, with an orderly
//! shutdown (stop taking work, stop claude groups, persist, exit 0).

use std::sync::Arc;

use serde_json::{Value, json};
use thiserror::Error;

use super::connection::{self, Fatal};
use super::ledger::{Ledger, PendingWake};
use super::settings::Settings;
use super::shared::Shared;
use super::timing::Timing;
use super::tool_calls::ToolOutcome;
use super::wake::scheduler::Scheduler;
use crate::bridge::ipc::{self, IpcError};

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
    runtimes: Vec<super::detect::Runtime>,
) -> Result<(), DaemonError> {
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
    let result = connection::run(shared.clone(), scheduler.clone(), runtimes).await;
    shared.cancel.cancel();
    scheduler.wait().await;
    let _ = ipc_task.await;
    let _ = watcher.await;
    shared.with_ledger(|l| l.compact());
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    tracing::info!("stopped");
    result.map_err(DaemonError::from)
}

/// The daemon's side of the bridge socket.
struct DaemonIpc {
    shared: Arc<Shared>,
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl ipc::Handler for DaemonIpc {
    async fn handle(&self, op: String, args: Value) -> Result<Value, IpcError> {
        match op.as_str() {
            "status" => Ok(status(&self.shared)),
            "get_current_session" => {
                let agent = str_arg(&args, "agent_id")
                    .ok_or_else(|| IpcError::new("BAD_ARGS", "agent_id is required"))?;
                let session = self
                    .shared
                    .with_live(|l| l.running.get(agent).and_then(|r| r.session_id.clone()));
                Ok(json!({"session_id": session}))
            }
            "tool_call" => {
                let agent = str_arg(&args, "agent_id").ok_or_else(|| {
                    IpcError::new("BRIDGE_DISPATCH_FAILED", "agent_id is required")
                })?;
                let tool = str_arg(&args, "tool_name").ok_or_else(|| {
                    IpcError::new("BRIDGE_DISPATCH_FAILED", "tool_name is required")
                })?;
                // The business session of the running wake, if the bridge
                // did not know it.
                let session = match str_arg(&args, "session_id") {
                    Some(s) => Some(s.to_string()),
                    None => self
                        .shared
                        .with_live(|l| l.running.get(agent).and_then(|r| r.session_id.clone())),
                };
                let tool_args = args.get("tool_args").cloned().unwrap_or_else(|| json!({}));
                match self
                    .shared
                    .tools
                    .call(
                        agent,
                        session.as_deref(),
                        tool,
                        tool_args,
                        self.shared.timing.tool_timeout,
                    )
                    .await
                {
                    ToolOutcome::Ok(data) => Ok(data),
                    ToolOutcome::Err(e) => Err(IpcError::new(
                        e.get("code")
                            .and_then(Value::as_str)
                            .unwrap_or("UNKNOWN_ERROR"),
                        e.get("message").and_then(Value::as_str).unwrap_or_default(),
                    )),
                }
            }
            other => Err(IpcError::new("UNKNOWN_OP", other)),
        }
    }
}

fn status(shared: &Arc<Shared>) -> Value {
    let s = shared.settings();
    let live = shared.with_live(|l| l.clone());
    let (last_seq, pending) = shared.with_ledger(|l| (l.last_seq(), l.pending_count()));
    let assigned = super::agents::read_assigned(&s.paths.assigned_agents_file());
    let mut agents: Vec<String> = s
        .agents
        .keys()
        .map(|a| a.to_string())
        .chain(assigned)
        .collect();
    agents.sort();
    agents.dedup();
    json!({
        "pid": std::process::id(),
        "profile": s.profile.as_str(),
        "server": s.server_url,
        "config_file": s.config_file,
        "connection": live.connection,
        "connected_since": live.connected_since,
        "last_error": live.last_error,
        "host_id": live.host_id,
        "last_seq": last_seq,
        "pending": pending,
        "queued": live.queued,
        "running": live.running,
        "agents": agents,
        "started_at": live.started_at,
        "outbox": shared.outbox.len(),
        "config_error": live.config_error,
        "config_loaded_at": live.config_loaded_at,
    })
}
