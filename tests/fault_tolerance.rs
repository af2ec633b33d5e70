//! The daemon's promise under faults — nothing lost, nothing run twice,
//! nothing stuck — where a bug or a hostile value would break it: a
//! panicking wake, a timeout too large for the clock.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::{FakeBackend, deliver, frame_type};
use support::fake_claude::FakeClaude;
use support::{TestHome, stderr};

const T: Duration = Duration::from_secs(15);

fn final_status(f: &Value) -> bool {
    frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
}

/// A wake that panics (injected) is reported `crashed`, its slot is freed
/// (one slot only: the next message could not run otherwise), the agent's
/// next message runs, and the daemon stays up.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_wake_frees_its_slot_and_the_daemon_goes_on() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    let mut cfg = DaemonConfig::new(&backend.url(), &["agent_a"]);
    cfg.daemon_section = "max_concurrent_wakes = 1\n".into();
    home.write_config(&cfg.render(&home));
    let mut d = Daemon::start_with_env(
        &home,
        FAST_TIMING,
        &[("CLOUDAGENT_DAEMON_TEST_FAILPOINTS", "wake_panic=m1")],
    );
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(deliver(1, "agent_a", "m1", "boom")).await;
    conn.send(deliver(2, "agent_a", "m2", "fine")).await;
    let first = backend.wait_for_frame(T, final_status).await;
    assert_eq!(
        first["payload"],
        json!({"agent_id": "agent_a", "status": "crashed", "exit_code": -1})
    );
    let frames = backend
        .wait_for_frames(T, "two final statuses", |fs| {
            fs.iter().filter(|(_, f)| final_status(f)).count() >= 2
        })
        .await;
    let finals: Vec<&Value> = frames
        .iter()
        .map(|(_, f)| f)
        .filter(|f| final_status(f))
        .collect();
    assert_eq!(finals[1]["payload"]["status"], "idle");
    assert_eq!(claude.calls().len(), 1, "m1 never reached claude, m2 did");
    assert!(
        d.wait_exit(Duration::from_millis(100)).is_none(),
        "the daemon is still up"
    );
    assert!(d.output(&home).contains("panicked"));
}

#[test]
fn a_wake_timeout_too_large_for_the_clock_is_rejected() {
    let home = TestHome::new();
    let cfg = DaemonConfig::new("https://api.example.com", &["agent_a"]);
    let mut text = cfg.render(&home);
    text = text.replace(
        "[daemon]\n",
        "[daemon]\nwake_timeout_sec = 9223372036854775807\n",
    );
    let path = home.write_config(&text);
    let out = home.cmd().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("wake_timeout_sec")
            && err.contains("604800")
            && err.contains(&path.display().to_string()),
        "{err}"
    );
}
