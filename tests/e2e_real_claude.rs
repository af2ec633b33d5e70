//! End to end with the REAL Claude Code CLI (2.1.197), offline: the daemon
//! spawns it exactly as in production (same argv builder, MCP config and
//! bridge) against a fake backend, and claude talks to a scripted stand-in
//! for the Anthropic Messages API. Each test runs over both transports.
//!
//! The pinned claude is installed into `.tools/` on first use (see
//! `support/real_claude.rs`; CLOUDAGENT_TEST_CLAUDE names another binary);
//! with CLOUDAGENT_SKIP_REAL_CLAUDE=1 and none installed the tests print
//! SKIPPED instead.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::TestHome;
use support::daemon::{Daemon, DaemonConfig};
use support::fake_anthropic::{FakeAnthropic, Reply, Script};
use support::fake_backend::{Conn, FakeBackend, deliver, frame_type, tool_result_ok};
use support::scenario::Transport;

over_both_transports!(
    a_deliver_is_answered_through_send_message_and_the_next_one_resumes,
    a_stale_session_is_retried_without_resume_and_still_replies,
    a_chief_is_offered_the_chief_tools_and_other_tools_are_denied,
    a_text_only_answer_triggers_the_fallback_send_message,
);

const T: Duration = Duration::from_secs(90);
const SEND: &str = "mcp__cloudagent__send_message";
const TIMING: &str = "backoff_base_ms=100,backoff_max_ms=1000,kill_grace_ms=2000,tool_timeout_ms=20000,fallback_timeout_ms=20000";

struct E2e {
    home: TestHome,
    backend: FakeBackend,
    api: FakeAnthropic,
    _daemon: Daemon,
    conn: Conn,
}

async fn start(t: Transport, script: Script, agent_extra: &str) -> Option<E2e> {
    let claude = support::real_claude::find()?;
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let api = FakeAnthropic::start(script).await;
    let mut cfg = DaemonConfig::new(&backend.url(), &["agent_a"]);
    cfg.extra = agent_extra.to_string();
    cfg.transport = t.name().to_string();
    let text = cfg.render(&home).replace(
        &format!(
            "claude_binary = \"{}\"",
            home.bin_dir().join("claude").display()
        ),
        &format!("claude_binary = \"{}\"", claude.display()),
    );
    home.write_config(&text);
    let env = support::real_claude::offline_env(&api.base_url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let daemon = Daemon::start_with_env(&home, TIMING, &env);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    Some(E2e {
        home,
        backend,
        api,
        _daemon: daemon,
        conn,
    })
}

fn is_final(f: &Value) -> bool {
    frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
}

/// Answer every tool_call until the wake's final status; returns the tool
/// calls and the final status.
async fn serve_until_final(conn: &mut Conn) -> (Vec<Value>, Value) {
    let mut calls = vec![];
    loop {
        let f = conn.recv(T).await;
        if frame_type(&f) == "tool_call" {
            let rid = f["payload"]["request_id"].as_str().unwrap().to_string();
            calls.push(f);
            conn.send(tool_result_ok(
                &rid,
                json!({"message_id": 900 + calls.len()}),
            ))
            .await;
        } else if is_final(&f) {
            return (calls, f);
        }
    }
}

fn offered_cloudagent_tools(api: &FakeAnthropic) -> Vec<String> {
    let req = api
        .main_requests()
        .into_iter()
        .next()
        .expect("claude called the model");
    let mut names: Vec<String> = req
        .tool_names()
        .into_iter()
        .filter(|n| n.starts_with("mcp__"))
        .collect();
    names.sort();
    names
}

fn session_file(home: &Path, id: &str) -> Option<PathBuf> {
    let projects = home.join(".claude/projects");
    std::fs::read_dir(projects)
        .ok()?
        .flatten()
        .map(|d| d.path().join(format!("{id}.jsonl")))
        .find(|p| p.is_file())
}

fn reply_script() -> Script {
    Script::per_prompt(vec![
        Reply::tool_use(
            SEND,
            json!({"target": "user", "body": "hello from the model", "kind": "reply", "parent_msg_id": 236}),
        ),
        Reply::text("all done"),
    ])
}

async fn a_deliver_is_answered_through_send_message_and_the_next_one_resumes(t: Transport) {
    let started = std::time::Instant::now();
    let Some(mut e) = start(t, reply_script(), "").await else {
        return;
    };
    e.conn.send(deliver(1, "agent_a", "236", "say hello")).await;
    let (calls, status) = serve_until_final(&mut e.conn).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let p = &calls[0]["payload"];
    assert_eq!(p["tool_name"], "send_message");
    assert_eq!(p["session_id"], "sess_1");
    assert_eq!(
        p["args"],
        json!({"target": "user", "body": "hello from the model", "kind": "reply", "parent_msg_id": 236})
    );
    // claude's usage of this run comes along (docs/PROTOCOL.md,
    // "agent_status"); its figures are the stand-in API's.
    let mut payload = status["payload"].clone();
    let usage = payload
        .as_object_mut()
        .and_then(|p| p.remove("usage"))
        .unwrap_or_default();
    assert!(usage["num_turns"].as_u64() >= Some(1), "{usage}");
    assert!(usage["output_tokens"].as_u64().is_some(), "{usage}");
    assert_eq!(
        payload,
        json!({"agent_id": "agent_a", "status": "idle", "exit_code": 0})
    );

    let start = e.backend.frames_of_type("agent_session_start");
    assert_eq!(start.len(), 1);
    let sid = start[0]["payload"]["claude_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        session_file(e.home.path(), &sid).is_some(),
        "claude's session {sid} is stored under HOME"
    );
    // The model saw our tool result.
    let results = e.api.tool_results();
    assert_eq!(results.len(), 1);
    assert!(
        !results[0].is_error && results[0].text.contains("901"),
        "{results:?}"
    );
    assert_eq!(
        offered_cloudagent_tools(&e.api),
        [
            "mcp__cloudagent__list_messages",
            "mcp__cloudagent__schedule_reminder",
            "mcp__cloudagent__send_message",
            "mcp__cloudagent__upload_file",
        ]
    );
    let first = e.api.main_requests();

    e.conn.send(deliver(2, "agent_a", "237", "and again")).await;
    let (calls, status) = serve_until_final(&mut e.conn).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(status["payload"]["status"], "idle");
    let second = e
        .api
        .main_requests()
        .into_iter()
        .skip(first.len())
        .collect::<Vec<_>>();
    assert_eq!(
        second[0].session_id().as_deref(),
        Some(sid.as_str()),
        "resumed the same session"
    );
    assert!(
        second[0].contains_conversation_of(&first[0]),
        "the earlier conversation is in the request"
    );
    assert!(second[0].messages_contain("say hello"));
    assert_eq!(
        e.backend.frames_of_type("agent_session_start").len(),
        1,
        "no new session"
    );
    println!(
        "two real claude wakes took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn a_stale_session_is_retried_without_resume_and_still_replies(t: Transport) {
    let Some(mut e) = start(t, reply_script(), "").await else {
        return;
    };
    e.conn.send(deliver(1, "agent_a", "236", "first")).await;
    serve_until_final(&mut e.conn).await;
    let sid = e.backend.frames_of_type("agent_session_start")[0]["payload"]["claude_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(session_file(e.home.path(), &sid).expect("session file")).unwrap();

    e.conn.send(deliver(2, "agent_a", "237", "second")).await;
    let (calls, status) = serve_until_final(&mut e.conn).await;
    assert_eq!(calls.len(), 1, "still replied");
    assert_eq!(status["payload"]["status"], "idle");
    let starts = e.backend.frames_of_type("agent_session_start");
    assert_eq!(starts.len(), 2);
    assert_ne!(
        starts[1]["payload"]["claude_session_id"],
        sid.as_str(),
        "a fresh session"
    );
    let started: Vec<&Value> = e
        .backend
        .frames_of_type("delivery_ack")
        .iter()
        .filter(|a| a["payload"]["message_id"] == "237" && a["payload"]["status"] == "started")
        .map(|_| &Value::Null)
        .collect();
    assert_eq!(started.len(), 2, "one `started` per attempt");
    let last = e.home.last_spawn("agent_a");
    assert_eq!(
        last["session_id"],
        starts[1]["payload"]["claude_session_id"]
    );
}

async fn a_chief_is_offered_the_chief_tools_and_other_tools_are_denied(t: Transport) {
    let outside =
        std::env::temp_dir().join(format!("cloudagent-e2e-denied-{}", std::process::id()));
    let script = Script::per_prompt(vec![
        Reply::tool_use(
            "Write",
            json!({"file_path": outside.to_str().unwrap(), "content": "should not exist"}),
        ),
        Reply::tool_use(
            SEND,
            json!({"target": "user", "body": "could not write", "kind": "reply", "parent_msg_id": 236}),
        ),
        Reply::text("done"),
    ]);
    let Some(mut e) = start(t, script, "chief = true\n").await else {
        return;
    };
    e.conn
        .send(deliver(1, "agent_a", "236", "write a file"))
        .await;
    let (calls, status) = serve_until_final(&mut e.conn).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(status["payload"]["status"], "idle");
    assert_eq!(
        offered_cloudagent_tools(&e.api),
        [
            "mcp__cloudagent__close_task",
            "mcp__cloudagent__delegate_to_staff",
            "mcp__cloudagent__list_messages",
            "mcp__cloudagent__request_user_approval",
            "mcp__cloudagent__schedule_reminder",
            "mcp__cloudagent__send_message",
            "mcp__cloudagent__set_company_status",
            "mcp__cloudagent__upload_file",
        ]
    );
    let denied = e
        .api
        .tool_results()
        .into_iter()
        .find(|r| r.is_error)
        .expect("the Write tool was refused");
    assert!(!outside.exists(), "the denied tool must not have run");
    println!("denied tool result: {}", denied.text);
}

async fn a_text_only_answer_triggers_the_fallback_send_message(t: Transport) {
    let Some(mut e) = start(t, Script::text("Here is my answer in plain text."), "").await else {
        return;
    };
    e.conn
        .send(deliver(1, "agent_a", "236", "answer in text"))
        .await;
    let (calls, status) = serve_until_final(&mut e.conn).await;
    assert_eq!(calls.len(), 1, "the daemon's fallback");
    let p = &calls[0]["payload"];
    assert_eq!(p["tool_name"], "send_message");
    assert_eq!(
        p["args"],
        json!({"target": "user", "body": "Here is my answer in plain text.", "kind": "reply"})
    );
    assert_eq!(status["payload"]["status"], "idle");
}
