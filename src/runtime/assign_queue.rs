//! `assign` frames are applied off the session task: materialising a
//! workspace writes and fsyncs several files, and acks must never wait
//! behind that. The session queues each assign; one worker applies them in
//! order (in a blocking thread); a wake waits until every assign queued
//! before it started is applied, so an agent's identity from its assign is
//! in place before its claude runs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::agents;
use super::shared::Shared;
use crate::protocol::Assign;

/// Assigns waiting to be applied before the oldest is dropped (each is a
/// few hundred bytes; a backend sending more is misbehaving).
const CAPACITY: usize = 10_000;

pub struct AssignQueue {
    waiting: Mutex<(VecDeque<Assign>, u64)>,
    more: Notify,
    /// How many assigns were applied (or dropped) so far.
    applied: watch::Sender<u64>,
}

impl Default for AssignQueue {
    fn default() -> Self {
        Self {
            waiting: Mutex::new((VecDeque::new(), 0)),
            more: Notify::new(),
            applied: watch::Sender::new(0),
        }
    }
}

impl AssignQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Assign>, u64)> {
        match self.waiting.lock() {
            Ok(g) => g,
            Err(_) => crate::runtime::fatal("the assign queue lock is poisoned"),
        }
    }

    /// Queue an assign (from the session task; never blocks).
    pub fn push(&self, a: Assign) {
        let dropped = {
            let mut g = self.lock();
            g.1 += 1;
            g.0.push_back(a);
            (g.0.len() > CAPACITY).then(|| g.0.pop_front()).flatten()
        };
        if let Some(old) = dropped {
            tracing::warn!(
                "over {CAPACITY} assign frames waiting: the oldest (agent {}) is dropped",
                old.agent_id
            );
            self.applied.send_modify(|n| *n += 1);
        }
        self.more.notify_one();
    }

    /// Wait until every assign queued so far is applied.
    pub async fn settled(&self) {
        let target = self.lock().1;
        let mut rx = self.applied.subscribe();
        let _ = rx.wait_for(|n| *n >= target).await;
    }

    fn pop(&self) -> Option<Assign> {
        self.lock().0.pop_front()
    }
}

/// Apply queued assigns in order until shutdown.
pub async fn run(shared: Arc<Shared>) {
    loop {
        while let Some(a) = shared.assigns.pop() {
            let worker = shared.clone();
            let applied = tokio::task::spawn_blocking(move || {
                let result = agents::on_assign(&worker, &worker.settings(), &a);
                (a, result)
            })
            .await;
            match applied {
                Ok((a, Ok(()))) => {
                    tracing::info!("assign: agent {} bound to this host", a.agent_id)
                }
                Ok((a, Err(e))) => {
                    tracing::warn!("assign {}: cannot prepare the workspace: {e}", a.agent_id)
                }
                Err(e) => tracing::error!("assign: the worker failed: {e}"),
            }
            shared.assigns.applied.send_modify(|n| *n += 1);
        }
        tokio::select! {
            () = shared.assigns.more.notified() => {}
            () = shared.cancel.cancelled() => return,
        }
    }
}
