//! An open session's life: frames in (delivers recorded, made durable in
//! batches, acked, handed to the scheduler), frames out (the outbox, in
//! order), and a watchdog for a silent server. Transport-agnostic: it
//! works on any [`FrameReader`] and [`FrameWriter`].

use std::sync::Arc;

use tokio::sync::watch;

use super::Ended;
use super::handshake::Established;
use crate::paths::AgentId;
use crate::protocol::frames::{self, Inbound};
use crate::protocol::outbound::now_ts;
use crate::protocol::{AckStatus, Outbound};
use crate::runtime::agents;
use crate::runtime::delivery::ledger::{Decision, PendingWake};
use crate::runtime::settings::Settings;
use crate::runtime::shared::{Connection, Shared};
use crate::runtime::transport::{Event, FrameReader, FrameWriter};
use crate::runtime::wake::scheduler::Scheduler;

/// At most this many delivers share one sync, so a flood still gets acks
/// out steadily.
const MAX_BATCH: usize = 256;

/// Exchange frames until something ends the session.
pub(crate) async fn run<R: FrameReader, W: FrameWriter>(
    link: Established<R, W>,
    shared: &Arc<Shared>,
    scheduler: &Arc<Scheduler>,
    settings_rx: &mut watch::Receiver<Arc<Settings>>,
    connected_with: &Settings,
) -> Ended {
    let Established {
        mut reader,
        mut writer,
        ..
    } = link;
    shared.with_live(|l| {
        l.connection = Connection::Connected { since: now_ts() };
        l.last_error = None;
    });
    let lost = |reason: String| Ended::Lost {
        handshake: true,
        reason,
    };
    // Frames produced while disconnected go first, in order.
    if let Err(e) = writer.flush(&shared.outbox).await {
        return lost(e);
    }
    // The silence deadline moves only when something arrives; the timer is
    // re-armed only when it fires early, not on every frame (registering a
    // timer can wake the runtime's other thread).
    let mut last_heard = tokio::time::Instant::now();
    let watchdog = tokio::time::sleep_until(last_heard + shared.timing.watchdog);
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => {
                writer.close("daemon stopping", &shared.outbox).await;
                return Ended::Shutdown;
            }
            () = super::reconnect_needed(settings_rx, connected_with) => {
                writer.close("configuration changed", &shared.outbox).await;
                return Ended::Reconfigured;
            }
            () = &mut watchdog => {
                let due = last_heard + shared.timing.watchdog;
                if tokio::time::Instant::now() < due {
                    watchdog.as_mut().reset(due);
                    continue;
                }
                shared.metrics.watchdog_fired(shared.with_live(|l| l.streams_partials));
                writer.close("no message from the server", &shared.outbox).await;
                return lost(format!("no message from the server for {:?}", shared.timing.watchdog));
            }
            event = reader.next() => {
                last_heard = tokio::time::Instant::now();
                shared.metrics.heard();
                if let Some(end) = on_events(event, &mut reader, &mut writer, shared, scheduler).await {
                    return end;
                }
            }
            sent = writer.send_next(&shared.outbox) => {
                if let Err(e) = sent {
                    return lost(e);
                }
            }
        }
    }
}

/// Handle `first` and every event already waiting behind it as one batch:
/// a burst of delivers costs one sync. `Some` ends the session.
async fn on_events<R: FrameReader, W: FrameWriter>(
    first: Event,
    reader: &mut R,
    writer: &mut W,
    shared: &Arc<Shared>,
    scheduler: &Arc<Scheduler>,
) -> Option<Ended> {
    let lost = |reason: String| Ended::Lost {
        handshake: true,
        reason,
    };
    let mut batch = Batch::default();
    let mut event = first;
    let ended = loop {
        let reply = match event {
            Event::Closed(reason) => {
                writer
                    .close("the server ended the connection", &shared.outbox)
                    .await;
                break Some(lost(reason));
            }
            Event::TooLarge { size, max } => break Some(Ended::FrameTooLarge { size, max }),
            Event::Alive => Reply::None,
            Event::Frame(text) => dispatch(text.as_str(), shared, &mut batch),
        };
        match reply {
            Reply::None => {}
            Reply::Pong => {
                if let Err(e) = writer.pong().await {
                    break Some(lost(e));
                }
            }
            Reply::Bye(reason) => {
                writer.close("bye", &shared.outbox).await;
                if host_removed(&reason) {
                    break Some(Ended::HostRemoved(reason));
                }
                break Some(lost(format!("the server said bye ({reason:?})")));
            }
        }
        if batch.acks.is_empty() || batch.acks.len() >= MAX_BATCH {
            break None;
        }
        match reader.next_now() {
            Some(next) => event = next,
            None => break None,
        }
    };
    if !batch.acks.is_empty()
        && let Err(e) = commit(batch, writer, shared, scheduler).await
        && ended.is_none()
    {
        return Some(lost(e));
    }
    ended
}

fn host_removed(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase().replace(['-', ' '], "_");
    ["host_removed", "host_deleted", "host_revoked", "revoked"]
        .iter()
        .any(|k| r.contains(k))
}

enum Reply {
    None,
    Pong,
    Bye(String),
}

/// Delivers written to the journal but not yet durable: acked and run only
/// after `commit`.
#[derive(Default)]
struct Batch {
    acks: Vec<Outbound>,
    wakes: Vec<PendingWake>,
    /// When each deliver arrived (the deliver→ack latency metric).
    arrivals: Vec<std::time::Instant>,
}

/// Make the batch durable, send its acks, then hand its wakes to the
/// scheduler: the acks are on the wire before a claude process is forked
/// next to them. Frames already queued go first, in order.
async fn commit<W: FrameWriter>(
    batch: Batch,
    writer: &mut W,
    shared: &Arc<Shared>,
    scheduler: &Arc<Scheduler>,
) -> Result<(), String> {
    if shared.with_ledger(|l| {
        l.sync();
        l.compaction_due()
    }) {
        shared.want_sync();
    }
    for ack in batch.acks {
        shared.metrics.ack(AckStatus::Received);
        shared.outbox.push(ack);
    }
    for arrived in batch.arrivals {
        shared.metrics.acked_after(arrived.elapsed());
    }
    let sent = writer.flush(&shared.outbox).await;
    // Queued whatever happened to the connection: they are durable, so
    // they must run (and their acks go out after the next handshake).
    for wake in batch.wakes {
        let message_id = wake.message_id.clone();
        if !scheduler.enqueue(wake) {
            shared.metrics.ack(AckStatus::QueueFull);
            shared.outbox.push(Outbound::Ack {
                message_id,
                status: AckStatus::QueueFull,
                seq: None,
            });
        }
    }
    sent
}

/// Handle one inbound frame. Malformed frames are logged and skipped:
/// the connection and the daemon stay up (the original crashed on them).
fn dispatch(text: &str, shared: &Arc<Shared>, batch: &mut Batch) -> Reply {
    let frame = match frames::parse(text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("skipping a malformed frame: {e}");
            return Reply::None;
        }
    };
    match frame {
        Inbound::Ping => return Reply::Pong,
        Inbound::Deliver(d) => {
            shared.metrics.deliver();
            batch.arrivals.push(std::time::Instant::now());
            let decision = shared.with_ledger(|l| l.record_deliver(&d));
            batch.acks.push(Outbound::Ack {
                message_id: d.message_id.clone(),
                status: AckStatus::Received,
                seq: Some(d.seq),
            });
            if let Decision::Accept(wake) = decision {
                batch.wakes.push(wake);
            }
        }
        Inbound::ToolResult(r) => shared.tools.resolve(r),
        // Applied off this task (its file writes must not delay acks).
        Inbound::Assign(a) => shared.assigns.push(a),
        Inbound::Unassign { agent_id, reason } => {
            tracing::info!(
                "unassign: agent {agent_id:?} unbound ({reason:?}); its workspace is kept"
            );
            if let Ok(id) = AgentId::parse(&agent_id) {
                agents::on_unassign(&shared.settings(), &id);
            }
        }
        Inbound::Bye { reason } => {
            tracing::warn!("the server said bye: {reason:?}");
            return Reply::Bye(reason);
        }
        Inbound::Hello { .. } => {}
        Inbound::Other(ty) => tracing::warn!("ignoring a frame of unknown type {ty:?}"),
    }
    Reply::None
}

#[cfg(test)]
mod tests;
