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
