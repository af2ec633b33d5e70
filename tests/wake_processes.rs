//! What happens to claude's processes: the real daemon against a fake
//! backend and a fake `claude` that leaves processes behind (in its group,
//! and in a new session with `setsid`), each holding claude's stdout and
//! stderr open and ignoring SIGINT/SIGTERM. Nothing outlives its wake, the
//! daemon, or the daemon killed together with the wake's supervisor.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{deliver, frame_type};
use support::fake_claude::{Behaviour, Call, LeftBehind, pid_alive, send_signal};
use support::scenario::Scenario;

const T: Duration = Duration::from_secs(15);

type Setup = Scenario;

async fn setup(daemon_section: &str) -> Setup {
    Scenario::new(&["agent_a"], daemon_section).await
}

impl Setup {
    /// Invocation `n` once the processes it leaves behind all run.
    async fn call_with_left_behind(&self, n: usize, count: usize) -> Call {
        self.claude
            .wait_until(T, &format!("invocation {n} to leave {count}"), |c| {
                c.get(n - 1).is_some_and(|c| c.left_behind.len() == count)
            })
            .await
            .remove(n - 1)
    }

    fn record(&self) -> std::path::PathBuf {
        self.home
            .path()
            .join(".cloudagent/daemon/wakes/agent_a.json")
    }
}

fn final_status(f: &Value) -> bool {
    frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
}

/// Wait until none of `pids` runs (a zombie does not run).
fn wait_gone(pids: &[i32], what: &str) {
    let deadline = Instant::now() + T;
    while let Some(pid) = pids.iter().find(|p| pid_alive(**p)) {
        assert!(
            Instant::now() < deadline,
            "{what}: pid {pid} still runs after {T:?} (of {pids:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leaves_both(b: Behaviour) -> Behaviour {
    b.leave(LeftBehind::InGroup).leave(LeftBehind::NewSession)
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_left_holding_claudes_output_neither_keep_the_wake_running_nor_survive_it() {
    // Before the supervisor, claude's exit was seen only at stdout's end of
    // file and stderr was read to its end without a deadline: the wake
    // showed `running` for ever.
    let s = setup("wake_timeout_sec = 3\n").await;
    s.claude
        .script(1, leaves_both(Behaviour::ok("sid-1", "done")));
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let st = s.backend.wait_for_frame(T, final_status).await;
    assert_eq!(
        st["payload"],
        json!({"agent_id": "agent_a", "status": "idle", "exit_code": 0,
               "usage": {"input_tokens": 3426, "output_tokens": 58, "cache_read_input_tokens": 0,
                         "cache_creation_input_tokens": 0, "total_cost_usd": 0.01858,
                         "num_turns": 1, "duration_ms": 178}}),
        "claude's own exit is reported, not the wake timeout"
    );
    let call = s.call_with_left_behind(1, 2).await;
    wait_gone(&call.left_behind, "left behind by claude");
    assert!(!s.record().exists(), "the wake's record goes with it");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_the_daemon_stops_claude_and_everything_it_started() {
    let s = setup("").await;
    s.claude
        .script(1, leaves_both(Behaviour::new().wait_release()));
    let (mut d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let call = s.call_with_left_behind(1, 2).await;
    d.signal("KILL");
    d.wait_exit(T).expect("killed");
    let mut all = vec![call.pid];
    if cfg!(target_os = "linux") {
        all.extend(&call.left_behind);
    } else {
        // No subreaper on macOS: the `setsid` escapee is out of reach.
        all.push(call.left_behind[0]);
    }
    wait_gone(&all, "claude and its processes after the daemon's SIGKILL");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_left_by_a_daemon_killed_with_its_supervisor_is_stopped_at_the_next_start() {
    let s = setup("").await;
    s.claude.script(
        1,
        Behaviour::new().wait_release().leave(LeftBehind::InGroup),
    );
    let (mut d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let call = s.call_with_left_behind(1, 1).await;
    assert!(s.record().exists(), "a running wake is recorded");
    let supervisor = call.ppid;
    // Stopped first, so that it cannot act on the daemon's death.
    send_signal(supervisor, "STOP");
    d.signal("KILL");
    d.wait_exit(T).expect("killed");
    send_signal(supervisor, "KILL");
    wait_gone(&[supervisor], "the supervisor");
    std::thread::sleep(Duration::from_millis(300));
    assert!(call.is_alive(), "nothing has stopped claude yet");
    drop(conn);

    let _d2 = Daemon::start(&s.home, FAST_TIMING);
    let mut all = vec![call.pid];
    all.extend(&call.left_behind);
    wait_gone(&all, "the wake left running, after the restart");
    // The interrupted message runs again.
    s.backend
        .wait_for_frame(T, |f| final_status(f) && f["payload"]["status"] == "idle")
        .await;
    assert!(!s.record().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_supervisor_killed_alone_takes_claude_with_it() {
    let s = setup("").await;
    s.claude.script(
        1,
        Behaviour::new().wait_release().leave(LeftBehind::InGroup),
    );
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let call = s.call_with_left_behind(1, 1).await;
    send_signal(call.ppid, "KILL");
    let st = s.backend.wait_for_frame(T, final_status).await;
    assert_eq!(
        st["payload"],
        json!({"agent_id": "agent_a", "status": "crashed", "exit_code": -9})
    );
    let mut all = vec![call.pid];
    all.extend(&call.left_behind);
    wait_gone(&all, "claude's group after its supervisor died");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claude_that_cannot_be_executed_is_reported_as_before() {
    let s = setup("").await;
    s.home.fake_bin("claude", "#!/nonexistent/interpreter\n");
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let st = s.backend.wait_for_frame(T, final_status).await;
    assert_eq!(
        st["payload"],
        json!({"agent_id": "agent_a", "status": "crashed", "exit_code": 126})
    );
    let tail = s.home.last_spawn("agent_a")["stderr_tail"].clone();
    assert!(tail.as_str().unwrap().contains("cannot start "), "{tail}");
    assert!(!s.record().exists());
}
