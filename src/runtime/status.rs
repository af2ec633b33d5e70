//! The running daemon's status report, one typed value: `status` prints it
//! as text or JSON, the IPC `status` request carries it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::shared::{Connection, RunningWake, Shared};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub profile: String,
    pub server: String,
    pub config_file: Option<PathBuf>,
    pub connection: Connection,
    /// `ws`, `sse`, or for `auto` which one and why.
    #[serde(default)]
    pub transport: Option<String>,
    pub last_error: Option<String>,
    pub host_id: Option<String>,
    pub last_seq: i64,
    /// Accepted messages not yet run to completion.
    pub pending: usize,
    /// Wakes waiting for their agent or for a slot.
    pub queued: usize,
    pub running_wakes: BTreeMap<String, RunningWake>,
    /// Declared and server-assigned agents.
    pub agents: Vec<String>,
    pub started_at: String,
    /// Frames waiting for the connection.
    pub outbox: usize,
    /// Progress frames (running statuses, partial texts) shed because the
    /// outbox was over its bound while the backend was unreachable.
    #[serde(default)]
    pub outbox_dropped: u64,
    pub config_error: Option<String>,
    pub config_loaded_at: Option<String>,
    /// Why the last reconcile of local resources failed (retried).
    #[serde(default)]
    pub reconcile_error: Option<String>,
    /// What the backend asked that was refused, by agent (SECURITY.md).
    #[serde(default)]
    pub refused: BTreeMap<String, String>,
}

pub fn report(shared: &Arc<Shared>) -> StatusReport {
    let s = shared.settings();
    let live = shared.with_live(|l| l.clone());
    let (last_seq, pending) = shared.with_ledger(|l| (l.last_seq(), l.pending_count()));
    let assigned = crate::workspace::assigned::read(&s.paths.assigned_agents_file());
    let mut agents: Vec<String> = s
        .agents
        .keys()
        .map(|a| a.to_string())
        .chain(assigned)
        .collect();
    agents.sort();
    agents.dedup();
    StatusReport {
        pid: std::process::id(),
        profile: s.profile.to_string(),
        server: s.server_url.clone(),
        config_file: s.config_file.clone(),
        connection: live.connection,
        transport: live.transport,
        last_error: live.last_error,
        host_id: live.host_id,
        last_seq,
        pending,
        queued: live.queued,
        running_wakes: live
            .running
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        agents,
        started_at: live.started_at,
        outbox: shared.outbox.len(),
        outbox_dropped: shared.outbox.dropped(),
        config_error: live.config_error.or(live.key_error),
        config_loaded_at: live.config_loaded_at,
        reconcile_error: live.reconcile_error,
        refused: live
            .refusals
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}
