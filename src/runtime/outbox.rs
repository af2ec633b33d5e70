//! Frames waiting to go to the backend, in order. They survive a dropped
//! connection and are sent after the next handshake (the original lost
//! frames produced while it was disconnected).

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<String>>,
    notify: Notify,
}

impl Outbox {
    pub fn push(&self, frame: String) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(frame);
        }
        self.notify.notify_one();
    }

    /// The oldest frame, once there is one; it stays queued until `pop`.
    pub async fn front(&self) -> String {
        loop {
            let notified = self.notify.notified();
            if let Some(f) = self.try_front() {
                return f;
            }
            notified.await;
        }
    }

    /// The oldest frame, if there is one now; it stays queued until `pop`.
    pub fn try_front(&self) -> Option<String> {
        self.queue.lock().ok().and_then(|q| q.front().cloned())
    }

    /// Drop the oldest frame after it was handed to the socket.
    pub fn pop(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_stay_until_popped_and_keep_order() {
        let o = Outbox::default();
        o.push("a".into());
        o.push("b".into());
        assert_eq!(o.front().await, "a");
        assert_eq!(o.front().await, "a", "not removed until popped");
        o.pop();
        assert_eq!(o.front().await, "b");
        o.pop();
        assert!(o.is_empty());
        let o = std::sync::Arc::new(o);
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.front().await }
        });
        tokio::task::yield_now().await;
        o.push("c".into());
        assert_eq!(waiter.await.unwrap(), "c");
    }
}
