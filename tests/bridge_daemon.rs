//! The whole tool path without the real claude: a scripted stand-in for
//! claude (python) reads the MCP config the daemon wrote, starts the real
//! bridge from it, and calls tools; the fake backend answers the tool_call
//! frames; the results must come back to "claude". Over each transport.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestHome;
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::{FakeBackend, deliver, frame_type, tool_result_err, tool_result_ok};
use support::scenario::Transport;
use support::tools::require_tool;

const T: Duration = Duration::from_secs(20);

/// Speaks MCP (newline-delimited JSON-RPC) to the server named in
/// --mcp-config, like claude does, then prints a stream-json run.
const MCP_CLAUDE: &str = r#"#!/usr/bin/env python3
import json, os, subprocess, sys
if sys.argv[1:] == ["--version"]:
    print("2.1.197 (Claude Code)"); sys.exit(0)
args = sys.argv[1:]
cfg = json.load(open(args[args.index("--mcp-config") + 1]))["mcpServers"]["cloudagent"]
allowed = args[args.index("--allowedTools") + 1]
sys.stdin.read()
p = subprocess.Popen([cfg["command"]] + cfg["args"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
n = 0
def rpc(method, params=None, notify=False):
    global n
    msg = {"jsonrpc": "2.0", "method": method}
    if params is not None: msg["params"] = params
    if not notify:
        n += 1; msg["id"] = n
    p.stdin.write(json.dumps(msg) + "\n"); p.stdin.flush()
    if notify: return None
    while True:
        line = p.stdout.readline()
        if not line: raise SystemExit("bridge closed stdout")
        r = json.loads(line)
        if r.get("id") == n: return r
out = {"allowed": allowed}
out["initialize"] = rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "claude-code", "version": "2.1.197"}})
rpc("notifications/initialized", notify=True)
out["tools"] = [t["name"] for t in rpc("tools/list")["result"]["tools"]]
out["send"] = rpc("tools/call", {"name": "send_message", "arguments": {"target": "user", "body": "hi from claude", "kind": "reply", "parent_msg_id": 236}})
out["list"] = rpc("tools/call", {"name": "list_messages", "arguments": {"limit": 5}})
out["fail"] = rpc("tools/call", {"name": "schedule_reminder", "arguments": {"when": "tomorrow", "body": "x"}})
p.stdin.close(); p.wait()
json.dump(out, open(os.environ["MCP_CLAUDE_OUT"], "w"))
sid = "mcp-claude-session"
for ev in [{"type": "system", "subtype": "init", "session_id": sid},
           {"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "mcp__cloudagent__send_message", "input": {}}]}, "session_id": sid},
           {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": sid}]:
    print(json.dumps(ev), flush=True)
"#;

over_both_transports!(claude_calls_tools_through_the_bridge_and_the_backend);

async fn claude_calls_tools_through_the_bridge_and_the_backend(t: Transport) {
    // MCP_CLAUDE runs under `#!/usr/bin/env python3`.
    if require_tool("python3", "python3").is_none() {
        return;
    }
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    home.fake_bin("claude", MCP_CLAUDE);
    let mut cfg = DaemonConfig::new(&backend.url(), &["agent_a"]);
    cfg.transport = t.name().to_string();
    home.write_config(&cfg.render(&home));
    let out_file = home.path().join("mcp-claude.json");
    // The daemon's environment reaches claude, and claude's the bridge.
    let _d = Daemon::start_with_env(
        &home,
        FAST_TIMING,
        &[("MCP_CLAUDE_OUT", out_file.to_str().unwrap())],
    );
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(deliver(1, "agent_a", "236", "please reply"))
        .await;

    let send = conn.recv_type("tool_call", T).await;
    let p = &send["payload"];
    assert_eq!(p["agent_id"], "agent_a");
    assert_eq!(
        p["session_id"], "sess_1",
        "the running wake's business session"
    );
    assert_eq!(p["tool_name"], "send_message");
    assert_eq!(
        p["args"],
        json!({"target": "user", "body": "hi from claude", "kind": "reply", "parent_msg_id": 236})
    );
    conn.send(tool_result_ok(
        p["request_id"].as_str().unwrap(),
        json!({"message_id": 501}),
    ))
    .await;

    let list = conn.recv_type("tool_call", T).await;
    assert_eq!(list["payload"]["tool_name"], "list_messages");
    assert_eq!(list["payload"]["args"], json!({"limit": 5}));
    let messages = json!({"messages": [{"id": 1, "body": "older"}]});
    conn.send(tool_result_ok(
        list["payload"]["request_id"].as_str().unwrap(),
        messages.clone(),
    ))
    .await;

    let fail = conn.recv_type("tool_call", T).await;
    conn.send(tool_result_err(
        fail["payload"]["request_id"].as_str().unwrap(),
        "BAD_WHEN",
        "cannot parse 'tomorrow'",
    ))
    .await;

    let st = conn
        .recv_matching(T, "final status", |f| {
            frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
        })
        .await;
    assert_eq!(st["payload"]["status"], "idle");

    let out: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(
        out["initialize"]["result"]["serverInfo"]["name"],
        "cloudagent-bridge-agent_a"
    );
    assert_eq!(
        out["tools"],
        json!([
            "list_messages",
            "schedule_reminder",
            "send_message",
            "upload_file"
        ])
    );
    let send = &out["send"]["result"];
    assert_eq!(send["isError"], false);
    assert_eq!(send["structuredContent"], json!({"message_id": 501}));
    assert_eq!(out["list"]["result"]["structuredContent"], messages);
    let fail = &out["fail"]["result"];
    assert_eq!(fail["isError"], true);
    assert_eq!(
        fail["content"][0]["text"],
        "Error executing tool schedule_reminder: IPC error BAD_WHEN: cannot parse 'tomorrow'"
    );
    // No fallback: claude itself called send_message.
    assert_eq!(backend.frames_of_type("tool_call").len(), 3);
}
