//! Every duration the runtime waits for, in one place. Tests shorten them
//! through `CLOUDAGENT_DAEMON_TEST_TIMING` (e.g. `watchdog_ms=500,backoff_base_ms=50`)
//! so integration tests run in seconds without sleeping blindly.

use std::time::Duration;

pub const TEST_TIMING_ENV: &str = "CLOUDAGENT_DAEMON_TEST_TIMING";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How long the server may take to send `hello` after the upgrade (the
    /// original waited forever).
    pub hello_timeout: Duration,
    /// Silence after which the connection is considered dead (PROTOCOL §1.6).
    pub watchdog: Duration,
    /// Reconnect backoff: first delay and cap (PROTOCOL §1.7).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Between SIGINT, SIGTERM and SIGKILL when stopping claude, and
    /// between SIGTERM and SIGKILL for what it leaves behind.
    pub kill_grace: Duration,
    /// How long claude's stdout and stderr are still read after it exited
    /// (a process it started may hold them open).
    pub output_drain: Duration,
    /// Waiting for the backend's `tool_result` (PROTOCOL §5.5).
    pub tool_timeout: Duration,
    /// Same for the daemon's own fallback send_message.
    pub fallback_timeout: Duration,
    /// Overrides the config file's `resync_sec` (tests).
    pub resync: Option<Duration>,
    /// Between heartbeat POSTs over SSE (PROTOCOL §2.6).
    pub heartbeat: Duration,
    /// How long `auto` stays on SSE before it tries WebSocket again.
    pub ws_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            hello_timeout: Duration::from_secs(30),
            watchdog: Duration::from_secs(40),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            output_drain: Duration::from_secs(2),
            tool_timeout: Duration::from_secs(30),
            fallback_timeout: Duration::from_secs(15),
            resync: None,
            heartbeat: Duration::from_secs(10),
            ws_retry: Duration::from_secs(600),
        }
    }
}

impl Timing {
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(TEST_TIMING_ENV) {
            Ok(spec) => Self::parse(&spec),
            Err(_) => Ok(Self::default()),
        }
    }

    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut t = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{TEST_TIMING_ENV}: expected key_ms=N, got {item:?}"))?;
            let ms: u64 = value.parse().map_err(|_| {
                format!("{TEST_TIMING_ENV}: {key}: not a number of milliseconds: {value:?}")
            })?;
            let d = Duration::from_millis(ms);
            match key {
                "hello_timeout_ms" => t.hello_timeout = d,
                "watchdog_ms" => t.watchdog = d,
                "backoff_base_ms" => t.backoff_base = d,
                "backoff_max_ms" => t.backoff_max = d,
                "kill_grace_ms" => t.kill_grace = d,
                "output_drain_ms" => t.output_drain = d,
                "tool_timeout_ms" => t.tool_timeout = d,
                "fallback_timeout_ms" => t.fallback_timeout = d,
                "resync_ms" => t.resync = Some(d),
                "heartbeat_ms" => t.heartbeat = d,
                "ws_retry_ms" => t.ws_retry = d,
                other => return Err(format!("{TEST_TIMING_ENV}: unknown key {other:?}")),
            }
        }
        Ok(t)
    }
}

/// Reconnect delays: base, doubling up to the cap, each with ±20% jitter so
/// a fleet of daemons does not reconnect in lockstep. `reset` after a good
/// connection makes the next delay the base again.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            current: base,
        }
    }

    pub fn reset(&mut self) {
        self.current = self.base;
    }

    /// The next delay (jittered) and advance.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        jitter(d, 0.2)
    }
}

/// `d` ± `spread` (a fraction), so that daemons started together do not act
/// in lockstep. A cheap random source: uuid's v4 is already a dependency.
pub fn jitter(d: Duration, spread: f64) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1001) as f64 / 1000.0; // 0.0..=1.0
    d.mul_f64(1.0 - spread + 2.0 * spread * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let expected = [1, 2, 4, 8, 16, 30, 30];
        for e in expected {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= e as f64 * 0.8 - 1e-9 && d <= e as f64 * 1.2 + 1e-9,
                "{d} vs {e}"
            );
        }
        b.reset();
        let d = b.next_delay().as_secs_f64();
        assert!((0.8..=1.2).contains(&d));
    }

    #[test]
    fn timing_overrides() {
        let t = Timing::parse("watchdog_ms=500, backoff_base_ms=50").unwrap();
        assert_eq!(t.watchdog, Duration::from_millis(500));
        assert_eq!(t.backoff_base, Duration::from_millis(50));
        assert_eq!(t.backoff_max, Duration::from_secs(30));
        assert!(Timing::parse("nope=1").is_err());
        assert!(Timing::parse("watchdog_ms=x").is_err());
    }
}
