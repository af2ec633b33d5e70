//! Which wake runs when (PROTOCOL §3.6): one FIFO per agent, one wake at a
//! time per agent, at most `max_concurrent_wakes` across agents. A queue
//! over its capacity sends `queue_full` (the backend's backpressure signal)
//! but keeps the message: it was accepted, so it runs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::runner::{self, WakeEnd};
use crate::runtime::delivery::ledger::PendingWake;
use crate::runtime::shared::Shared;

/// Waiting wakes per agent before `queue_full` is signalled.
pub const QUEUE_CAPACITY: usize = 100;

#[derive(Default)]
struct AgentQueue {
    waiting: VecDeque<PendingWake>,
    worker: bool,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    queues: Mutex<HashMap<String, AgentQueue>>,
    permits: Arc<Semaphore>,
    /// The configured number of permits (changes on reload).
    limit: Mutex<u32>,
    tasks: TaskTracker,
    handle: tokio::runtime::Handle,
}

impl Scheduler {
    pub fn new(
        shared: Arc<Shared>,
        max_concurrent: u32,
        handle: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared,
            queues: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1) as usize)),
            limit: Mutex::new(max_concurrent.max(1)),
            tasks: TaskTracker::new(),
            handle,
        })
    }

    /// Change `max_concurrent_wakes` at runtime. Lowering takes effect as
    /// running wakes finish.
    pub fn set_concurrency(&self, n: u32) {
        let n = n.max(1);
        let Ok(mut limit) = self.limit.lock() else {
            return;
        };
        if n > *limit {
            self.permits.add_permits((n - *limit) as usize);
        } else if n < *limit {
            let want = (*limit - n) as usize;
            let taken = self.permits.forget_permits(want);
            if taken < want {
                // Permits in use: take the rest back as they come free.
                let permits = self.permits.clone();
                let rest = (want - taken) as u32;
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(rest).await {
                        p.forget();
                    }
                });
            }
        }
        *limit = n;
    }

    /// Queue a wake. Returns false when the agent's queue was already full
    /// (the wake is queued anyway). Callable from any thread.
    pub fn enqueue(self: &Arc<Self>, wake: PendingWake) -> bool {
        let key = wake.agent_id.to_string();
        let (fits, start) = {
            let mut queues = match self.queues.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            let q = queues.entry(key.clone()).or_default();
            let fits = q.waiting.len() < QUEUE_CAPACITY;
            q.waiting.push_back(wake);
            let start = !q.worker;
            q.worker = true;
            (fits, start)
        };
        self.update_queued();
        if start {
            let me = self.clone();
            let _guard = self.handle.enter();
            self.tasks.spawn(async move { me.drain(key).await });
        }
        fits
    }

    fn next(&self, agent: &str) -> Option<PendingWake> {
        let mut queues = match self.queues.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        let q = queues.get_mut(agent)?;
        let next = q.waiting.pop_front();
        if next.is_none() {
            queues.remove(agent);
        }
        next
    }

    fn update_queued(&self) {
        let by_agent: std::collections::BTreeMap<String, usize> = self
            .queues
            .lock()
            .map(|q| {
                q.iter()
                    .filter(|(_, a)| !a.waiting.is_empty())
                    .map(|(id, a)| (id.clone(), a.waiting.len()))
                    .collect()
            })
            .unwrap_or_default();
        self.shared.with_live(|l| {
            l.queued = by_agent.values().sum();
            l.queued_by_agent = by_agent;
        });
    }

    async fn drain(self: Arc<Self>, agent: String) {
        while let Some(wake) = self.next(&agent) {
            self.update_queued();
            // A parked daemon (its profile gone from the file) starts no
            // wake until the profile is back; the message stays pending.
            if !self.unparked().await {
                break;
            }
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => p,
                _ = self.shared.cancel.cancelled() => break,
            };
            let Ok(_permit) = permit else { break };
            if self.shared.cancel.is_cancelled() {
                break;
            }
            let key = wake.key();
            // A wake runs in its own task: if it panics, the panic ends
            // that task only, and this queue goes on (its permit is freed
            // at the end of this iteration).
            let run = tokio::spawn({
                let (shared, wake) = (self.shared.clone(), wake.clone());
                async move { runner::run(&shared, wake).await }
            });
            match run.await {
                Ok(WakeEnd::Finished(status)) => {
                    tracing::info!("{agent}: message {key} done: {}", status.as_str())
                }
                Ok(WakeEnd::Interrupted) => break,
                Err(e) if e.is_panic() => runner::panicked(&self.shared, &wake),
                Err(_) => break,
            }
        }
    }

    /// Wait while the daemon is parked; false on shutdown.
    async fn unparked(&self) -> bool {
        let mut rx = self.shared.watch_settings();
        tokio::select! {
            r = rx.wait_for(|s| s.parked.is_none()) => r.is_ok(),
            () = self.shared.cancel.cancelled() => false,
        }
    }

    /// Wait until every wake task has returned (after cancellation they stop
    /// their claude and return promptly).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
