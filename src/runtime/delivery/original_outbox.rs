//! Messages the original daemon acknowledged but never ran (its
//! `.meta/pending-spawn.jsonl`, docs/PROTOCOL.md "Coming from the original
//! daemon"): the backend will not send them again, so the first `start`
//! on a machine that ran the original takes them over. Each is recorded in
//! our ledger as an accepted deliver (so it runs through the same wake path
//! as any message accepted before a restart, and our journal keeps it from
//! running twice), then marked `done` in the original's file so that it is
//! never replayed again, by either daemon.
//!
//! Every line is outside input: bounded, parsed as a deliver frame with the
//! same checks as one from the backend, its agent id one path segment that
//! must be the directory it was found in, and the agent one this profile
//! knows (declared, assigned, or with the identity the original wrote).

use std::path::PathBuf;

use super::ledger::{Decision, Ledger, PendingWake};
use crate::paths::{AgentId, ProfilePaths};
use crate::protocol::frames::{self, Inbound};
use crate::workspace::{AgentLayout, Identity, pending_spawn};

/// Take over the original's unrun messages; returns the wakes to run (in
/// agent-directory order, then file order, as the original replays).
pub fn take_over(
    ledger: &mut Ledger,
    paths: &ProfilePaths,
    known: impl Fn(&AgentId) -> bool,
) -> Vec<PendingWake> {
    let mut wakes = Vec::new();
    let mut to_mark: Vec<(PathBuf, String)> = Vec::new();
    for (id, file) in outboxes(paths) {
        let (entries, skipped) = match pending_spawn::unrun(&file) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; its messages are not replayed",
                    file.display()
                );
                continue;
            }
        };
        if skipped > 0 {
            tracing::warn!(
                "{}: {skipped} line(s) that are not valid entries were skipped",
                file.display()
            );
        }
        let agent_known = known(&id);
        for entry in entries {
            if let Some(wake) = take_one(ledger, &id, agent_known, &entry) {
                wakes.push(wake);
            }
            to_mark.push((file.clone(), entry.msg_id));
        }
    }
    if to_mark.is_empty() {
        return wakes;
    }
    // Durable in our journal before the original's file says done.
    ledger.sync();
    for (file, msg_id) in to_mark {
        if let Err(e) = pending_spawn::mark_done(&file, &msg_id) {
            tracing::warn!(
                "cannot mark message {msg_id:?} done in {}: {e} (our journal still keeps it from running twice)",
                file.display()
            );
        }
    }
    if !wakes.is_empty() {
        tracing::info!(
            "replaying {} message(s) the original daemon acknowledged but never ran",
            wakes.len()
        );
    }
    wakes
}

/// One entry: a wake to run, or a log line saying why not.
fn take_one(
    ledger: &mut Ledger,
    dir_id: &AgentId,
    agent_known: bool,
    entry: &pending_spawn::Unrun,
) -> Option<PendingWake> {
    let msg = &entry.msg_id;
    let text = format!(
        "{{\"type\":\"deliver\",\"seq\":0,\"payload\":{}}}",
        entry.payload.get()
    );
    let d = match frames::parse(&text) {
        Ok(Inbound::Deliver(d)) => d,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(
                "original outbox of {dir_id}: message {msg:?} is not a valid deliver ({e}); skipped"
            );
            return None;
        }
    };
    if d.agent_id != *dir_id {
        tracing::warn!(
            "original outbox of {dir_id}: message {msg:?} is for agent {:?}; skipped",
            d.agent_id.as_str()
        );
        return None;
    }
    if !agent_known {
        tracing::warn!(
            "original outbox: message {msg:?} is for agent {dir_id}, which this profile does not know (not declared, assigned or identified); skipped"
        );
        return None;
    }
    match ledger.record_deliver(&d) {
        Decision::Accept(wake) => Some(wake),
        Decision::Duplicate | Decision::WakeDuplicate => {
            tracing::info!(
                "original outbox of {dir_id}: message {msg:?} was already handled here; not run again"
            );
            None
        }
    }
}

/// `(agent id, its pending-spawn.jsonl)` for every agent directory that has
/// one as a regular file, sorted by id.
fn outboxes(paths: &ProfilePaths) -> Vec<(AgentId, PathBuf)> {
    let mut out: Vec<(AgentId, PathBuf)> = std::fs::read_dir(&paths.agents_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| AgentId::parse(e.file_name().to_str()?).ok())
        .map(|id| {
            let file = AgentLayout::new(paths, &id)
                .meta()
                .join(pending_spawn::FILE);
            (id, file)
        })
        .filter(|(_, f)| std::fs::symlink_metadata(f).is_ok_and(|m| m.is_file()))
        .collect();
    out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    out
}

/// Whether an agent directory holds the identity the original (or we)
/// wrote for this very agent: it was assigned to this machine.
pub fn has_identity(paths: &ProfilePaths, id: &AgentId) -> bool {
    Identity::read(&AgentLayout::new(paths, id).identity())
        .is_some_and(|i| i.agent_id == id.as_str())
}
