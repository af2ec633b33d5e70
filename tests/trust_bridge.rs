//! The bridge socket's trust boundary (SECURITY.md, "The bridge socket"):
//! the daemon serves a tool call only from the bridge of an agent's running
//! wake, presenting that wake's token, and only for a tool in the agent's
//! set. Real daemon, fake backend, fake claude; the "attacker" is this test
//! speaking to `bridge.sock` directly or running `mcp-bridge` by hand.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cloudagent_daemon::bridge::ipc::{self, ClientError};
use cloudagent_daemon::protocol::ipc::{Request, ToolCallArgs};
use serde_json::{Value, json};
use support::fake_backend::{deliver, frame_type};
use support::fake_claude::Behaviour;
use support::scenario::{Connected, Scenario};

const T: Duration = Duration::from_secs(15);

type Setup = Connected;

/// A daemon with a staff agent `agent_s` and a chief `agent_c`, connected.
async fn setup() -> Setup {
    let s = Scenario::with_config(&["agent_s"], |cfg| {
        cfg.extra = "\n[profiles.default.agents.agent_c]\nname = \"Chief\"\nchief = true\n".into();
    })
    .await;
    s.started().await
}

impl Setup {
    fn socket(&self) -> PathBuf {
        self.home.path().join(".cloudagent/daemon/bridge.sock")
    }
    fn token_file(&self, agent: &str) -> PathBuf {
        self.home
            .path()
            .join(format!(".cloudagent/agents/{agent}/.meta/claude-token.txt"))
    }
    async fn call(
        &self,
        agent: &str,
        tool: &str,
        token: Option<&str>,
    ) -> Result<Value, ClientError> {
        let request = Request::ToolCall(ToolCallArgs {
            agent_id: agent.into(),
            tool_name: tool.into(),
            tool_args: json!({"task_id": "t1", "summary": "forged"}),
            session_id: None,
            token: token.map(String::from),
        });
        ipc::call(&self.socket(), &request, T).await
    }
}

fn refused(r: Result<Value, ClientError>, code: &str) -> String {
    match r {
        Err(ClientError::Remote(e)) if e.code == code => e.message,
        other => panic!("expected a {code} refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_a_wake_no_call_is_served_with_or_without_a_token() {
    let s = setup().await;
    let msg = refused(s.call("agent_c", "close_task", None).await, "NOT_IN_WAKE");
    assert!(msg.contains("SECURITY.md"), "{msg}");
    refused(
        s.call("agent_c", "close_task", Some("guess")).await,
        "NOT_IN_WAKE",
    );
    refused(
        s.call("agent_x", "send_message", Some("guess")).await,
        "NOT_IN_WAKE",
    );
    refused(
        s.call("../etc", "send_message", None).await,
        "BRIDGE_DISPATCH_FAILED",
    );
    assert!(s.backend.frames_of_type("tool_call").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staff_wake_can_neither_call_chief_tools_nor_act_as_the_chief() {
    let mut s = setup().await;
    s.claude
        .script(1, Behaviour::ok("sid-s", "done").wait_release());
    s.conn.send(deliver(1, "agent_s", "m1", "hello")).await;
    s.claude.wait_for_calls(1, T).await;
    let file = s.token_file("agent_s");
    let token = std::fs::read_to_string(&file).expect("token written before claude starts");
    assert_eq!(support::mode(&file), 0o600);

    // The staff agent's own token does not open chief tools, nor the chief.
    let msg = refused(
        s.call("agent_s", "close_task", Some(&token)).await,
        "TOOL_NOT_ALLOWED",
    );
    assert!(msg.contains("staff tools"), "{msg}");
    refused(
        s.call("agent_c", "close_task", Some(&token)).await,
        "NOT_IN_WAKE",
    );
    refused(
        s.call("agent_s", "no_such_tool", Some(&token)).await,
        "TOOL_NOT_ALLOWED",
    );
    refused(
        s.call("agent_s", "send_message", Some("x")).await,
        "NOT_IN_WAKE",
    );
    assert!(s.backend.frames_of_type("tool_call").is_empty());

    // With the right token, its own tool goes through to the backend.
    let socket = s.socket();
    let call = tokio::spawn(async move {
        let request = Request::ToolCall(ToolCallArgs {
            agent_id: "agent_s".into(),
            tool_name: "send_message".into(),
            tool_args: json!({"target": "user", "body": "hi"}),
            session_id: None,
            token: Some(token),
        });
        ipc::call(&socket, &request, T).await
    });
    let frame = s.conn.recv_type("tool_call", T).await;
    assert_eq!(frame["payload"]["tool_name"], "send_message");
    call.abort();
    let token = std::fs::read_to_string(&file).unwrap();

    s.claude.release(1);
    s.backend
        .wait_for_frame(T, |f| {
            frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
        })
        .await;
    assert!(
        !file.exists(),
        "the token file is removed when the wake ends"
    );
    refused(
        s.call("agent_s", "send_message", Some(&token)).await,
        "NOT_IN_WAKE",
    );
}

/// `claude --mcp-config <the agent's config>` run by hand: the bridge
/// starts, but its calls are refused with a message saying why.
#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_run_by_hand_gets_a_clear_mcp_error() {
    let s = setup().await;
    let config = s
        .home
        .path()
        .join(".cloudagent/agents/agent_c/.meta/claude-mcp-config.json");
    let server: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let server = &server["mcpServers"]["cloudagent"];
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(MCP_CLIENT)
        .arg(server.to_string())
        .env("HOME", s.home.path())
        .stdin(Stdio::null())
        .output()
        .expect("python3 (Debian package python3) runs the MCP client");
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("NOT_IN_WAKE") && text.contains("wake"),
        "{text}"
    );
    assert!(s.backend.frames_of_type("tool_call").is_empty());
}

/// Start the server given as JSON, call close_task, print its result.
const MCP_CLIENT: &str = r#"
import json, subprocess, sys
cfg = json.loads(sys.argv[1])
p = subprocess.Popen([cfg["command"]] + cfg["args"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def send(msg):
    p.stdin.write(json.dumps(msg) + "\n"); p.stdin.flush()
def reply(i):
    while True:
        r = json.loads(p.stdout.readline())
        if r.get("id") == i: return r
send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "by-hand", "version": "0"}}})
reply(1)
send({"jsonrpc": "2.0", "method": "notifications/initialized"})
send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "close_task", "arguments": {"task_id": "t1", "summary": "forged"}}})
r = reply(2)
p.stdin.close(); p.wait()
print(json.dumps(r["result"]))
"#;

/// A tool call made while the backend is unreachable times out for its
/// caller (SERVER_TIMEOUT) and is withdrawn: after the reconnect the
/// backend never receives it, so it never performs an action claude was
/// told failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_tool_call_that_timed_out_offline_is_never_sent_later() {
    let s = setup().await;
    let Setup {
        home,
        backend,
        claude,
        daemon: _daemon,
        mut conn,
    } = s;
    claude.script(1, Behaviour::ok("sid-o", "done").wait_release());
    conn.send(deliver(1, "agent_s", "m1", "hello")).await;
    claude.wait_for_calls(1, T).await;
    let meta = home.path().join(".cloudagent/agents/agent_s/.meta");
    let token = std::fs::read_to_string(meta.join("claude-token.txt")).unwrap();
    // The backend goes quiet: the next connection gets no hello, so the
    // daemon stays in its handshake and its outbox is not flushed.
    backend.set_send_hello(false);
    conn.drop_abruptly();
    let stalled = backend.next_connection(T).await;
    let request = Request::ToolCall(ToolCallArgs {
        agent_id: "agent_s".into(),
        tool_name: "send_message".into(),
        tool_args: json!({"target": "user", "body": "too late"}),
        session_id: None,
        token: Some(token),
    });
    let socket = home.path().join(".cloudagent/daemon/bridge.sock");
    refused(ipc::call(&socket, &request, T).await, "SERVER_TIMEOUT");
    // Back: hello again, and the stalled connection dropped.
    backend.set_send_hello(true);
    stalled.drop_abruptly();
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    claude.release(1);
    backend
        .wait_for_frame(T, |f| {
            frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
        })
        .await;
    let calls: Vec<_> = backend
        .all_frames()
        .into_iter()
        .filter(|(_, f)| frame_type(f) == "tool_call")
        .filter(|(_, f)| f["payload"]["args"]["body"] == "too late")
        .collect();
    // (The daemon's own fallback reply at the wake's end is another call.)
    assert!(
        calls.is_empty(),
        "the withdrawn call reached the backend: {calls:?}"
    );
}
