//! The running daemon's status report, one typed value: `status` prints it
//! as text or JSON, the IPC `status` request carries it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::shared::{AgentWakes, Connection, LastWake, Reconcile, RunningWake, Shared};
use crate::protocol::{MessageId, Usage};

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
    /// Hash of the config text in force (16 hex digits), to tell which
    /// version of a generated file the daemon runs.
    #[serde(default)]
    pub config_hash: Option<String>,
    /// Configurations put in force: 1 at start, one more per reload.
    #[serde(default)]
    pub config_generation: u64,
    /// Why the last reconcile of local resources failed (retried).
    #[serde(default)]
    pub reconcile_error: Option<String>,
    #[serde(default)]
    pub last_reconcile: Option<Reconcile>,
    /// What `apply` would change in this profile's service unit: the
    /// daemon never rewrites its own unit.
    #[serde(default)]
    pub service_drift: Vec<String>,
    /// Each agent of `agents`: its wakes and usage since the daemon started.
    #[serde(default)]
    pub by_agent: BTreeMap<String, AgentReport>,
    /// Usage summed over every agent since the daemon started.
    #[serde(default)]
    pub usage: Usage,
    /// What the backend asked that was refused, by agent (SECURITY.md).
    #[serde(default)]
    pub refused: BTreeMap<String, String>,
}

/// One agent in `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentReport {
    /// The message of its running wake.
    pub running: Option<MessageId>,
    pub queued: usize,
    /// Wakes run to a final status since the daemon started.
    pub finished: u64,
    pub last_wake: Option<LastWake>,
    pub usage: Usage,
}

fn by_agent(agents: &[String], live: &super::shared::Live) -> BTreeMap<String, AgentReport> {
    agents
        .iter()
        .map(|id| {
            let wakes = live
                .wakes
                .iter()
                .find(|(a, _)| a.as_str() == id)
                .map(|(_, w)| w.clone())
                .unwrap_or_else(AgentWakes::default);
            let running = live
                .running
                .iter()
                .find(|(a, _)| a.as_str() == id)
                .map(|(_, r)| r.message_id.clone());
            let report = AgentReport {
                running,
                queued: live.queued_by_agent.get(id).copied().unwrap_or(0),
                finished: wakes.finished,
                last_wake: wakes.last,
                usage: wakes.usage,
            };
            (id.clone(), report)
        })
        .collect()
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
    let by_agent = by_agent(&agents, &live);
    let mut usage = Usage::default();
    for w in live.wakes.values() {
        usage.add(&w.usage);
    }
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
        config_hash: s.config_digest.map(|d| format!("{d:016x}")),
        config_generation: live.config_generation,
        reconcile_error: live.reconcile_error,
        last_reconcile: live.last_reconcile,
        service_drift: live.service_drift,
        by_agent,
        usage,
        refused: live
            .refusals
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}
