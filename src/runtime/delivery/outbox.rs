//! Frames waiting to go to the backend, in order. They survive a dropped
//! connection and are sent after the next handshake (the original lost
//! frames produced while it was disconnected).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::protocol::Outbound;

#[derive(Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<Outbound>>,
    notify: Notify,
}

impl Outbox {
    /// A poisoned lock means a thread panicked while changing the queue:
    /// frames may be lost, which this daemon promises never happens, so
    /// stop rather than go on with a queue in an unknown state.
    fn queue(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        match self.queue.lock() {
            Ok(q) => q,
            Err(_) => crate::runtime::fatal("the outbox lock is poisoned"),
        }
    }

    pub fn push(&self, frame: Outbound) {
        self.queue().push_back(frame);
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
        self.queue().front().cloned()
    }

    /// Drop the oldest frame after it was handed to the transport.
    pub fn pop(&self) {
        self.queue().pop_front();
    }

    /// Forget a tool call that was not sent yet: its caller was already
    /// told it failed, so the backend must not perform it later.
    pub fn remove_tool_call(&self, request_id: &str) -> bool {
        let mut q = self.queue();
        let before = q.len();
        q.retain(|f| !matches!(f, Outbound::ToolCall(c) if c.request_id == request_id));
        q.len() != before
    }

    /// Drop everything queued: the backend changed (a new host id), and
    /// frames meant for the old one must not reach it.
    pub fn clear(&self) -> usize {
        let mut q = self.queue();
        let n = q.len();
        q.clear();
        n
    }

    pub fn len(&self) -> usize {
        self.queue().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::outbound::ToolCall;
    use crate::protocol::{AckStatus, MessageId};

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
}
