//! Trust boundaries of the daemon's operations (issue 8): no key in any
//! log whatever the level, `stop`/`status` act only on a process proven to
//! be the profile's daemon, the bridge socket never exists with a wider
//! mode, and backend strings cannot forge log lines. Real binary, temporary
//! HOME, the fake backend on 127.0.0.1:0.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::{Conn, FakeBackend, frame};
use support::fake_claude::FakeClaude;
use support::{TestHome, mode, stderr};

const T: Duration = Duration::from_secs(15);
const KEY: &str = "sk_machine_testkey";

struct Setup {
    home: TestHome,
    backend: FakeBackend,
    _claude: FakeClaude,
}

async fn setup(daemon_section: &str) -> Setup {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    let mut cfg = DaemonConfig::new(&backend.url(), &["agent_a"]);
    cfg.daemon_section = daemon_section.to_string();
    home.write_config(&cfg.render(&home));
    Setup {
        home,
        backend,
        _claude: claude,
    }
}

fn profile_dir(home: &TestHome) -> PathBuf {
    home.path().join(".cloudagent/daemon")
}

fn logs_dir(home: &TestHome) -> PathBuf {
    profile_dir(home).join("logs")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Everything the daemon wrote: its stdout+stderr file and every log file.
fn everything_written(d: &Daemon, home: &TestHome) -> String {
    let mut all = std::fs::read_to_string(&d.log).unwrap_or_default();
    for f in files_under(&logs_dir(home)) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
    }
    all
}

/// SIGTERM the daemon and wait for its clean exit.
fn stop_daemon(mut d: Daemon) -> Daemon {
    d.signal("TERM");
    let st = d.wait_exit(T).expect("daemon exits on SIGTERM");
    assert!(st.success(), "daemon exit: {st:?}");
    d
}

async fn connected(s: &Setup, env: &[(&str, &str)]) -> (Daemon, Conn) {
    let d = Daemon::start_with_env(&s.home, FAST_TIMING, env);
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    (d, conn)
}

/// Trace level, from the config or from CLOUDAGENT_LOG (also a directive
/// naming the WebSocket library's own module): the upgrade request with
/// its `Authorization: Bearer` header never reaches a log, the transport
/// libraries log nothing below info, and the log directory and files are
/// private even when they existed with wider modes.
#[tokio::test(flavor = "multi_thread")]
async fn trace_logging_never_writes_the_key_and_logs_are_private() {
    let cases: [(&str, &[(&str, &str)]); 2] = [
        ("log_level = \"trace\"\n", &[("CLOUDAGENT_LOG", "")]),
        (
            "",
            &[(
                "CLOUDAGENT_LOG",
                "trace,tungstenite::handshake::client=trace,tokio_tungstenite=trace,rustls=trace",
            )],
        ),
    ];
    for (section, env) in cases {
        let s = setup(section).await;
        let logs = logs_dir(&s.home);
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = logs.join("launchd.err.log");
        std::fs::write(&old, "older lines\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();

        let (d, mut conn) = connected(&s, env).await;
        assert_eq!(
            conn.upgrade.authorization.as_deref(),
            Some("Bearer sk_machine_testkey")
        );
        conn.send(frame("ping", json!({}))).await;
        conn.recv_type("pong", T).await;
        let d = stop_daemon(d);

        let all = everything_written(&d, &s.home);
        assert!(
            all.contains("TRACE") || all.contains("DEBUG"),
            "the daemon logged at a verbose level ({section:?} {env:?}):\n{all}"
        );
        assert!(!all.contains(KEY), "the key was written ({env:?}):\n{all}");
        assert!(
            !all.contains("testkey"),
            "part of the key was written:\n{all}"
        );
        for quiet in ["Client handshake initiated", "Client handshake done"] {
            assert!(
                !all.contains(quiet),
                "tungstenite logged below info ({quiet:?}):\n{all}"
            );
        }
        assert_eq!(mode(&logs), 0o700, "logs/ is private");
        let files = files_under(&logs);
        assert!(
            files.iter().any(|f| f
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("daemon.")),
            "a daemon log file was written: {files:?}"
        );
        for f in files {
            assert_eq!(mode(&f), 0o600, "{} is private", f.display());
        }
    }
}

/// The bridge (started by claude) logs through the same filter and
/// writer: at trace level the MCP library logs every request it receives,
/// and a key quoted in a tool call's arguments is not written.
#[test]
fn bridge_logging_at_trace_writes_no_key() {
    let home = TestHome::new();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "send_message",
            "arguments": {"target": "user", "body": format!("my key is {KEY}")}}}),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = home
        .cmd()
        .args(["mcp-bridge", "--agent-id", "agent_a"])
        .env("CLOUDAGENT_LOG", "trace")
        .env(
            "CLOUDAGENT_DAEMON_SOCKET_PATH",
            home.path().join("none.sock"),
        )
        .write_stdin(input)
        .timeout(T)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("tools/call") || err.contains("CallToolRequest"),
        "the request was logged at trace level: {err}"
    );
    assert!(!err.contains("testkey"), "{err}");
}
