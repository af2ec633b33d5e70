//! Messages the original daemon acknowledged but never ran
//! (`.meta/pending-spawn.jsonl`: `received` without `done`) run exactly
//! once, on the first `start`, and are then marked done in the original's
//! file; entries for an agent this profile does not know are skipped with a
//! log line. Real binary, temporary HOME, fake backend, fake claude.

mod support;

use std::time::Duration;

use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{deliver, frame_type};
use support::scenario::Scenario;

const T: Duration = Duration::from_secs(15);

fn outbox(s: &Scenario, agent: &str) -> std::path::PathBuf {
    s.home
        .path()
        .join(".cloudagent/agents")
        .join(agent)
        .join(".meta/pending-spawn.jsonl")
}

fn write_outbox(s: &Scenario, agent: &str, text: &str) {
    let p = outbox(s, agent);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn received(agent: &str, id: &str, body: &str) -> String {
    format!(
        "{{\"event\": \"received\", \"msg_id\": \"{id}\", \"wake_id\": null, \"ts\": \"2026-11-26T21:33:27.953188+00:00\", \"payload\": {{\"agent_id\": \"{agent}\", \"message_id\": \"{id}\", \"body\": \"{body}\", \"session_id\": \"sess_1\"}}}}\n"
    )
}

fn done(id: &str) -> String {
    format!(
        "{{\"event\": \"done\", \"msg_id\": \"{id}\", \"ts\": \"2026-11-26T21:33:30.691034+00:00\", \"ok\": true}}\n"
    )
}

fn stop(mut d: Daemon) -> Daemon {
    d.signal("TERM");
    assert!(d.wait_exit(T).expect("exits on SIGTERM").success());
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acked_but_unrun_message_runs_once_across_two_starts() {
    let s = Scenario::new(&["agent_a"], "").await;
    write_outbox(
        &s,
        "agent_a",
        &format!(
            "{}{}{}not json\n",
            received("agent_a", "m_old", "already ran"),
            done("m_old"),
            received("agent_a", "m_lost", "run me once"),
        ),
    );
    // An agent this profile knows nothing about (not declared, not
    // assigned, no identity): skipped.
    write_outbox(&s, "agent_x", &received("agent_x", "m_x", "not mine"));

    let d = Daemon::start(&s.home, FAST_TIMING);
    let first = s.claude.wait_for_exit(1, T).await;
    assert!(first.stdin.contains("run me once"), "{:?}", first.stdin);
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    // The wake's final status: the daemon has recorded it as done.
    s.backend
        .wait_for_frame(T, |f| {
            frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
        })
        .await;
    let d = stop(d);
    drop(conn);
    let log = d.output(&s.home);
    assert!(log.contains("which this profile does not know"), "{log}");
    assert_eq!(s.claude.calls().len(), 1, "only the unrun message ran");
    let text = std::fs::read_to_string(outbox(&s, "agent_a")).unwrap();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("\"event\": \"done\", \"msg_id\": \"m_lost\""),
        "{text}"
    );

    // Second start: nothing replays; a new message is the second run.
    let d = Daemon::start(&s.home, FAST_TIMING);
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(deliver(1, "agent_a", "m_new", "fresh")).await;
    let second = s.claude.wait_for_exit(2, T).await;
    assert!(second.stdin.contains("fresh"), "{:?}", second.stdin);
    assert_eq!(s.claude.calls().len(), 2);
    stop(d);
}
