//! What the running daemon shows about itself: per-wake usage and cost
//! (from claude's `result` event) in `last-spawn.json`, `status` and the
//! final `agent_status`; the typed status; the profile's metrics socket.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestHome;
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::{FakeBackend, deliver, frame_type};
use support::fake_claude::{Behaviour, FakeClaude, init};

const T: Duration = Duration::from_secs(15);

fn status(home: &TestHome) -> Value {
    let out = home.cmd().args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The `result` event real claude 2.1.197 printed (fixture run1), as is.
fn captured_result() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/claude-code-2.1.197/run1-tool-call.stream.jsonl"
    ))
    .unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["type"] == "result")
        .unwrap()
}

/// Its usage in the wire shape (docs/PROTOCOL.md, "agent_status").
fn captured_usage() -> Value {
    json!({
        "input_tokens": 3426, "output_tokens": 58,
        "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
        "total_cost_usd": 0.01858, "num_turns": 2, "duration_ms": 178,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_of_a_real_result_reaches_last_spawn_status_and_the_final_status() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    claude.script_default(Behaviour::new().events(&[init("s1"), captured_result()]));
    home.write_config(&DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home));
    let _d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;

    for (seq, m) in [(1, "m1"), (2, "m2")] {
        conn.send(deliver(seq, "agent_a", m, "hi")).await;
        let last = conn
            .recv_matching(T, "final status", |f| {
                frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
            })
            .await;
        assert_eq!(last["payload"]["status"], "idle", "{last}");
        assert_eq!(last["payload"]["usage"], captured_usage(), "{last}");
    }
    // The running status carries none.
    let running = backend
        .frames_of_type("agent_status")
        .into_iter()
        .find(|f| f["payload"]["status"] == "running")
        .unwrap();
    assert!(running["payload"].get("usage").is_none(), "{running}");

    assert_eq!(home.last_spawn("agent_a")["usage"], captured_usage());

    let st = status(&home);
    let agent = &st["by_agent"]["agent_a"];
    assert_eq!(agent["finished"], 2, "{st}");
    assert_eq!(agent["last_wake"]["usage"], captured_usage(), "{st}");
    assert_eq!(agent["last_wake"]["status"], "idle", "{st}");
    let sum = &agent["usage"];
    assert_eq!(sum["input_tokens"], 2 * 3426, "{st}");
    assert_eq!(sum["num_turns"], 4, "{st}");
    assert!(
        (sum["total_cost_usd"].as_f64().unwrap() - 2.0 * 0.01858).abs() < 1e-9,
        "{st}"
    );
    assert_eq!(st["usage"], *sum, "one agent: the total is its sum");
    let text = home.cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("6852 input + 116 output tokens"), "{text}");
}

/// `status --json` is the typed report: the config in force (hash,
/// generation), the last reconcile, and the service unit's drift, which the
/// daemon shows but never repairs itself.
#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_config_in_force_the_last_reconcile_and_unit_drift() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    let mut cfg = DaemonConfig::new(&backend.url(), &["agent_a"]);
    cfg.extra = "\n[profiles.default.service]\nenable = true\n".into();
    let cfg_path = home.write_config(&cfg.render(&home));
    let _d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon.service");
    let mut st = status(&home);
    for _ in 0..100 {
        if st["service_drift"] != json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        st = status(&home);
    }
    assert_eq!(
        st["service_drift"],
        json!(["+ service \"default\""]),
        "{st}"
    );
    assert!(!unit.exists(), "the daemon never writes its own unit");
    assert_eq!(st["config_generation"], 1, "{st}");
    let hash = st["config_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 16, "{st}");

    cfg.agents.push("agent_b".into());
    let tmp = cfg_path.with_extension("tmp");
    std::fs::write(&tmp, cfg.render(&home)).unwrap();
    std::fs::rename(&tmp, &cfg_path).unwrap();
    for _ in 0..200 {
        st = status(&home);
        if st["config_generation"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(st["config_generation"], 2, "{st}");
    assert_ne!(st["config_hash"], hash.as_str(), "{st}");
    let rec = &st["last_reconcile"];
    assert_eq!(rec["trigger"], "config reload", "{st}");
    assert_eq!(
        rec["summary"], "Plan: 1 to add, 0 to change, 0 to remove.",
        "{st}"
    );
    assert!(rec["error"].is_null(), "{st}");
    assert_eq!(st["by_agent"]["agent_b"]["finished"], 0, "{st}");
    assert_eq!(
        st["service_drift"],
        json!(["+ service \"default\""]),
        "{st}"
    );
}

/// One scrape over `path` (the profile's metrics socket), parsed by a
/// Prometheus text parser.
async fn scrape_unix(path: &std::path::Path) -> prometheus_parse::Scrape {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    parse_reply(&reply)
}

async fn scrape_tcp(addr: &str) -> prometheus_parse::Scrape {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    parse_reply(&reply)
}

fn parse_reply(reply: &str) -> prometheus_parse::Scrape {
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value as V;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => Some(v),
            _ => None,
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The profile's own metrics socket (0600) and its `metrics_listen`, both
/// scraped after one wake and parsed: the original's series names, and ours
/// (acks, latencies, wakes by status, tokens and cost per agent).
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_on_the_profiles_socket_and_its_listen_address() {
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    claude.script_default(Behaviour::new().events(&[init("s1"), captured_result()]));
    let port = free_port();
    let mut cfg = DaemonConfig::new(&backend.url(), &["agent_a"]);
    cfg.profile_lines = format!("metrics_listen = \"127.0.0.1:{port}\"\n");
    home.write_config(&cfg.render(&home));
    let _d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(deliver(1, "agent_a", "m1", "hi")).await;
    conn.recv_matching(T, "final status", |f| {
        frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
    })
    .await;

    let sock = home.path().join(".cloudagent/daemon/metrics.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "metrics.sock mode");
    let m = scrape_unix(&sock).await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&m, name, labels);
    assert!(v("cloudagent_daemon_uptime_seconds", &[]).unwrap() >= 0.0);
    assert_eq!(v("cloudagent_daemon_deliver_frames_total", &[]), Some(1.0));
    assert_eq!(
        v(
            "cloudagent_daemon_spawn_completed_total",
            &[("status", "idle")]
        ),
        Some(1.0)
    );
    assert_eq!(v("cloudagent_daemon_outbox_pending", &[]), Some(0.0));
    assert_eq!(v("cloudagent_daemon_agents_bound", &[]), Some(1.0));
    assert_eq!(
        v(
            "cloudagent_llm_cache_hit_tokens_total",
            &[("source", "daemon")]
        ),
        Some(0.0)
    );
    for status in ["received", "started"] {
        assert_eq!(
            v(
                "cloudagent_daemon_delivery_acks_total",
                &[("status", status)]
            ),
            Some(1.0),
            "{status}"
        );
    }
    assert_eq!(
        v("cloudagent_daemon_deliver_ack_latency_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "cloudagent_daemon_wake_duration_seconds_count",
            &[("status", "idle")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "cloudagent_daemon_agent_tokens_total",
            &[("agent", "agent_a"), ("kind", "input")]
        ),
        Some(3426.0)
    );
    assert_eq!(
        v(
            "cloudagent_daemon_agent_cost_usd_total",
            &[("agent", "agent_a")]
        ),
        Some(0.01858)
    );
    assert_eq!(v("cloudagent_daemon_config_reloads_total", &[]), Some(0.0));
    assert_eq!(v("cloudagent_daemon_wake_queue_depth", &[]), Some(0.0));
    // A histogram is read as one: its buckets are there.
    let wake = m
        .samples
        .iter()
        .find(|s| s.metric == "cloudagent_daemon_wake_duration_seconds")
        .expect("the wake duration histogram");
    assert!(
        matches!(&wake.value, prometheus_parse::Value::Histogram(b) if b.len() > 5),
        "{wake:?}"
    );

    let tcp = scrape_tcp(&format!("127.0.0.1:{port}")).await;
    assert_eq!(
        value(&tcp, "cloudagent_daemon_deliver_frames_total", &[]),
        Some(1.0)
    );
}

/// Two profiles cannot share a metrics port: validation says where.
#[test]
fn two_profiles_on_one_metrics_port_are_refused_with_the_line() {
    let home = TestHome::new();
    let text = "[servers.s]\nurl = \"https://example.test\"\n\n\
        [profiles.default]\nserver = \"s\"\napi_key_env = \"K\"\nmetrics_listen = \"127.0.0.1:9464\"\n\n\
        [profiles.two]\nserver = \"s\"\napi_key_env = \"K\"\nmetrics_listen = \"127.0.0.1:9464\"\n";
    home.write_config(text);
    let out = home.cmd().arg("plan").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cloudagent.toml:12:18: profiles.two.metrics_listen: port 9464 is already profile \"default\"'s metrics_listen; two profiles cannot share a port"),
        "{err}"
    );
}
