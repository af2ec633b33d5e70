//! The real daemon binary against a fake backend on 127.0.0.1:0 and a fake
//! `claude` on PATH: every scenario over each transport, WebSocket and
//! SSE + POST (docs/PROTOCOL.md, "Transports"), with the same assertions.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{Auth, FakeBackend, deliver, frame, frame_type};
use support::fake_claude::{Behaviour, FakeClaude, assistant_tool_use, init, result_success};
use support::scenario::{Scenario, Transport};
use support::stdout;

const T: Duration = Duration::from_secs(15);

type Setup = Scenario;

async fn setup(t: Transport, agents: &[&str], daemon_section: &str) -> Setup {
    Scenario::over(t, agents, daemon_section).await
}

over_both_transports!(
    handshake_sends_bearer_ready_and_resume,
    deliver_acks_runs_claude_and_reports_statuses_in_order,
    duplicate_deliver_is_acked_again_but_not_run_twice,
    a_burst_with_duplicates_is_acked_in_order_and_each_message_runs_once,
    reconnects_and_resumes_from_the_last_accepted_seq,
    backoff_grows_while_failing_and_resets_after_a_good_connection,
    rejected_key_at_start_is_terminal_with_a_clear_message,
    rejected_key_on_reconnect_is_terminal,
    malformed_frames_are_skipped_and_the_connection_stays_up,
    sigkill_after_ack_then_restart_runs_each_message_exactly_once,
    frames_of_a_wake_that_ends_while_disconnected_arrive_after_reconnect,
    stale_session_is_retried_without_resume,
    claude_crash_is_reported_as_crashed,
    exit_zero_with_an_error_result_is_not_idle,
    hung_claude_is_killed_by_the_timeout,
    sigterm_with_a_wake_running_stops_claude_and_replays_after_restart,
    bye_closes_and_reconnects_unless_the_host_was_removed,
    silent_server_is_dropped_by_the_watchdog,
    server_that_never_says_hello_is_not_waited_for_forever,
    second_daemon_of_a_profile_is_refused_and_status_and_stop_work,
    assign_materialises_a_workspace_for_a_server_agent,
    text_only_answer_triggers_the_fallback_send_message,
    a_full_agent_queue_signals_queue_full_but_keeps_the_message,
);

fn ty_status(f: &Value) -> String {
    match frame_type(f) {
        "delivery_ack" => format!("ack:{}", f["payload"]["status"].as_str().unwrap_or("?")),
        "agent_status" => format!("status:{}", f["payload"]["status"].as_str().unwrap_or("?")),
        other => other.to_string(),
    }
}

/// Frames about one message/agent after the handshake, as "type:status".
fn timeline(backend: &FakeBackend) -> Vec<String> {
    backend
        .all_frames()
        .into_iter()
        .map(|(_, f)| ty_status(&f))
        .filter(|t| !matches!(t.as_str(), "ready" | "resume" | "pong"))
        .collect()
}

/// A claude run that answers through send_message (so no fallback reply).
fn replies(sid: &str, text: &str) -> Behaviour {
    Behaviour::new().events(&[
        init(sid),
        assistant_tool_use(
            sid,
            "mcp__cloudagent__send_message",
            json!({"target": "user", "body": text}),
        ),
        result_success(sid, text),
    ])
}

fn idle_status(f: &Value) -> bool {
    frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
}

/// Wait until `n` wakes have reported their final status.
async fn wait_for_finals(backend: &FakeBackend, n: usize) {
    backend
        .wait_for_frames(T, &format!("{n} final statuses"), |f| {
            f.iter().filter(|(_, f)| idle_status(f)).count() == n
        })
        .await;
}

/// Every delivery ack so far as "message_id:status", in order.
fn acks(backend: &FakeBackend) -> Vec<String> {
    backend
        .frames_of_type("delivery_ack")
        .iter()
        .map(|a| {
            let id = &a["payload"]["message_id"];
            let id = id.as_str().map(String::from).unwrap_or(id.to_string());
            format!("{id}:{}", a["payload"]["status"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// The message ids acked `received`, in order.
fn received(backend: &FakeBackend) -> Vec<String> {
    acks(backend)
        .iter()
        .filter_map(|a| a.strip_suffix(":received").map(String::from))
        .collect()
}

/// The message id of every claude run, from its wake prompt, in run order.
fn runs(claude: &FakeClaude) -> Vec<String> {
    claude
        .calls()
        .iter()
        .map(|c| {
            let at = c.stdin.find("message_id: ").expect("message id in prompt") + 12;
            c.stdin[at..].split_whitespace().next().unwrap().to_string()
        })
        .collect()
}

async fn handshake_sends_bearer_ready_and_resume(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    let _d = Daemon::start(&s.home, FAST_TIMING);
    let mut conn = s.backend.next_connection(T).await;
    assert_eq!(
        conn.upgrade.authorization.as_deref(),
        Some("Bearer sk_machine_testkey")
    );
    assert_eq!(conn.upgrade.path, t.handshake_path());
    let ready = conn.recv(T).await;
    assert_eq!(frame_type(&ready), "ready");
    let keys: Vec<&String> = ready.as_object().unwrap().keys().collect();
    match t {
        Transport::Ws => assert_eq!(keys, ["v", "type", "id", "ts", "payload"]),
        // The POST body is the payload alone.
        Transport::Sse => assert!(ready["payload"].get("type").is_none(), "{ready}"),
    }
    let p = &ready["payload"];
    assert_eq!(p["daemon_ver"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["os"], "linux");
    assert!(p["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(p["runtimes"][0]["name"], "claude_code");
    assert_eq!(p["runtimes"][0]["version"], "2.1.197 (Claude Code)");
    assert!(p.get("workspace_root").is_none());
    let resume = conn.recv(T).await;
    assert_eq!(frame_type(&resume), "resume");
    assert_eq!(resume["payload"], json!({"last_seq": 0}));
    if t == Transport::Ws {
        // Application-level ping is answered with pong (SSE has no ping).
        conn.send(frame("ping", json!({}))).await;
        let pong = conn.recv_type("pong", T).await;
        assert_eq!(pong["payload"], json!({}));
    }
}

async fn deliver_acks_runs_claude_and_reports_statuses_in_order(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude.script(1, replies("sid-1", "done"));
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    let mut d = deliver(7, "agent_a", "236", "hello there");
    d["payload"]["append_system_prompt"] = json!("Be terse.");
    conn.send(d).await;

    let ack = conn.recv_type("delivery_ack", T).await;
    assert_eq!(
        ack["payload"].to_string(),
        r#"{"message_id":"236","status":"received","seq":7}"#
    );
    s.backend.wait_for_frame(T, idle_status).await;
    assert_eq!(
        timeline(&s.backend),
        [
            "ack:received",
            "ack:started",
            "status:running",
            "agent_session_start",
            "status:idle"
        ]
    );
    let start = &s.backend.frames_of_type("agent_session_start")[0];
    assert_eq!(
        start["payload"],
        json!({"agent_id": "agent_a", "claude_session_id": "sid-1"})
    );
    let idle = s.backend.frames_of_type("agent_status").pop().unwrap();
    assert_eq!(
        idle["payload"],
        json!({"agent_id": "agent_a", "status": "idle", "exit_code": 0, "usage": fake_usage()})
    );

    let call = &s.claude.calls()[0];
    let meta = s.home.path().join(".cloudagent/agents/agent_a/.meta");
    let mcp = meta.join("claude-mcp-config.json");
    assert_eq!(call.arg_after("--mcp-config"), Some(mcp.to_str().unwrap()));
    for flag in ["--print", "--verbose", "--include-partial-messages"] {
        assert!(call.has_arg(flag), "{flag} missing: {:?}", call.argv);
    }
    assert_eq!(call.arg_after("--output-format"), Some("stream-json"));
    assert!(
        call.arg_after("--allowedTools")
            .unwrap()
            .contains("mcp__cloudagent__send_message")
    );
    let system = call.arg_after("--append-system-prompt").unwrap();
    assert!(
        system.contains("agent_a") && system.ends_with("Be terse."),
        "{system}"
    );
    assert!(!call.has_arg("--resume"));
    assert!(call.stdin_eof, "stdin must be closed");
    assert!(call.stdin.starts_with("[meta]\ndispatch_source: user_direct\nfrom: user\nmessage_id: 236\n[/meta]\n\nhello there"), "{}", call.stdin);
    let cwd = s
        .home
        .path()
        .join(".cloudagent/agents/agent_a/workspace")
        .canonicalize()
        .unwrap();
    assert_eq!(call.cwd, cwd);
    assert_eq!(call.pgid, call.pid, "claude runs in its own process group");
    assert_eq!(
        call.env
            .get("CLOUDAGENT_DAEMON_PROFILE")
            .map(String::as_str),
        Some("default")
    );
    assert!(!call.env.contains_key("CLAUDECODE"));

    let last = s.home.last_spawn("agent_a");
    assert_eq!(last["session_id"], "sid-1");
    assert_eq!(last["exit_code"], 0);
    assert!(!meta.join("current-session.txt").exists());
}

async fn duplicate_deliver_is_acked_again_but_not_run_twice(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    s.backend.wait_for_frame(T, idle_status).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    // A wake_id already seen also dedups a new message id.
    let mut w1 = deliver(2, "agent_a", "m2", "y");
    w1["payload"]["wake_id"] = json!("wk_1");
    conn.send(w1).await;
    wait_for_finals(&s.backend, 2).await;
    let mut w2 = deliver(3, "agent_a", "m3", "z");
    w2["payload"]["wake_id"] = json!("wk_1");
    conn.send(w2).await;
    s.backend
        .wait_for_frames(T, "ack of m3", |f| {
            f.iter().any(|(_, f)| f["payload"]["message_id"] == "m3")
        })
        .await;
    // A wrongly started m3 would run before m4 (one agent runs its wakes
    // in order), so m4's end shows it.
    conn.send(deliver(4, "agent_a", "m4", "w")).await;
    wait_for_finals(&s.backend, 3).await;
    assert_eq!(
        acks(&s.backend),
        [
            "m1:received",
            "m1:started",
            "m1:received",
            "m2:received",
            "m2:started",
            "m3:received",
            "m4:received",
            "m4:started"
        ]
    );
    assert_eq!(
        runs(&s.claude),
        ["m1", "m2", "m4"],
        "m1, m2 and m4 ran once each; m3 was a wake duplicate"
    );
}

async fn a_burst_with_duplicates_is_acked_in_order_and_each_message_runs_once(t: Transport) {
    let s = setup(t, &["agent_a", "agent_b"], "").await;
    s.claude.script_default(replies("sid-b", "ok"));
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    // One write: the daemon reads the burst together and records it as one
    // batch, duplicates of messages in the same unsynced batch included.
    let mut burst = Vec::new();
    for i in 0..20 {
        let agent = if i % 2 == 0 { "agent_a" } else { "agent_b" };
        let d = deliver(i + 1, agent, &format!("m{i}"), "x");
        burst.push(d.clone());
        burst.push(d);
    }
    conn.send_burst(&burst).await;
    wait_for_finals(&s.backend, 20).await;
    let expected: Vec<String> = (0..20)
        .flat_map(|i| [format!("m{i}"), format!("m{i}")])
        .collect();
    assert_eq!(
        received(&s.backend),
        expected,
        "one ack per deliver, in arrival order"
    );
    let mut ran = runs(&s.claude);
    ran.sort();
    let mut once: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    once.sort();
    assert_eq!(ran, once, "each message ran exactly once");
    let resume_after = s.home.cmd().args(["status", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&resume_after.stdout).unwrap();
    assert_eq!(v["last_seq"], 20);
}

async fn reconnects_and_resumes_from_the_last_accepted_seq(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(41, "agent_a", "m41", "x")).await;
    conn.recv_type("delivery_ack", T).await;
    s.backend.wait_for_frame(T, idle_status).await;
    conn.drop_abruptly();
    let mut conn = s.backend.next_connection(T).await;
    let resume = conn.recv_type("resume", T).await;
    assert_eq!(resume["payload"]["last_seq"], 41);
    // A server `close` also leads to a reconnect.
    conn.close().await;
    let mut conn = s.backend.next_connection(T).await;
    assert_eq!(conn.recv_type("resume", T).await["payload"]["last_seq"], 41);
}

async fn backoff_grows_while_failing_and_resets_after_a_good_connection(t: Transport) {
    let s = setup(t, &[], "").await;
    let _d = Daemon::start(&s.home, "backoff_base_ms=200,backoff_max_ms=5000");
    let conn = s.backend.next_connection(T).await;
    s.backend.set_auth(Auth::Reject(503));
    conn.drop_abruptly();
    let mut times = vec![];
    for n in 2..=6 {
        s.backend.wait_for_upgrades(n, T).await;
        times.push(Instant::now());
    }
    // 5 failed attempts: gaps ≈ 400, 800, 1600, 3200 ms (±20%).
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(gaps[3] > 2.0 * gaps[0], "backoff did not grow: {gaps:?}");
    s.backend.set_auth(Auth::Accept);
    let mut conn = s.backend.next_connection(T).await;
    // Only a complete handshake counts as a good connection.
    conn.recv_type("resume", T).await;
    let t0 = Instant::now();
    conn.drop_abruptly();
    s.backend.wait_for_upgrades(8, T).await;
    let after_reset = (Instant::now() - t0).as_secs_f64();
    assert!(
        after_reset < gaps[3] / 2.0,
        "backoff not reset after a good connection: {after_reset} vs {gaps:?}"
    );
}

async fn rejected_key_at_start_is_terminal_with_a_clear_message(t: Transport) {
    let s = setup(t, &[], "").await;
    s.backend.set_auth(Auth::Reject(401));
    let mut d = Daemon::start(&s.home, FAST_TIMING);
    let status = d.wait_exit(T).expect("daemon should exit");
    assert_eq!(status.code(), Some(1));
    let out = d.output(&s.home);
    assert!(
        out.contains("rejected the machine API key (HTTP 401)"),
        "{out}"
    );
    assert!(!out.contains("sk_machine_testkey"), "key leaked: {out}");
    assert_eq!(s.backend.upgrade_count(), 1, "401 must not be retried");
}

async fn rejected_key_on_reconnect_is_terminal(t: Transport) {
    let s = setup(t, &[], "").await;
    let mut d = Daemon::start(&s.home, FAST_TIMING);
    let conn = s.backend.next_connection(T).await;
    s.backend.set_auth(Auth::Reject(403));
    conn.drop_abruptly();
    let status = d.wait_exit(T).expect("daemon should exit");
    assert_eq!(status.code(), Some(1));
    assert!(d.output(&s.home).contains("HTTP 403"));
}

async fn malformed_frames_are_skipped_and_the_connection_stays_up(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    let bad = [
        "this is not json",
        "[1,2,3]",
        "42",
        r#"{"no_type":true}"#,
        r#"{"type":"mystery","payload":{}}"#,
        r#"{"type":"deliver","payload":{"agent_id":"agent_a","message_id":"x1"}}"#,
        r#"{"type":"deliver","seq":"5","payload":{"agent_id":"agent_a","message_id":"x2"}}"#,
        r#"{"type":"deliver","seq":1.5,"payload":{"agent_id":"agent_a","message_id":"x3"}}"#,
        r#"{"type":"deliver","seq":6,"payload":null}"#,
        r#"{"type":"deliver","seq":7,"payload":{"agent_id":"agent_a"}}"#,
        r#"{"type":"deliver","seq":8,"payload":{"agent_id":"../etc","message_id":"x4"}}"#,
        r#"{"type":"deliver","seq":9,"payload":{"agent_id":"agent_a","message_id":"x5","body":{"a":1}}}"#,
        r#"{"type":"deliver","seq":10,"payload":"text"}"#,
        r#"{"type":"tool_result","payload":{"ok":true}}"#,
        r#"{"type":"tool_result","payload":{"request_id":"req_unknown","ok":true}}"#,
        r#"{"type":"assign","payload":{}}"#,
        r#"{"type":"assign","payload":null}"#,
        r#"{"type":"unassign","payload":{}}"#,
    ];
    for b in bad {
        conn.send_raw(b).await;
    }
    conn.send(deliver(11, "agent_a", "good", "ok")).await;
    let ack = conn.recv_type("delivery_ack", T).await;
    assert_eq!(ack["payload"]["message_id"], "good");
    s.backend.wait_for_frame(T, idle_status).await;
    assert_eq!(
        s.backend.accepted_count(),
        1,
        "the connection was never dropped"
    );
    assert_eq!(s.claude.calls().len(), 1);
    assert!(!s.home.path().join(".cloudagent/etc").exists());
    let acked = acks(&s.backend);
    assert!(acked.iter().all(|a| a.starts_with("good:")), "{acked:?}");
}

async fn sigkill_after_ack_then_restart_runs_each_message_exactly_once(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    // The first message blocks, so the second is accepted but only queued.
    s.claude
        .script(1, Behaviour::ok("sid-1", "one").wait_release());
    let (mut d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "first")).await;
    conn.send(deliver(2, "agent_a", "m2", "second")).await;
    s.backend
        .wait_for_frames(T, "both received acks", |f| {
            f.iter()
                .filter(|(_, f)| f["payload"]["status"] == "received")
                .count()
                == 2
        })
        .await;
    // Killed once claude has read its whole prompt (the fake records the
    // call before it reads stdin; the prompt names the message).
    s.claude
        .wait_until(T, "the first prompt read", |c| {
            c.first().is_some_and(|c| c.stdin_eof)
        })
        .await;
    d.signal("KILL");
    d.wait_exit(T).expect("killed");
    // claude is told to stop when its daemon dies (no orphan left running).
    s.claude.wait_for_gone(1, T).await;
    drop(conn);

    let _d2 = Daemon::start(&s.home, FAST_TIMING);
    let mut conn = s.backend.next_connection(T).await;
    let resume = conn.recv_type("resume", T).await;
    assert_eq!(resume["payload"]["last_seq"], 2);
    s.backend
        .wait_for_frames(T, "two idle statuses", |f| {
            f.iter()
                .filter(|(_, f)| {
                    frame_type(f) == "agent_status" && f["payload"]["status"] == "idle"
                })
                .count()
                == 2
        })
        .await;
    let ran = runs(&s.claude);
    let m1 = ran.iter().filter(|m| *m == "m1").count();
    let m2 = ran.iter().filter(|m| *m == "m2").count();
    assert_eq!(
        (m1, m2),
        (2, 1),
        "m1 interrupted then replayed once; m2 run exactly once: {ran:?}"
    );
    // No second `received` ack: the replay is not a new delivery.
    assert_eq!(received(&s.backend).len(), 2);
}

async fn frames_of_a_wake_that_ends_while_disconnected_arrive_after_reconnect(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude.script(1, replies("sid-9", "later").wait_release());
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    conn.recv_matching(T, "running status", |f| frame_type(f) == "agent_status")
        .await;
    s.backend.set_auth(Auth::Reject(503));
    conn.drop_abruptly();
    s.claude.release(1);
    s.claude.wait_for_exit(1, T).await;
    // Still disconnected: the daemon keeps trying.
    let tries = s.backend.upgrade_count();
    s.backend.wait_for_upgrades(tries + 1, T).await;
    s.backend.set_auth(Auth::Accept);
    let mut conn = s.backend.next_connection(T).await;
    let after: Vec<String> = {
        let mut v = vec![];
        loop {
            let f = conn.recv(T).await;
            v.push(ty_status(&f));
            if idle_status(&f) {
                break;
            }
        }
        v
    };
    assert_eq!(
        after,
        ["ready", "resume", "agent_session_start", "status:idle"]
    );
}

async fn stale_session_is_retried_without_resume(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude.script(1, Behaviour::ok("sid-old", "first"));
    s.claude.script(2, Behaviour::stale_session("sid-old"));
    s.claude.script(3, Behaviour::ok("sid-new", "second"));
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    s.backend.wait_for_frame(T, idle_status).await;
    conn.send(deliver(2, "agent_a", "m2", "y")).await;
    wait_for_finals(&s.backend, 2).await;
    let calls = s.claude.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[1].arg_after("--resume"), Some("sid-old"));
    assert!(!calls[2].has_arg("--resume"));
    assert_eq!(calls[1].stdin, calls[2].stdin);
    let starts: Vec<Value> = s
        .backend
        .frames_of_type("agent_session_start")
        .iter()
        .map(|f| f["payload"]["claude_session_id"].clone())
        .collect();
    assert_eq!(starts, [json!("sid-old"), json!("sid-new")]);
    let m2: Vec<String> = acks(&s.backend)
        .iter()
        .filter_map(|a| a.strip_prefix("m2:").map(String::from))
        .collect();
    assert_eq!(
        m2,
        ["received", "started", "started"],
        "started once per attempt"
    );
    let last = s.backend.frames_of_type("agent_status").pop().unwrap();
    assert_eq!(last["payload"]["status"], "idle");
}

async fn claude_crash_is_reported_as_crashed(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude.script(
        1,
        Behaviour::new()
            .events(&[init("sid-c")])
            .stderr("boom\n")
            .exit_code(3),
    );
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let st = s.backend.wait_for_frame(T, idle_status).await;
    assert_eq!(
        st["payload"],
        json!({"agent_id": "agent_a", "status": "crashed", "exit_code": 3})
    );
    let last = s.home.last_spawn("agent_a");
    assert!(last["stderr_tail"].as_str().unwrap().contains("boom"));
}

async fn exit_zero_with_an_error_result_is_not_idle(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude.script(
        1,
        Behaviour::new().events(&[
            init("sid-e"),
            support::fake_claude::result_error("sid-e", "error_max_turns"),
        ]),
    );
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let st = s.backend.wait_for_frame(T, idle_status).await;
    assert_eq!(st["payload"]["status"], "crashed");
    assert_eq!(st["payload"]["exit_code"], 0);
}

/// The usage in the fake's `result` event, as the final `agent_status`
/// carries it (a run stopped by its timeout had reported it too).
fn fake_usage() -> Value {
    json!({"input_tokens": 3426, "output_tokens": 58, "cache_read_input_tokens": 0,
           "cache_creation_input_tokens": 0, "total_cost_usd": 0.01858, "num_turns": 1,
           "duration_ms": 178})
}

async fn hung_claude_is_killed_by_the_timeout(t: Transport) {
    let s = setup(t, &["agent_a"], "wake_timeout_sec = 1\n").await;
    s.claude.script(1, Behaviour::ok("sid-h", "never").hang());
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    let st = s.backend.wait_for_frame(T, idle_status).await;
    assert_eq!(
        st["payload"],
        json!({"agent_id": "agent_a", "status": "timeout", "exit_code": -9, "usage": fake_usage()})
    );
    let call = s.claude.wait_for_gone(1, T).await;
    assert!(!call.is_alive());
}

async fn sigterm_with_a_wake_running_stops_claude_and_replays_after_restart(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude
        .script(1, Behaviour::ok("sid-t", "slow").wait_release());
    let (mut d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "x")).await;
    s.claude.wait_for_calls(1, T).await;
    d.signal("TERM");
    let status = d.wait_exit(T).expect("daemon stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", d.output(&s.home));
    let call = s.claude.wait_for_gone(1, T).await;
    assert_eq!(
        call.signals.first().map(String::as_str),
        Some("INT"),
        "claude is asked to stop with SIGINT first"
    );
    assert!(!s.home.path().join(".cloudagent/daemon/daemon.pid").exists());
    assert!(
        !s.home
            .path()
            .join(".cloudagent/daemon/bridge.sock")
            .exists()
    );
    drop(conn);

    let _d2 = Daemon::start(&s.home, FAST_TIMING);
    s.backend
        .wait_for_frame(T, |f| {
            frame_type(f) == "agent_status" && f["payload"]["status"] == "idle"
        })
        .await;
    let calls = s.claude.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].stdin, calls[1].stdin,
        "the interrupted wake runs again"
    );
}

async fn bye_closes_and_reconnects_unless_the_host_was_removed(t: Transport) {
    let s = setup(t, &[], "").await;
    let (mut d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(frame("bye", json!({"reason": "server restarting"})))
        .await;
    assert!(conn.closed(T).await);
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(frame("bye", json!({"reason": "host_removed"})))
        .await;
    let status = d
        .wait_exit(T)
        .expect("daemon exits when the host is removed");
    assert_eq!(status.code(), Some(1));
    assert!(d.output(&s.home).contains("removed this host"));
}

async fn silent_server_is_dropped_by_the_watchdog(t: Transport) {
    let s = setup(t, &[], "").await;
    let (_d, mut conn) = s.connect(&format!("{FAST_TIMING},watchdog_ms=500")).await;
    assert!(
        conn.closed(T).await,
        "watchdog should close a silent connection"
    );
    s.backend.next_connection(T).await;
}

async fn server_that_never_says_hello_is_not_waited_for_forever(t: Transport) {
    let s = setup(t, &[], "").await;
    s.backend.set_send_hello(false);
    let _d = Daemon::start(&s.home, &format!("{FAST_TIMING},hello_timeout_ms=300"));
    s.backend.wait_for_upgrades(3, T).await;
}

async fn second_daemon_of_a_profile_is_refused_and_status_and_stop_work(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    let (mut d, _conn) = s.connect(FAST_TIMING).await;

    let mut second = Daemon::start(&s.home, FAST_TIMING);
    let st = second.wait_exit(T).expect("second daemon exits");
    assert_eq!(st.code(), Some(1));
    let out = second.output(&s.home);
    assert!(
        out.contains(&format!(
            "profile 'default' already has a daemon running (running pid={})",
            d.pid()
        )),
        "{out}"
    );

    let out = s.home.cmd().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connection"]["state"], "connected");
    assert_eq!(v["host_id"], "host_test");
    assert_eq!(v["agents"], json!(["agent_a"]));
    assert_eq!(v["pid"], d.pid());
    let out = s.home.cmd().arg("status").output().unwrap();
    assert!(
        stdout(&out).starts_with(&format!("● daemon running (pid={})", d.pid())),
        "{}",
        stdout(&out)
    );

    let out = s.home.cmd().arg("stop").output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout(&out),
        d.output(&s.home)
    );
    assert!(stdout(&out).contains("✓ daemon stopped cleanly"));
    assert_eq!(d.wait_exit(T).and_then(|s| s.code()), Some(0));
    let out = s.home.cmd().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "● daemon not running for profile 'default' (no PID file)\n"
    );
}

async fn assign_materialises_a_workspace_for_a_server_agent(t: Transport) {
    let s = setup(t, &[], "").await;
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    let wr = s.home.path().join("projects/chief");
    conn.send(frame("assign", json!({"agent_id": "agent_srv", "agent_name": "Boss", "is_chief": true, "workspace_root": wr}))).await;
    conn.send(deliver(1, "agent_srv", "m1", "x")).await;
    s.backend.wait_for_frame(T, idle_status).await;
    let meta = s.home.path().join(".cloudagent/agents/agent_srv/.meta");
    let id: Value =
        serde_json::from_slice(&std::fs::read(meta.join("identity.json")).unwrap()).unwrap();
    assert_eq!(id["agent_name"], "Boss");
    assert_eq!(id["is_chief"], true);
    assert_eq!(s.claude.calls()[0].cwd, wr.canonicalize().unwrap());
    let assigned = std::fs::read_to_string(
        s.home
            .path()
            .join(".cloudagent/daemon/assigned-agents.json"),
    )
    .unwrap();
    assert!(assigned.contains("agent_srv"));
    // A deliver for an agent nobody assigned gets a default workspace.
    conn.send(deliver(2, "agent_lazy", "m2", "y")).await;
    wait_for_finals(&s.backend, 2).await;
    assert!(
        s.home
            .path()
            .join(".cloudagent/agents/agent_lazy/.meta/identity.json")
            .is_file()
    );
}

async fn text_only_answer_triggers_the_fallback_send_message(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude
        .script(1, Behaviour::ok("sid-f", "the answer is 42"));
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "question")).await;
    let call = conn.recv_type("tool_call", T).await;
    let p = &call["payload"];
    assert!(p["request_id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(p["agent_id"], "agent_a");
    assert_eq!(p["session_id"], "sess_1");
    assert_eq!(p["tool_name"], "send_message");
    assert_eq!(
        p["args"],
        json!({"target": "user", "body": "the answer is 42", "kind": "reply"})
    );
    conn.send(support::fake_backend::tool_result_ok(
        p["request_id"].as_str().unwrap(),
        json!({"message_id": 99}),
    ))
    .await;
    let st = conn.recv_matching(T, "final status", idle_status).await;
    assert_eq!(st["payload"]["status"], "idle");
}

async fn a_full_agent_queue_signals_queue_full_but_keeps_the_message(t: Transport) {
    let s = setup(t, &["agent_a"], "").await;
    s.claude
        .script(1, Behaviour::ok("sid-q", "busy").wait_release());
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m0", "running")).await;
    s.claude.wait_for_calls(1, T).await;
    // One running, 100 waiting: the 101st waiting one is over capacity.
    for i in 1..=101 {
        conn.send(deliver(1 + i, "agent_a", &format!("m{i}"), "queued"))
            .await;
    }
    let full = conn
        .recv_matching(T, "queue_full ack", |f| {
            f["payload"]["status"] == "queue_full"
        })
        .await;
    assert_eq!(
        full["payload"].to_string(),
        r#"{"message_id":"m101","status":"queue_full"}"#
    );
    assert_eq!(
        received(&s.backend).len(),
        102,
        "every message was accepted first"
    );
    // It is still run: status shows it queued, not dropped.
    let out = s.home.cmd().args(["status", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["queued"], 101);
    assert_eq!(v["pending"], 102);
}
