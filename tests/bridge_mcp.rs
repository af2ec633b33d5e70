//! `mcp-bridge` end to end: the real binary spoken to over stdio as claude
//! does (PROTOCOL §5), against a fake daemon on a temporary bridge socket.

#[path = "support/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudagent_daemon::bridge::ipc;
use cloudagent_daemon::protocol::ipc::{IpcError, Request};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
/// Upper bound for any single exchange; only reached when something hangs.
const STEP: Duration = Duration::from_secs(30);

const STAFF: [&str; 4] = [
    "list_messages",
    "schedule_reminder",
    "send_message",
    "upload_file",
];
const CHIEF: [&str; 8] = [
    "close_task",
    "delegate_to_staff",
    "list_messages",
    "request_user_approval",
    "schedule_reminder",
    "send_message",
    "set_company_status",
    "upload_file",
];

// ---------------------------------------------------------------- home

struct TestHome {
    dir: tempfile::TempDir,
}

impl TestHome {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn agents_root(&self, profile: &str) -> PathBuf {
        let root = self.path().join(".cloudagent");
        if profile == "default" {
            root.join("agents")
        } else {
            root.join(format!("agents-{profile}"))
        }
    }
    fn profile_socket(&self, profile: &str) -> PathBuf {
        let root = self.path().join(".cloudagent").join("daemon");
        if profile == "default" {
            root.join("bridge.sock")
        } else {
            root.join("profiles").join(profile).join("bridge.sock")
        }
    }
    fn write_identity(&self, profile: &str, agent: &str, is_chief: Value) {
        let meta = self.agents_root(profile).join(agent).join(".meta");
        std::fs::create_dir_all(&meta).unwrap();
        let identity = json!({
            "agent_id": agent, "agent_name": agent, "is_chief": is_chief,
            "role": "staff", "workspace_slug": "default", "reports_to": "(unset)"
        });
        std::fs::write(meta.join("identity.json"), identity.to_string()).unwrap();
    }
}

// ---------------------------------------------------------------- fake daemon

type Reply = dyn Fn(&Value) -> Result<Value, IpcError> + Send + Sync;

struct Fake {
    seen: Mutex<Vec<(String, Value)>>,
    reply: Box<Reply>,
    delay: Duration,
}

impl ipc::Handler for Fake {
    async fn handle(&self, request: Request) -> Result<Value, IpcError> {
        let (op, args) = (request.op().to_string(), request.args());
        self.seen.lock().unwrap().push((op.clone(), args.clone()));
        if !self.delay.is_zero() {
            // Stands for the daemon waiting on the backend.
            tokio::time::sleep(self.delay).await;
        }
        match request {
            Request::ToolCall(_) => (self.reply)(&args),
            _ => Err(IpcError::new("UNKNOWN_OP", op)),
        }
    }
}

struct FakeDaemon {
    fake: Arc<Fake>,
    cancel: CancellationToken,
}

impl FakeDaemon {
    fn start(
        socket: &Path,
        delay: Duration,
        reply: impl Fn(&Value) -> Result<Value, IpcError> + Send + Sync + 'static,
    ) -> Self {
        let (server, listener) = ipc::Server::bind(socket).expect("bind fake daemon");
        let fake = Arc::new(Fake {
            seen: Mutex::new(Vec::new()),
            reply: Box::new(reply),
            delay,
        });
        let cancel = CancellationToken::new();
        tokio::spawn(server.serve(listener, fake.clone(), cancel.clone()));
        Self { fake, cancel }
    }

    /// Answers every tool_call with `{"ok": true, "tool": …, "args": …}`.
    fn echo(socket: &Path) -> Self {
        Self::start(socket, Duration::ZERO, |args| {
            Ok(json!({"ok": true, "tool": args["tool_name"], "args": args["tool_args"]}))
        })
    }

    fn seen(&self) -> Vec<(String, Value)> {
        self.fake.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

// ---------------------------------------------------------------- MCP client

struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Mcp {
    /// Spawn `mcp-bridge` with a clean cloudagent environment plus `env`.
    fn spawn(home: &TestHome, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("mcp-bridge")
            .args(args)
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CLOUDAGENT_DAEMON_PROFILE")
            .env_remove("CLOUDAGENT_DAEMON_SOCKET_PATH")
            .env_remove("CLOUDAGENT_DAEMON_TEST_TIMING")
            .env("CLOUDAGENT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mcp-bridge");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 0,
        }
    }

    async fn send(&mut self, msg: Value) {
        let mut line = serde_json::to_vec(&msg).unwrap();
        line.push(b'\n');
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(&line).await.expect("write to bridge");
        stdin.flush().await.unwrap();
    }

    /// The response to request `id`, skipping notifications.
    async fn response(&mut self, id: u64) -> Value {
        loop {
            let line = tokio::time::timeout(STEP, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no answer to request {id} within {STEP:?}"))
                .expect("read from bridge")
                .unwrap_or_else(|| panic!("bridge closed stdout before answering {id}"));
            let msg: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("bridge wrote a non-JSON line ({e}): {line}"));
            assert_eq!(msg["jsonrpc"], "2.0", "{msg}");
            if msg.get("id") == Some(&json!(id)) {
                return msg;
            }
            assert!(msg.get("method").is_some(), "unexpected message {msg}");
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"method": method, "jsonrpc": "2.0", "id": id});
        if !params.is_null() {
            msg["params"] = params;
        }
        self.send(msg).await;
        self.response(id).await
    }

    /// initialize as Claude Code 2.1.197 does (fixture mcp-stdio-rpc.jsonl),
    /// then notifications/initialized. Returns the initialize result.
    async fn initialize(&mut self) -> Value {
        let resp = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"roots": {}, "elicitation": {}},
                    "clientInfo": {
                        "name": "claude-code", "title": "Claude Code", "version": "2.1.197",
                        "description": "Anthropic's agentic coding tool",
                        "websiteUrl": "https://claude.com/claude-code"
                    }
                }),
            )
            .await;
        self.send(json!({"method": "notifications/initialized", "jsonrpc": "2.0"}))
            .await;
        resp["result"].clone()
    }

    async fn tools(&mut self) -> Vec<Value> {
        let resp = self.request("tools/list", Value::Null).await;
        resp["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("tools/list: {resp}"))
            .clone()
    }

    async fn tool_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tools()
            .await
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    }

    /// The whole JSON-RPC response to a tools/call.
    async fn call(&mut self, name: &str, args: Value) -> Value {
        self.request(
            "tools/call",
            json!({"name": name, "arguments": args,
                   "_meta": {"claudecode/toolUseId": "toolu_test", "progressToken": 2}}),
        )
        .await
    }

    /// Close stdin as claude does at the end of a wake; the bridge exits 0.
    async fn close(mut self) {
        self.stdin.take();
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("bridge exits after stdin closes")
            .unwrap();
        assert!(status.success(), "bridge exit status {status}");
    }
}

fn text_of(resp: &Value) -> &str {
    resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {resp}"))
}

fn assert_error_text(resp: &Value, expected: &str) {
    assert_eq!(resp["result"]["isError"], true, "{resp}");
    assert_eq!(text_of(resp), expected, "{resp}");
    assert!(resp["result"].get("structuredContent").is_none(), "{resp}");
}

fn sock_env(socket: &Path) -> (&'static str, &str) {
    (
        "CLOUDAGENT_DAEMON_SOCKET_PATH",
        socket.to_str().expect("utf-8 temp path"),
    )
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn staff_bridge_lists_four_tools_and_forwards_calls() {
    let home = TestHome::new();
    home.write_identity("default", "agent_s", json!(false));
    let socket = home.path().join("fake.sock");
    let daemon = FakeDaemon::start(&socket, Duration::ZERO, |args| {
        match args["tool_name"].as_str() {
            Some("upload_file") => Err(IpcError::new("UPLOAD_REJECTED", "too big")),
            Some("schedule_reminder") => Err(IpcError::new("SERVER_TIMEOUT", "")),
            _ => Ok(json!({"message_id": "m_1", "echo": args["tool_args"]})),
        }
    });
    let mut mcp = Mcp::spawn(&home, &["--agent-id", "agent_s"], &[sock_env(&socket)]);

    let init = mcp.initialize().await;
    assert_eq!(init["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["serverInfo"]["name"], "cloudagent-bridge-agent_s");
    assert_eq!(init["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(init["capabilities"]["tools"].is_object(), "{init}");

    let tools = mcp.tools().await;
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, STAFF);
    let tool = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap().clone();
    let send = tool("send_message");
    assert!(
        send["description"]
            .as_str()
            .unwrap()
            .starts_with("Send a message to another agent or the user. When replying (kind=\"reply\" or \"question\"), MUST set parent_msg_id")
    );
    let schema = &send["inputSchema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["target", "body"]));
    assert_eq!(schema["properties"]["target"]["type"], "string");
    assert_eq!(schema["properties"]["kind"]["default"], "task");
    assert_eq!(
        schema["properties"]["parent_msg_id"]["type"],
        json!(["integer", "null"])
    );
    assert_eq!(
        schema["properties"]["parent_msg_id"]["default"],
        Value::Null
    );
    assert!(send.get("outputSchema").is_none());
    let list = tool("list_messages");
    assert_eq!(
        list["description"],
        "List recent messages in the agent's inbox."
    );
    assert_eq!(
        list["inputSchema"]["properties"]["limit"]["type"],
        "integer"
    );
    assert_eq!(list["inputSchema"]["properties"]["limit"]["default"], 50);
    assert!(
        list["inputSchema"]
            .get("required")
            .is_none_or(|r| r == &json!([]))
    );
    assert_eq!(
        tool("upload_file")["inputSchema"]["required"],
        json!(["path"])
    );
    assert_eq!(
        tool("schedule_reminder")["inputSchema"]["required"],
        json!(["when", "body"])
    );
    assert!(
        daemon.seen().is_empty(),
        "no IPC before the first tool call"
    );

    // send_message: kind defaults to task, a missing/null parent is omitted.
    let resp = mcp
        .call("send_message", json!({"target": "user", "body": "Hello!"}))
        .await;
    let data =
        json!({"message_id": "m_1", "echo": {"target": "user", "body": "Hello!", "kind": "task"}});
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    assert_eq!(resp["result"]["structuredContent"], data);
    assert_eq!(text_of(&resp), serde_json::to_string_pretty(&data).unwrap());
    assert!(text_of(&resp).contains("\n  \"message_id\": \"m_1\""));
    let seen = daemon.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "tool_call");
    assert_eq!(
        serde_json::to_string(&seen[0].1).unwrap(),
        r#"{"agent_id":"agent_s","tool_name":"send_message","tool_args":{"target":"user","body":"Hello!","kind":"task"}}"#
    );

    let resp = mcp
        .call(
            "send_message",
            json!({"target": "agent_c", "body": "done", "kind": "reply", "parent_msg_id": 236}),
        )
        .await;
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    assert_eq!(
        serde_json::to_string(&daemon.seen()[1].1["tool_args"]).unwrap(),
        r#"{"target":"agent_c","body":"done","kind":"reply","parent_msg_id":236}"#
    );
    mcp.call(
        "send_message",
        json!({"target": "u", "body": "b", "parent_msg_id": null}),
    )
    .await;
    assert_eq!(
        daemon.seen()[2].1["tool_args"],
        json!({"target": "u", "body": "b", "kind": "task"})
    );

    // list_messages always sends limit.
    let resp = mcp.call("list_messages", json!({})).await;
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    assert_eq!(daemon.seen()[3].1["tool_name"], "list_messages");
    assert_eq!(daemon.seen()[3].1["tool_args"], json!({"limit": 50}));
    mcp.call("list_messages", json!({"limit": 5})).await;
    assert_eq!(daemon.seen()[4].1["tool_args"], json!({"limit": 5}));

    // The daemon's errors, with and without a message.
    let resp = mcp.call("upload_file", json!({"path": "/tmp/x"})).await;
    assert_error_text(
        &resp,
        "Error executing tool upload_file: IPC error UPLOAD_REJECTED: too big",
    );
    assert_eq!(daemon.seen()[5].1["tool_args"], json!({"path": "/tmp/x"}));
    let resp = mcp
        .call("schedule_reminder", json!({"when": "in 1h", "body": "x"}))
        .await;
    assert_error_text(
        &resp,
        "Error executing tool schedule_reminder: IPC error SERVER_TIMEOUT",
    );

    // Bad arguments: an error result, nothing forwarded.
    let resp = mcp.call("send_message", json!({"target": "user"})).await;
    assert_eq!(resp["result"]["isError"], true, "{resp}");
    assert!(text_of(&resp).contains("body"), "{resp}");

    // A chief tool as staff: refused, nothing forwarded.
    let resp = mcp
        .call("close_task", json!({"task_id": "t", "summary": "s"}))
        .await;
    assert!(resp.get("result").is_none(), "{resp}");
    assert_eq!(resp["error"]["code"], -32602, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only available to chief agents"),
        "{resp}"
    );
    assert_eq!(daemon.seen().len(), 7);

    mcp.close().await;
}

#[tokio::test]
async fn chief_tools_come_from_the_bridges_own_profile() {
    let home = TestHome::new();
    // The default profile's agent of the same id is staff: a bridge that
    // read the default profile's identity (the original's bug) would fail.
    home.write_identity("default", "agent_c", json!(false));
    home.write_identity("fr", "agent_c", json!(true));

    // --profile, and the socket of that profile (no override).
    let daemon = FakeDaemon::echo(&home.profile_socket("fr"));
    let mut mcp = Mcp::spawn(&home, &["--agent-id", "agent_c", "--profile", "fr"], &[]);
    mcp.initialize().await;
    let tools = mcp.tools().await;
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, CHIEF);
    let tool = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap().clone();
    assert_eq!(
        tool("close_task")["description"],
        "[chief] Mark a task closed with a summary."
    );
    assert_eq!(
        tool("delegate_to_staff")["inputSchema"]["required"],
        json!(["staff_id", "body"])
    );
    assert_eq!(
        tool("close_task")["inputSchema"]["required"],
        json!(["task_id", "summary"])
    );
    assert_eq!(
        tool("request_user_approval")["inputSchema"]["required"],
        json!(["question"])
    );
    assert_eq!(
        tool("set_company_status")["inputSchema"]["required"],
        json!(["status"])
    );
    let resp = mcp
        .call(
            "close_task",
            json!({"task_id": "t_9", "summary": "shipped"}),
        )
        .await;
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    assert_eq!(
        resp["result"]["structuredContent"],
        json!({"ok": true, "tool": "close_task", "args": {"task_id": "t_9", "summary": "shipped"}})
    );
    assert_eq!(
        daemon.seen()[0].1,
        json!({"agent_id": "agent_c", "tool_name": "close_task",
               "tool_args": {"task_id": "t_9", "summary": "shipped"}})
    );
    mcp.close().await;

    // The profile from the environment, as claude inherits it.
    let mut mcp = Mcp::spawn(
        &home,
        &["--agent-id", "agent_c"],
        &[("CLOUDAGENT_DAEMON_PROFILE", "fr")],
    );
    mcp.initialize().await;
    assert_eq!(mcp.tool_names().await, CHIEF);
    mcp.close().await;

    // --profile wins over the environment.
    let mut mcp = Mcp::spawn(
        &home,
        &["--agent-id", "agent_c", "--profile", "default"],
        &[("CLOUDAGENT_DAEMON_PROFILE", "fr")],
    );
    mcp.initialize().await;
    assert_eq!(mcp.tool_names().await, STAFF);
    mcp.close().await;

    // Only exactly `true` makes a chief; 0.2.4's --token-file is accepted.
    home.write_identity("fr", "agent_q", json!("true"));
    let mut mcp = Mcp::spawn(
        &home,
        &[
            "--agent-id",
            "agent_q",
            "--profile",
            "fr",
            "--token-file",
            "/nonexistent/claude-token.txt",
        ],
        &[],
    );
    mcp.initialize().await;
    assert_eq!(mcp.tool_names().await, STAFF);
    mcp.close().await;
}

#[tokio::test]
async fn a_one_mebibyte_result_comes_back_intact() {
    let home = TestHome::new();
    let socket = home.path().join("fake.sock");
    let big: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let data = json!({"messages": [{"message_id": "m_1", "body": big}]});
    let answer = data.clone();
    let _daemon = FakeDaemon::start(&socket, Duration::ZERO, move |_| Ok(answer.clone()));
    let mut mcp = Mcp::spawn(&home, &["--agent-id", "agent_s"], &[sock_env(&socket)]);
    mcp.initialize().await;
    let resp = mcp.call("list_messages", json!({"limit": 1000})).await;
    assert_eq!(resp["result"]["isError"], false);
    assert_eq!(resp["result"]["structuredContent"], data);
    let text: Value = serde_json::from_str(text_of(&resp)).unwrap();
    assert_eq!(text, data);
    mcp.close().await;
}

#[tokio::test]
async fn daemon_not_running_is_a_clear_error_result_not_a_crash() {
    let home = TestHome::new();
    let socket = home.profile_socket("fr");
    let mut mcp = Mcp::spawn(&home, &["--agent-id", "agent_s", "--profile", "fr"], &[]);
    mcp.initialize().await;
    let resp = mcp
        .call("send_message", json!({"target": "user", "body": "hi"}))
        .await;
    assert_error_text(
        &resp,
        &format!(
            "Error executing tool send_message: the cloudagent daemon is not running (no socket at {}); start it with `cloudagent-daemon start --profile fr`",
            socket.display()
        ),
    );
    // Still serving; once the daemon is up the next call goes through.
    let _daemon = FakeDaemon::echo(&socket);
    let resp = mcp
        .call("send_message", json!({"target": "user", "body": "hi"}))
        .await;
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    mcp.close().await;
}

#[tokio::test]
async fn the_daemons_server_timeout_reaches_the_client() {
    // The daemon gives up on the backend after tool_timeout (300 ms here)
    // and answers SERVER_TIMEOUT; the bridge waits tool_timeout + 15 s, so
    // the client sees the daemon's answer rather than an IPC timeout.
    let home = TestHome::new();
    let socket = home.path().join("fake.sock");
    let _daemon = FakeDaemon::start(&socket, Duration::from_millis(400), |_| {
        Err(IpcError::new("SERVER_TIMEOUT", ""))
    });
    let mut mcp = Mcp::spawn(
        &home,
        &["--agent-id", "agent_s"],
        &[
            sock_env(&socket),
            ("CLOUDAGENT_DAEMON_TEST_TIMING", "tool_timeout_ms=300"),
        ],
    );
    mcp.initialize().await;
    let started = Instant::now();
    let resp = mcp
        .call("send_message", json!({"target": "user", "body": "hi"}))
        .await;
    assert_error_text(
        &resp,
        "Error executing tool send_message: IPC error SERVER_TIMEOUT",
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    mcp.close().await;
}

#[tokio::test]
async fn initialize_is_answered_without_a_daemon() {
    // No daemon, no socket: initialize must not wait for anything.
    let home = TestHome::new();
    let started = Instant::now();
    let mut mcp = Mcp::spawn(&home, &["--agent-id", "agent_s"], &[]);
    let init = mcp.initialize().await;
    let elapsed = started.elapsed();
    assert_eq!(init["serverInfo"]["name"], "cloudagent-bridge-agent_s");
    println!("spawn → initialize answered: {elapsed:.2?} (debug build)");
    mcp.close().await;
}

#[tokio::test]
async fn invalid_agent_id_is_refused() {
    let home = TestHome::new();
    let out = Command::new(BIN)
        .args(["mcp-bridge", "--agent-id", "../etc"])
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "stdout is the MCP channel");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agent-id"));
}

/// Connects, sends one request and prints the answer line, or CLOSED when
/// the server closed the connection without answering.
const PY_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT FAILED: %r" % e)
    sys.exit(1)
data = b""
try:
    s.sendall(b'{"request_id":"ipc_000000000001","op":"tool_call","args":{"agent_id":"a","tool_name":"send_message"}}\n')
    s.settimeout(20)
    while b"\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except (ConnectionResetError, BrokenPipeError):
    pass
print(data.decode() if data else "CLOSED")
"#;

#[tokio::test]
async fn ipc_server_closes_connections_from_other_uids() {
    if rustix::process::getuid().as_raw() != 0 {
        tools::skip(
            &tools::current_test(),
            "needs root (to run a client as another uid)",
        );
        return;
    }
    // The system interpreter: uid 65534 cannot reach one under /root.
    let Some(python) = tools::require_tool("/usr/bin/python3", "python3") else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::new();
    let socket = home.path().join("bridge.sock");
    let daemon = FakeDaemon::start(&socket, Duration::ZERO, |_| Ok(json!({"answered": true})));
    // Let another user reach the socket: only the uid check stands in the way.
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();

    let run = |uid: Option<u32>| {
        let mut cmd = Command::new(&python);
        cmd.args(["-c", PY_CLIENT]).arg(&socket).kill_on_drop(true);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        async move {
            let out = tokio::time::timeout(STEP, cmd.output())
                .await
                .expect("python client finishes")
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    // Same uid: answered.
    let own = run(None).await;
    assert!(own.contains(r#""answered":true"#), "{own}");
    // uid 65534 (nobody): connection closed without an answer.
    let other = run(Some(65534)).await;
    assert_eq!(other, "CLOSED");
    assert_eq!(
        daemon.seen().len(),
        1,
        "the other uid's request never reached the handler"
    );
}
