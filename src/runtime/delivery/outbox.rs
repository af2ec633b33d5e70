//! Frames waiting to go to the backend, in order. They survive a dropped
//! connection and are sent after the next handshake (the original lost
//! frames produced while it was disconnected).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::paths::AgentId;
use crate::protocol::{Outbound, WakeStatus};

/// Frames held while the backend is unreachable before the least important
/// are shed (see [`Outbox::push`]).
pub const MAX_FRAMES: usize = 10_000;
/// Same, by approximate size ([`Outbound::weight`]).
pub const MAX_BYTES: usize = 32 << 20;

pub struct Outbox {
    queue: Mutex<Queue>,
    notify: Notify,
    max_frames: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Outbound>,
    bytes: usize,
    /// Frames shed since the start, for `status`.
    dropped: u64,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::with_bounds(MAX_FRAMES, MAX_BYTES)
    }
}

/// What may be shed when the outbox is over its bound. Acks and final
/// statuses never are: the backend's bookkeeping depends on them.
fn sheddable(f: &Outbound) -> bool {
    match f {
        Outbound::Status { status, .. } => *status == WakeStatus::Running,
        Outbound::Partial { .. } => true,
        _ => false,
    }
}

/// The agent a sheddable frame is about, and its kind: a later frame of
/// the same key supersedes it.
fn supersede_key(f: &Outbound) -> Option<(&AgentId, bool)> {
    match f {
        Outbound::Status { agent_id, .. } => Some((agent_id, true)),
        Outbound::Partial { agent_id, .. } => Some((agent_id, false)),
        _ => None,
    }
}

impl Queue {
    fn push(&mut self, frame: Outbound) {
        self.bytes += frame.weight();
        self.frames.push_back(frame);
    }

    fn remove_where(&mut self, mut drop: impl FnMut(usize, &Outbound) -> bool) -> usize {
        let mut i = 0;
        let before = self.frames.len();
        let mut bytes = self.bytes;
        self.frames.retain(|f| {
            let gone = drop(i, f);
            i += 1;
            if gone {
                bytes -= f.weight();
            }
            !gone
        });
        self.bytes = bytes;
        before - self.frames.len()
    }

    /// First only the latest agent_status (and partial text) per agent is
    /// kept among the sheddable frames, then the oldest sheddable ones go.
    fn shed(&mut self, max_frames: usize, max_bytes: usize) {
        let over = |q: &Self| q.frames.len() > max_frames || q.bytes > max_bytes;
        let mut latest: HashMap<(AgentId, bool), usize> = HashMap::new();
        for (i, f) in self.frames.iter().enumerate() {
            if let Some((agent, kind)) = supersede_key(f) {
                latest.insert((agent.clone(), kind), i);
            }
        }
        let superseded = self.remove_where(|i, f| {
            sheddable(f)
                && supersede_key(f).is_some_and(|(a, k)| latest.get(&(a.clone(), k)) != Some(&i))
        });
        self.dropped += superseded as u64;
        while over(self) {
            let Some(at) = self.frames.iter().position(sheddable) else {
                // Only frames that are never shed: they stay, over the bound.
                return;
            };
            if let Some(f) = self.frames.remove(at) {
                self.bytes -= f.weight();
                self.dropped += 1;
            }
        }
    }
}

impl Outbox {
    pub fn with_bounds(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            max_frames,
            max_bytes,
        }
    }

    /// A poisoned lock means a thread panicked while changing the queue:
    /// frames may be lost, which this daemon promises never happens, so
    /// stop rather than go on with a queue in an unknown state.
    fn queue(&self) -> MutexGuard<'_, Queue> {
        match self.queue.lock() {
            Ok(q) => q,
            Err(_) => crate::runtime::fatal("the outbox lock is poisoned"),
        }
    }

    /// Queue a frame. Over the bound (the backend has been unreachable for
    /// long), progress frames are shed: superseded `running` statuses and
    /// partial texts first, then the oldest of them; acks, final statuses,
    /// session starts and tool calls are always kept.
    pub fn push(&self, frame: Outbound) {
        {
            let mut q = self.queue();
            if let Outbound::Partial { agent_id, .. } = &frame {
                // Each partial text holds all the text so far: a queued
                // older one says nothing the new one does not (the first
                // frame may be in flight and stays).
                let agent = agent_id.clone();
                let gone = q.remove_where(|i, f| {
                    i > 0 && matches!(f, Outbound::Partial { agent_id, .. } if *agent_id == agent)
                });
                q.dropped += gone as u64;
            }
            q.push(frame);
            if q.frames.len() > self.max_frames || q.bytes > self.max_bytes {
                q.shed(self.max_frames, self.max_bytes);
            }
        }
        self.notify.notify_one();
    }

    /// The oldest frame, once there is one; it stays queued until `pop`.
    pub async fn front(&self) -> Outbound {
        loop {
            let notified = self.notify.notified();
            if let Some(f) = self.front_now() {
                return f;
            }
            notified.await;
        }
    }

    /// The oldest frame, if there is one now; it stays queued until `pop`.
    pub fn front_now(&self) -> Option<Outbound> {
        self.queue().frames.front().cloned()
    }

    /// Drop the oldest frame after it was handed to the transport.
    pub fn pop(&self) {
        let mut q = self.queue();
        if let Some(f) = q.frames.pop_front() {
            q.bytes -= f.weight();
        }
    }

    /// Forget a tool call that was not sent yet: its caller was already
    /// told it failed, so the backend must not perform it later.
    pub fn remove_tool_call(&self, request_id: &str) -> bool {
        self.queue()
            .remove_where(|_, f| matches!(f, Outbound::ToolCall(c) if c.request_id == request_id))
            > 0
    }

    /// Drop everything queued: the backend changed (a new host id), and
    /// frames meant for the old one must not reach it.
    pub fn clear(&self) -> usize {
        let mut q = self.queue();
        let n = q.frames.len();
        q.frames.clear();
        q.bytes = 0;
        n
    }

    pub fn len(&self) -> usize {
        self.queue().frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames shed over the bound since the start.
    pub fn dropped(&self) -> u64 {
        self.queue().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::outbound::ToolCall;
    use crate::protocol::{AckStatus, MessageId, WakeStatus};

    fn ack(id: &str) -> Outbound {
        Outbound::Ack {
            message_id: MessageId::string(id),
            status: AckStatus::Started,
            seq: None,
        }
    }

    #[tokio::test]
    async fn frames_stay_until_popped_and_keep_order() {
        let o = Outbox::default();
        o.push(ack("a"));
        o.push(ack("b"));
        assert_eq!(o.front().await, ack("a"));
        assert_eq!(o.front().await, ack("a"), "not removed until popped");
        o.pop();
        assert_eq!(o.front().await, ack("b"));
        o.pop();
        assert!(o.is_empty());
        let o = std::sync::Arc::new(o);
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.front().await }
        });
        tokio::task::yield_now().await;
        o.push(ack("c"));
        assert_eq!(waiter.await.unwrap(), ack("c"));
    }

    #[test]
    fn a_tool_call_can_be_withdrawn() {
        let o = Outbox::default();
        let call = |id: &str| {
            Outbound::ToolCall(ToolCall {
                request_id: id.into(),
                agent_id: crate::paths::AgentId::parse("a").unwrap(),
                session_id: None,
                tool_name: "send_message".into(),
                args: serde_json::json!({}),
            })
        };
        o.push(call("r1"));
        o.push(ack("m"));
        o.push(call("r2"));
        assert!(o.remove_tool_call("r1"));
        assert!(!o.remove_tool_call("r1"));
        assert_eq!(o.front_now(), Some(ack("m")));
        assert_eq!(o.len(), 2);
    }

    fn status(agent: &str, status: WakeStatus) -> Outbound {
        Outbound::Status {
            agent_id: crate::paths::AgentId::parse(agent).unwrap(),
            status,
            exit_code: None,
            usage: None,
        }
    }

    #[test]
    fn over_its_bound_progress_is_shed_but_acks_and_finals_never() {
        let o = Outbox::with_bounds(10, usize::MAX);
        for i in 0..30 {
            o.push(ack(&format!("m{i}")));
            o.push(status("a", WakeStatus::Running));
            o.push(status("b", WakeStatus::Running));
            o.push(status("a", WakeStatus::Idle));
        }
        let mut kept = Vec::new();
        while let Some(f) = o.front_now() {
            kept.push(f);
            o.pop();
        }
        let acks = kept
            .iter()
            .filter(|f| matches!(f, Outbound::Ack { .. }))
            .count();
        let finals = kept
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    Outbound::Status {
                        status: WakeStatus::Idle,
                        ..
                    }
                )
            })
            .count();
        assert_eq!((acks, finals), (30, 30), "never shed");
        // Still over the bound with acks and finals alone: every running
        // status went (superseded, then the oldest first).
        assert_eq!(kept.len(), 60);
        assert_eq!(o.dropped(), 60);
        // Order is kept: the acks in the order pushed.
        let order: Vec<_> = kept
            .iter()
            .filter_map(|f| match f {
                Outbound::Ack { message_id, .. } => Some(message_id.key()),
                _ => None,
            })
            .collect();
        assert_eq!(order, (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>());
        assert!(o.is_empty());
    }

    #[test]
    fn superseded_running_statuses_go_first() {
        let o = Outbox::with_bounds(3, usize::MAX);
        o.push(status("a", WakeStatus::Running));
        o.push(status("b", WakeStatus::Running));
        o.push(status("a", WakeStatus::Running));
        o.push(status("b", WakeStatus::Idle));
        assert_eq!(o.dropped(), 2);
        assert_eq!(o.front_now(), Some(status("a", WakeStatus::Running)));
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn a_newer_partial_text_replaces_a_queued_one_of_the_same_agent() {
        let o = Outbox::default();
        let partial = |agent: &str, body: &str| Outbound::Partial {
            session_id: "s".into(),
            agent_id: crate::paths::AgentId::parse(agent).unwrap(),
            body: body.into(),
        };
        o.push(partial("a", "H"));
        o.push(ack("m"));
        o.push(partial("a", "He"));
        o.push(partial("b", "x"));
        o.push(partial("a", "Hel"));
        let mut kept = Vec::new();
        while let Some(f) = o.front_now() {
            kept.push(f);
            o.pop();
        }
        // The first stays (it may be on its way), then only the latest.
        assert_eq!(
            kept,
            [
                partial("a", "H"),
                ack("m"),
                partial("b", "x"),
                partial("a", "Hel")
            ]
        );
    }

    #[test]
    fn the_byte_bound_sheds_the_oldest_partial_texts() {
        let o = Outbox::with_bounds(usize::MAX, 3_000);
        for (i, agent) in ["a", "b", "c", "d"].iter().enumerate() {
            o.push(Outbound::Partial {
                session_id: "s".into(),
                agent_id: crate::paths::AgentId::parse(agent).unwrap(),
                body: "x".repeat(1000 + i),
            });
        }
        assert_eq!(o.dropped(), 2);
        let Some(Outbound::Partial { agent_id, .. }) = o.front_now() else {
            panic!("a partial text stays")
        };
        assert_eq!(agent_id.as_str(), "c");
    }
}
