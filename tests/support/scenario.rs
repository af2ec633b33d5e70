//! The usual daemon test: a temporary home whose config points at a fake
//! backend, with a fake claude installed, and the daemon connected to it.
#![allow(dead_code)]

use std::time::Duration;

use super::TestHome;
use super::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use super::fake_backend::{Conn, FakeBackend};
use super::fake_claude::FakeClaude;

const T: Duration = Duration::from_secs(15);

/// Fields drop in order: the fake claude kills what its runs left behind
/// while its state (in the home) still names them.
pub struct Scenario {
    pub claude: FakeClaude,
    pub backend: FakeBackend,
    pub home: TestHome,
}

/// Every scenario runs once per transport: one body, a `ws` and an `sse`
/// test in a module named after it (`cargo test --test daemon_scenarios
/// NAME::sse`). The body is `async fn NAME(t: Transport)` beside the call.
#[macro_export]
macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::support::scenario::Transport;

            #[tokio::test(flavor = "multi_thread")]
            async fn ws() {
                super::$name(Transport::Ws).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn sse() {
                super::$name(Transport::Sse).await
            }
        }
    )*};
}

/// The transport a scenario's daemon is configured with (the fake backend
/// speaks both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
}

impl Transport {
    /// The value of `[servers.X] transport`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }

    /// The request a session starts with, as the fake backend records it.
    pub fn handshake_path(self) -> &'static str {
        match self {
            Transport::Ws => "/v1/daemon/ws",
            Transport::Sse => "/v1/daemon/ready",
        }
    }
}

impl Scenario {
    /// `agents` declared in the default profile, `daemon_section` added to
    /// `[daemon]`, over WebSocket.
    pub async fn new(agents: &[&str], daemon_section: &str) -> Self {
        Self::over(Transport::Ws, agents, daemon_section).await
    }

    /// Like [`Scenario::new`] over the transport `t`.
    pub async fn over(t: Transport, agents: &[&str], daemon_section: &str) -> Self {
        let daemon_section = daemon_section.to_string();
        Self::with_config(agents, move |cfg| {
            cfg.daemon_section = daemon_section;
            cfg.transport = t.name().to_string();
        })
        .await
    }

    /// `agents` declared in the default profile, the rest of the config as
    /// `edit` makes it.
    pub async fn with_config(agents: &[&str], edit: impl FnOnce(&mut DaemonConfig)) -> Self {
        let home = TestHome::new();
        let backend = FakeBackend::start().await;
        let claude = FakeClaude::install(&home.bin_dir());
        let mut cfg = DaemonConfig::new(&backend.url(), agents);
        edit(&mut cfg);
        home.write_config(&cfg.render(&home));
        Self {
            claude,
            backend,
            home,
        }
    }

    /// Start the daemon and wait until its handshake is complete.
    pub async fn connect(&self, timing: &str) -> (Daemon, Conn) {
        let d = Daemon::start(&self.home, timing);
        let mut conn = self.backend.next_connection(T).await;
        conn.recv_type("resume", T).await;
        (d, conn)
    }
}

/// A scenario whose daemon is running and connected (fields drop in the
/// same order as [`Scenario`]'s, the daemon last).
pub struct Connected {
    pub claude: FakeClaude,
    pub backend: FakeBackend,
    pub home: TestHome,
    pub daemon: Daemon,
    pub conn: Conn,
}

impl Scenario {
    /// Start the daemon with the fast test timing and wait for its
    /// handshake.
    pub async fn started(self) -> Connected {
        let (daemon, conn) = self.connect(FAST_TIMING).await;
        let Self {
            claude,
            backend,
            home,
        } = self;
        Connected {
            claude,
            backend,
            home,
            daemon,
            conn,
        }
    }
}
