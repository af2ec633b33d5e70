//! The daemon's metrics (README.md, "Metrics"): the original daemon's
//! series under its names (original §10), and ours next to them. Kept in a
//! prometheus-client registry and encoded as OpenMetrics text when scraped
//! (`metrics_server`); values that are a state (queue and outbox depth,
//! uptime, the age of the last inbound event) are read at scrape time.
//!
//! Label values are bounded: statuses, reasons and tool names are ours or
//! the agent's tool set; agent ids are the profile's agents.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::protocol::{AckStatus, Usage, WakeStatus};

type Labels = Vec<(&'static str, String)>;
type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Why a session ended and another is attempted.
#[derive(Debug, Clone, Copy)]
pub enum Reconnect {
    /// The server settings changed (config reload, key rotation).
    Reconfigured,
    /// An open connection was lost (drop, watchdog, send failure, `bye`).
    Lost,
    /// The attempt failed before the session was open.
    ConnectFailed,
    /// The backend sent a frame over `max_frame_mib`.
    FrameTooLarge,
}

impl Reconnect {
    fn label(self) -> &'static str {
        match self {
            Self::Reconfigured => "reconfigured",
            Self::Lost => "connection_lost",
            Self::ConnectFailed => "connect_failed",
            Self::FrameTooLarge => "frame_too_large",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    started: Instant,
    /// Milliseconds from `started` to the last inbound event (+1; 0 = none).
    last_heard_ms: AtomicU64,
    uptime: FloatGauge,
    deliver_frames: Counter,
    spawn_completed: Family<Labels, Counter>,
    fallback_send_message: Counter,
    sse_reconnects: Counter,
    sse_watchdog_fires: Counter,
    outbox_pending: Gauge,
    outbox_stuck: Gauge,
    agents_bound: Gauge,
    last_event_age: FloatGauge,
    cache_hit_tokens: Family<Labels, Counter>,
    cache_creation_tokens: Family<Labels, Counter>,
    acks: Family<Labels, Counter>,
    deliver_ack_latency: Histogram,
    wake_duration: Histograms,
    tool_call_latency: Histograms,
    reconnects: Family<Labels, Counter>,
    reloads: Counter,
    reload_errors: Counter,
    queue_depth: Gauge,
    agent_tokens: Family<Labels, Counter>,
    agent_cost: Family<Labels, FloatCounter>,
}

fn wake_buckets() -> Histogram {
    // 1 s … about 2.3 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn tool_buckets() -> Histogram {
    // 5 ms … about 41 s (the backend has 30 s).
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            started: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            uptime: FloatGauge::default(),
            deliver_frames: Counter::default(),
            spawn_completed: Family::default(),
            fallback_send_message: Counter::default(),
            sse_reconnects: Counter::default(),
            sse_watchdog_fires: Counter::default(),
            outbox_pending: Gauge::default(),
            outbox_stuck: Gauge::default(),
            agents_bound: Gauge::default(),
            last_event_age: FloatGauge::default(),
            cache_hit_tokens: Family::default(),
            cache_creation_tokens: Family::default(),
            acks: Family::default(),
            // 0.5 ms … about 4 s: one fdatasync is the floor.
            deliver_ack_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            wake_duration: Family::new_with_constructor(wake_buckets),
            tool_call_latency: Family::new_with_constructor(tool_buckets),
            reconnects: Family::default(),
            reloads: Counter::default(),
            reload_errors: Counter::default(),
            queue_depth: Gauge::default(),
            agent_tokens: Family::default(),
            agent_cost: Family::default(),
        };
        m.register_original().register_ours()
    }

    /// The original's series (original §10). Names without `_total`:
    /// OpenMetrics adds it to counters, giving the original's names.
    fn register_original(mut self) -> Self {
        let r = &mut self.registry;
        let d = "cloudagent_daemon_";
        r.register(
            format!("{d}uptime_seconds"),
            "Seconds since the daemon started",
            self.uptime.clone(),
        );
        r.register(
            format!("{d}deliver_frames"),
            "deliver frames received, duplicates included",
            self.deliver_frames.clone(),
        );
        r.register(
            format!("{d}spawn_completed"),
            "Wakes run to a final status, by status",
            self.spawn_completed.clone(),
        );
        r.register(
            format!("{d}spawn_fallback_send_message"),
            "Final texts the daemon sent because claude did not call send_message",
            self.fallback_send_message.clone(),
        );
        r.register(
            format!("{d}sse_reconnects"),
            "Reconnects after an SSE session",
            self.sse_reconnects.clone(),
        );
        r.register(
            format!("{d}sse_active_watchdog_fires"),
            "SSE streams ended by the silence watchdog",
            self.sse_watchdog_fires.clone(),
        );
        r.register(
            format!("{d}outbox_pending"),
            "Frames waiting to be sent to the backend",
            self.outbox_pending.clone(),
        );
        r.register(
            format!("{d}outbox_stuck"),
            "Always 0: this daemon has no stuck-outbox scan (kept for the original's dashboards)",
            self.outbox_stuck.clone(),
        );
        r.register(
            format!("{d}agents_bound"),
            "Agents of this profile (declared and server-assigned)",
            self.agents_bound.clone(),
        );
        r.register(
            format!("{d}sse_last_event_age_seconds"),
            "Seconds since the last frame or event from the backend (either transport)",
            self.last_event_age.clone(),
        );
        r.register(
            "cloudagent_llm_cache_hit_tokens",
            "Prompt-cache read tokens of claude's model calls",
            self.cache_hit_tokens.clone(),
        );
        r.register(
            "cloudagent_llm_cache_creation_tokens",
            "Prompt-cache creation tokens of claude's model calls",
            self.cache_creation_tokens.clone(),
        );
        self
    }

    /// Ours, next to them (README.md, "Metrics").
    fn register_ours(mut self) -> Self {
        let r = &mut self.registry;
        let d = "cloudagent_daemon_";
        r.register(
            format!("{d}delivery_acks"),
            "delivery_ack frames queued for the backend, by status",
            self.acks.clone(),
        );
        r.register(
            format!("{d}deliver_ack_latency_seconds"),
            "From a deliver's arrival to its received ack being queued (after the journal sync)",
            self.deliver_ack_latency.clone(),
        );
        r.register(
            format!("{d}wake_duration_seconds"),
            "Wall time of a wake, by final status",
            self.wake_duration.clone(),
        );
        r.register(
            format!("{d}tool_call_latency_seconds"),
            "From a tool call sent to its result (or timeout), by tool",
            self.tool_call_latency.clone(),
        );
        r.register(
            format!("{d}reconnects"),
            "Sessions ended and attempted again, by reason",
            self.reconnects.clone(),
        );
        r.register(
            format!("{d}config_reloads"),
            "Configurations reloaded and put in force",
            self.reloads.clone(),
        );
        r.register(
            format!("{d}config_reload_errors"),
            "Config file changes not used (invalid file)",
            self.reload_errors.clone(),
        );
        r.register(
            format!("{d}wake_queue_depth"),
            "Wakes waiting for their agent or for a slot",
            self.queue_depth.clone(),
        );
        r.register(
            format!("{d}agent_tokens"),
            "Tokens claude reported, by agent and kind",
            self.agent_tokens.clone(),
        );
        r.register(
            format!("{d}agent_cost_usd"),
            "Cost claude reported (total_cost_usd), by agent",
            self.agent_cost.clone(),
        );
        self
    }

    pub fn deliver(&self) {
        self.deliver_frames.inc();
    }

    pub fn ack(&self, status: AckStatus) {
        self.acks
            .get_or_create(&vec![("status", status.as_str().to_string())])
            .inc();
    }

    pub fn acked_after(&self, waited: Duration) {
        self.deliver_ack_latency.observe(waited.as_secs_f64());
    }

    /// Something came from the backend (for the last-event age).
    pub fn heard(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_heard_ms
            .store(ms.saturating_add(1), Ordering::Relaxed);
    }

    pub fn wake_finished(&self, status: WakeStatus, took: Option<Duration>) {
        let by_status = vec![("status", status.as_str().to_string())];
        self.spawn_completed.get_or_create(&by_status).inc();
        if let Some(took) = took {
            self.wake_duration
                .get_or_create(&by_status)
                .observe(took.as_secs_f64());
        }
    }

    /// One wake's usage, counted for its agent; `cache` is the transcript's
    /// per-call prompt-cache counts (the original's series).
    pub fn usage(&self, agent: &str, usage: Option<&Usage>, cache: (u64, u64)) {
        let daemon = vec![("source", "daemon".to_string())];
        self.cache_hit_tokens.get_or_create(&daemon).inc_by(cache.0);
        self.cache_creation_tokens
            .get_or_create(&daemon)
            .inc_by(cache.1);
        let Some(u) = usage else {
            return;
        };
        for (kind, n) in [
            ("input", u.input_tokens),
            ("output", u.output_tokens),
            ("cache_read", u.cache_read_input_tokens),
            ("cache_creation", u.cache_creation_input_tokens),
        ] {
            self.agent_tokens
                .get_or_create(&vec![
                    ("agent", agent.to_string()),
                    ("kind", kind.to_string()),
                ])
                .inc_by(n);
        }
        self.agent_cost
            .get_or_create(&vec![("agent", agent.to_string())])
            .inc_by(u.total_cost_usd);
    }

    pub fn fallback_sent(&self) {
        self.fallback_send_message.inc();
    }

    pub fn tool_call(&self, tool: &str, took: Duration) {
        self.tool_call_latency
            .get_or_create(&vec![("tool", tool.to_string())])
            .observe(took.as_secs_f64());
    }

    pub fn reconnect(&self, why: Reconnect, sse: bool) {
        self.reconnects
            .get_or_create(&vec![("reason", why.label().to_string())])
            .inc();
        if sse {
            self.sse_reconnects.inc();
        }
    }

    pub fn watchdog_fired(&self, sse: bool) {
        if sse {
            self.sse_watchdog_fires.inc();
        }
    }

    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads.inc();
        } else {
            self.reload_errors.inc();
        }
    }

    /// The OpenMetrics text of every series, with the state read now.
    pub fn render(&self, now: Snapshot) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let heard = self.last_heard_ms.load(Ordering::Relaxed);
        let age = if heard == 0 {
            self.started.elapsed()
        } else {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(heard - 1))
        };
        self.last_event_age.set(age.as_secs_f64());
        self.outbox_pending.set(gauge(now.outbox));
        self.queue_depth.set(gauge(now.queued));
        self.agents_bound.set(gauge(now.agents));
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!("encoding the metrics failed: {e}");
        }
        out
    }
}

/// The state `render` reads at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub outbox: usize,
    pub queued: usize,
    pub agents: usize,
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_the_original_names() {
        let m = Metrics::new();
        m.deliver();
        m.wake_finished(WakeStatus::Idle, Some(Duration::from_secs(2)));
        m.usage("a", None, (5, 7));
        let text = m.render(Snapshot::default());
        for name in [
            "cloudagent_daemon_uptime_seconds ",
            "cloudagent_daemon_deliver_frames_total 1",
            "cloudagent_daemon_spawn_completed_total{status=\"idle\"} 1",
            "cloudagent_llm_cache_hit_tokens_total{source=\"daemon\"} 5",
            "cloudagent_llm_cache_creation_tokens_total{source=\"daemon\"} 7",
            "cloudagent_daemon_outbox_pending 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
