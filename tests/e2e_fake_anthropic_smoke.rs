//! Smoke test of the REAL Claude Code CLI (2.1.197) running offline against
//! `support/fake_anthropic.rs`: proves the fake is good enough for the
//! daemon's end-to-end tests.
//!
//! The pinned claude is installed into `.tools/` on first use (see
//! `support/real_claude.rs`; `CLOUDAGENT_TEST_CLAUDE` names another binary).
//! Case (b) also needs `python3` (the tiny MCP server the test writes),
//! overridable with `CLOUDAGENT_TEST_PYTHON`; without it the case is skipped
//! (README.md, "Tests").

mod support;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_anthropic::{self, FakeAnthropic, RecordedRequest, Reply, Script, ToolResult};
use support::real_claude::{find as real_claude, pinned_version};
use support::tools::require_tool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// A run takes ~1 s; the limit only guards against hangs.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
const SEND_MESSAGE: &str = "mcp__cloudagent__send_message";

// ─────────────────────────────────────────────────────────── environment ──

async fn assert_version(claude: &Path) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(claude)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("`claude --version` timed out")
    .expect("`claude --version` failed to start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with(pinned_version()),
        "{} --version: {} stdout={stdout:?} stderr={:?}; expected {} (run `bash .ci/install-claude.sh`)",
        claude.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        pinned_version(),
    );
}

/// Absolute path of a real python3 interpreter (not a pyenv shim, which
/// would look for its state under the temp HOME); `None` after a SKIPPED
/// line when there is none.
async fn python3() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLOUDAGENT_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let out = Command::new(require_tool("python3", "python3")?)
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "python3 -c ... failed: {out:?}");
    let p = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        p.is_absolute() && p.is_file(),
        "python3 sys.executable is {p:?}"
    );
    Some(p)
}

/// Temp HOME and project cwd for claude; removed on drop.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("cloudagent-e2e-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(root.path().join("home")).unwrap();
        std::fs::create_dir(root.path().join("project")).unwrap();
        Sandbox { root }
    }
    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }
    fn cwd(&self) -> PathBuf {
        self.root.path().join("project")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `$HOME/.claude/projects/*/<session_id>.jsonl`, if claude wrote it.
    fn session_file(&self, session_id: &str) -> Option<PathBuf> {
        let projects = self.home().join(".claude/projects");
        std::fs::read_dir(projects)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join(format!("{session_id}.jsonl")))
            .find(|p| p.is_file())
    }
}

// ──────────────────────────────────────────────────────────── MCP server ──

/// Minimal stdio MCP server: newline-delimited JSON-RPC, one `send_message`
/// tool; logs every message it receives to argv[1]. Exits on stdin EOF.
const MCP_SERVER_PY: &str = r#"
import json, sys
log = open(sys.argv[1], "a", buffering=1)
TOOLS = [{
    "name": "send_message",
    "description": "Send a message to the user's chat channel.",
    "inputSchema": {"type": "object",
                    "properties": {"text": {"type": "string", "description": "Message text"}},
                    "required": ["text"]},
}]
def reply(id, result=None, error=None):
    msg = {"jsonrpc": "2.0", "id": id}
    if error is not None:
        msg["error"] = error
    else:
        msg["result"] = result
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    log.write(json.dumps(msg) + "\n")
    if "id" not in msg or "method" not in msg:
        continue  # notification or response
    method, params = msg["method"], msg.get("params") or {}
    if method == "initialize":
        reply(msg["id"], {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                          "capabilities": {"tools": {"listChanged": False}},
                          "serverInfo": {"name": "cloudagent", "version": "0.0.0-test"}})
    elif method == "tools/list":
        reply(msg["id"], {"tools": TOOLS})
    elif method == "tools/call":
        args = params.get("arguments") or {}
        if params.get("name") == "send_message":
            reply(msg["id"], {"content": [{"type": "text", "text": "sent: " + str(args.get("text"))}],
                              "isError": False})
        else:
            reply(msg["id"], {"content": [{"type": "text", "text": "unknown tool"}], "isError": True})
    elif method == "ping":
        reply(msg["id"], {})
    else:
        reply(msg["id"], error={"code": -32601, "message": "method not found: " + method})
"#;

/// Writes the MCP server script and a `--mcp-config` file (server key
/// `cloudagent`); returns (config path, server log path).
fn write_mcp_config(sandbox: &Sandbox, python: &Path) -> (PathBuf, PathBuf) {
    let script = sandbox.file("mcp_server.py");
    let log = sandbox.file("mcp_server.log");
    let config = sandbox.file("mcp.json");
    std::fs::write(&script, MCP_SERVER_PY).unwrap();
    let cfg = json!({
        "mcpServers": {
            "cloudagent": {
                "type": "stdio",
                "command": python,
                "args": ["-u", script, log],
            }
        }
    });
    std::fs::write(&config, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    (config, log)
}

fn mcp_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// ──────────────────────────────────────────────────────────── running it ──

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
    elapsed: Duration,
}

impl Run {
    fn describe(&self, fake: &FakeAnthropic) -> String {
        format!(
            "claude exited {} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- {}",
            self.status,
            self.elapsed,
            self.stdout,
            self.stderr,
            fake.summary()
        )
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["type"] == ty)
    }

    fn result(&self) -> Option<&Value> {
        self.of_type("result").last()
    }

    fn init_session_id(&self) -> Option<String> {
        self.events
            .iter()
            .find(|e| e["type"] == "system" && e["subtype"] == "init")
            .and_then(|e| e["session_id"].as_str())
            .map(String::from)
    }
}

/// Runs `claude --print --verbose --output-format stream-json <args>` in the
/// sandbox against `fake`, prompt on stdin (then closed). The child is killed
/// if the run times out or the test panics (kill_on_drop).
async fn run_claude(
    claude: &Path,
    sandbox: &Sandbox,
    fake: &FakeAnthropic,
    prompt: &str,
    args: &[&str],
) -> Run {
    let mut cmd = Command::new(claude);
    cmd.args(["--print", "--verbose", "--output-format", "stream-json"])
        .args(args)
        .current_dir(sandbox.cwd())
        // A clean environment: nothing of the developer's (or a parent
        // claude's) ANTHROPIC_*/CLAUDE_* settings leaks in.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sandbox.home())
        .envs(support::real_claude::offline_env(&fake.base_url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", claude.display()));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(prompt.as_bytes())
        .await
        .expect("write prompt to claude's stdin");
    drop(stdin); // EOF: claude starts on the prompt

    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });

    let waited = tokio::time::timeout(RUN_TIMEOUT, child.wait()).await;
    let timed_out = waited.is_err();
    let status = match waited {
        Ok(status) => status.expect("wait for claude"),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.expect("wait for killed claude")
        }
    };
    let elapsed = started.elapsed();
    // The pipes close when claude (and anything holding them) is gone.
    let grab = |t: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(Duration::from_secs(10), t).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => "<pipe not closed 10 s after claude exited>".to_string(),
        }
    };
    let stdout = grab(out_task).await;
    let stderr = grab(err_task).await;
    let events = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let run = Run {
        status,
        stdout,
        stderr,
        events,
        elapsed,
    };
    assert!(
        !timed_out,
        "claude did not finish within {RUN_TIMEOUT:?} (killed)\n{}",
        run.describe(fake)
    );
    run
}

fn assert_success(run: &Run, fake: &FakeAnthropic, expected_text: &str) -> Value {
    let result = run
        .result()
        .unwrap_or_else(|| panic!("no `result` event\n{}", run.describe(fake)))
        .clone();
    assert!(
        run.status.success()
            && result["subtype"] == "success"
            && result["is_error"] == false
            && result["result"] == expected_text,
        "expected a successful result {expected_text:?}\n{}",
        run.describe(fake)
    );
    result
}

// ─────────────────────────────────────────────────────────────── tests ──

/// (a) Text-only answer: `result` carries the text, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_text_only_answer() {
    let Some(claude) = real_claude() else { return };
    assert_version(&claude).await;
    let sandbox = Sandbox::new();
    let answer = "Hello from the fake model.";
    let fake = FakeAnthropic::start(Script::text(answer)).await;

    let prompt = "Say hello.";
    let run = run_claude(&claude, &sandbox, &fake, prompt, &[]).await;
    println!("(a) text-only run took {:?}", run.elapsed);
    println!("{}", fake.summary());

    let result = assert_success(&run, &fake, answer);
    let main = fake.main_requests();
    assert_eq!(
        main.len(),
        1,
        "one model call expected\n{}",
        run.describe(&fake)
    );
    assert_eq!(
        main[0].last_prompt().as_deref(),
        Some(prompt),
        "{}",
        run.describe(&fake)
    );
    assert_eq!(main[0].query(), Some("beta=true"));
    assert_eq!(main[0].header("x-api-key"), Some("test-key"));
    assert_eq!(result["num_turns"], 1);

    let session_id = result["session_id"].as_str().unwrap();
    assert_eq!(run.init_session_id().as_deref(), Some(session_id));
    assert_eq!(main[0].session_id().as_deref(), Some(session_id));
    assert!(
        sandbox.session_file(session_id).is_some(),
        "no session file for {session_id} under {}",
        sandbox.home().join(".claude/projects").display()
    );
    for r in fake.unknown_requests() {
        println!(
            "note: claude called an endpoint the fake does not know: {}",
            r.summary()
        );
    }
}

/// (b) A tool_use of an MCP tool served by a stdio MCP server, round trip
/// through claude; then (c) `--resume` of that session sends the earlier
/// conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_mcp_tool_round_trip_then_resume() {
    let Some(claude) = real_claude() else { return };
    let Some(python) = python3().await else {
        return;
    };
    assert_version(&claude).await;
    let sandbox = Sandbox::new();
    let (mcp_config, mcp_log_path) = write_mcp_config(&sandbox, &python);
    let mcp_config = mcp_config.to_str().unwrap().to_string();
    let mcp_args = [
        "--mcp-config",
        mcp_config.as_str(),
        "--allowedTools",
        SEND_MESSAGE,
    ];

    // ---- (b) tool round trip
    let tool_input = json!({ "text": "hello from the fake model" });
    let final_text = "Done: message sent.";
    let script = {
        let tool_input = tool_input.clone();
        Script::from_fn(move |req: &RecordedRequest| match req.turn_index() {
            // Make a missing MCP tool obvious instead of a confusing tool error.
            0 if !req.offers_tool(SEND_MESSAGE) => Reply::text(format!(
                "FAKE: {SEND_MESSAGE} was not offered; tools: {:?}",
                req.tool_names()
            )),
            0 => Reply::tool_use(SEND_MESSAGE, tool_input.clone()),
            1 => Reply::text(final_text),
            n => Reply::error(500, "api_error", format!("FAKE: unexpected turn {n}")),
        })
    };
    let fake = FakeAnthropic::start(script).await;
    let prompt_b = "Please send a greeting to the chat.";
    let run_b = run_claude(&claude, &sandbox, &fake, prompt_b, &mcp_args).await;
    println!("(b) MCP tool round trip took {:?}", run_b.elapsed);
    println!("{}", fake.summary());

    let result_b = assert_success(&run_b, &fake, final_text);
    let ctx = run_b.describe(&fake);
    assert_eq!(result_b["num_turns"], 2, "{ctx}");
    assert_eq!(result_b["permission_denials"], json!([]), "{ctx}");

    let main = fake.main_requests();
    assert_eq!(main.len(), 2, "tool_use turn + final turn expected\n{ctx}");
    assert!(
        main[0].offers_tool(SEND_MESSAGE),
        "tool not offered: {:?}\n{ctx}",
        main[0].tool_names()
    );
    assert_eq!(main[0].last_prompt().as_deref(), Some(prompt_b), "{ctx}");
    let issued = fake.issued_tool_use_ids();
    assert_eq!(issued.len(), 1, "{ctx}");
    assert_eq!(
        main[1].new_tool_results(),
        vec![ToolResult {
            tool_use_id: issued[0].clone(),
            text: "sent: hello from the fake model".into(),
            is_error: false,
        }],
        "{ctx}"
    );
    assert_eq!(fake.tool_results().len(), 1, "{ctx}");
    assert!(main[1].contains_conversation_of(&main[0]), "{ctx}");

    // The MCP server really was called with the scripted input.
    let calls: Vec<Value> = mcp_log(&mcp_log_path)
        .into_iter()
        .filter(|m| m["method"] == "tools/call")
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "MCP server log: {:?}",
        mcp_log(&mcp_log_path)
    );
    assert_eq!(calls[0]["params"]["name"], "send_message");
    assert_eq!(calls[0]["params"]["arguments"], tool_input);

    // stream-json shows the tool round trip.
    assert!(
        run_b
            .of_type("assistant")
            .any(|e| e["message"]["content"][0]["type"] == "tool_use"
                && e["message"]["content"][0]["name"] == SEND_MESSAGE),
        "{ctx}"
    );
    assert!(
        run_b
            .of_type("user")
            .any(|e| e["message"]["content"][0]["type"] == "tool_result"),
        "{ctx}"
    );
    let session_id = result_b["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        run_b.init_session_id().as_deref(),
        Some(session_id.as_str()),
        "{ctx}"
    );
    assert_eq!(
        fake.main_requests_for_session(&session_id).len(),
        2,
        "{ctx}"
    );
    let session_file = sandbox
        .session_file(&session_id)
        .unwrap_or_else(|| panic!("no session file for {session_id}"));
    println!("session file: {}", session_file.display());
    let last_b = main.last().unwrap().clone();
    drop(fake);

    // ---- (c) --resume in the same HOME and cwd, against a fresh fake
    let resumed_text = "Resumed: I remember the greeting.";
    let fake_c = FakeAnthropic::start(Script::text(resumed_text)).await;
    let prompt_c = "What did you send earlier?";
    let mut args_c = vec!["--resume", session_id.as_str()];
    args_c.extend_from_slice(&mcp_args);
    let run_c = run_claude(&claude, &sandbox, &fake_c, prompt_c, &args_c).await;
    println!("(c) --resume took {:?}", run_c.elapsed);
    println!("{}", fake_c.summary());

    let result_c = assert_success(&run_c, &fake_c, resumed_text);
    let ctx = run_c.describe(&fake_c);
    assert_eq!(
        result_c["session_id"],
        session_id.as_str(),
        "resume keeps the session id\n{ctx}"
    );
    let main_c = fake_c.main_requests();
    assert_eq!(main_c.len(), 1, "{ctx}");
    let req = &main_c[0];
    assert_eq!(
        req.session_id().as_deref(),
        Some(session_id.as_str()),
        "{ctx}"
    );
    assert_eq!(req.last_prompt().as_deref(), Some(prompt_c), "{ctx}");
    assert_eq!(req.turn_index(), 0, "{ctx}");
    assert!(
        req.user_texts().iter().any(|t| t.trim_end() == prompt_b),
        "earlier prompt missing\n{ctx}"
    );
    assert!(
        req.tool_use_ids().contains(&issued[0]),
        "earlier tool_use missing\n{ctx}"
    );
    assert!(
        req.assistant_texts().iter().any(|t| t == final_text),
        "earlier answer missing\n{ctx}"
    );
    assert!(
        req.contains_conversation_of(&last_b),
        "resumed request does not contain the earlier conversation\n{ctx}"
    );
}

/// The fake itself, without claude: keep-alive, chunked request bodies,
/// `Expect: 100-continue`, unknown paths, non-streaming answers.
#[tokio::test]
async fn fake_anthropic_http_handling() {
    use tokio::net::TcpStream;

    async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, String) {
        // Reads one response (content-length or chunked) off a keep-alive stream.
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let lower = head.to_ascii_lowercase();
                let rest = &buf[end + 4..];
                if head.starts_with("HTTP/1.1 1") {
                    // Interim response (100 Continue): no body.
                    buf.drain(..end + 4);
                    return (head, String::new());
                }
                if let Some(len) = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse::<usize>().unwrap())
                {
                    if rest.len() >= len {
                        let body = String::from_utf8_lossy(&rest[..len]).to_string();
                        buf.drain(..end + 4 + len);
                        return (head, body);
                    }
                } else if let Some(pos) = rest.windows(5).position(|w| w == b"0\r\n\r\n") {
                    let body = String::from_utf8_lossy(&rest[..pos]).to_string();
                    buf.drain(..end + 4 + pos + 5);
                    return (head, body);
                }
            }
            let mut tmp = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
                .await
                .expect("fake did not answer")
                .unwrap();
            assert!(n > 0, "fake closed the connection");
            buf.extend_from_slice(&tmp[..n]);
        }
    }

    let fake =
        FakeAnthropic::start(Script::tool_then_text("mcp__x__y", json!({"a": 1}), "done")).await;
    let mut s = TcpStream::connect(fake.addr()).await.unwrap();
    let mut buf = Vec::new();

    // HEAD probe.
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Streaming request with a chunked body and Expect: 100-continue.
    let body = json!({
        "model": "m", "max_tokens": 64000, "stream": true,
        "tools": [{"name": "mcp__x__y", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>\nctx\n</system-reminder>"}, {"type": "text", "text": "go\n"}]},
            {"role": "system", "content": "extra system text"}
        ]
    })
    .to_string();
    let (a, z) = body.split_at(body.len() / 2);
    s.write_all(b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nx-claude-code-session-id: s1\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    s.write_all(format!("{:x}\r\n{a}\r\n{:x}\r\n{z}\r\n0\r\n\r\n", a.len(), z.len()).as_bytes())
        .await
        .unwrap();
    let (head, sse) = read_response(&mut s, &mut buf).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"),
        "{head}"
    );
    for ev in [
        "event: message_start",
        "event: content_block_start",
        "\"input_json_delta\"",
        "event: content_block_stop",
        "\"stop_reason\":\"tool_use\"",
        "event: message_stop",
    ] {
        assert!(sse.contains(ev), "{ev} missing in {sse}");
    }

    // Same connection, content-length body: the tool result comes back.
    let id = fake.issued_tool_use_ids()[0].clone();
    let body2 = json!({
        "model": "m", "max_tokens": 64000, "stream": true,
        "tools": [{"name": "mcp__x__y", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "mcp__x__y", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "nope", "is_error": true}]}
        ]
    })
    .to_string();
    s.write_all(
        format!(
            "POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body2}",
            body2.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (head, sse) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        sse.contains("\"text\":\"do\"") && sse.contains("\"text\":\"ne\""),
        "{sse}"
    );
    assert!(sse.contains("\"stop_reason\":\"end_turn\""), "{sse}");

    // A side request (small max_tokens, no tools, not streamed): plain JSON
    // "ok", the script is not consulted.
    let body3 = json!({
        "model": "haiku", "max_tokens": 1,
        "messages": [{"role": "user", "content": "quota"}]
    })
    .to_string();
    s.write_all(
        format!(
            "POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body3}",
            body3.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (head, json_body) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let msg: Value = serde_json::from_str(&json_body).unwrap();
    assert_eq!(msg["content"][0]["text"], "ok");

    // Unknown endpoint: 404, recorded.
    s.write_all(b"GET /v1/whatever HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 5, "{}", fake.summary());
    assert!(
        reqs.iter().all(|r| r.connection == 0),
        "keep-alive: {}",
        fake.summary()
    );
    assert_eq!(reqs[1].last_prompt().as_deref(), Some("go"));
    assert_eq!(reqs[1].session_id().as_deref(), Some("s1"));
    assert_eq!(reqs[1].turn_index(), 0);
    assert_eq!(reqs[2].turn_index(), 1);
    assert_eq!(fake.main_requests().len(), 2);
    assert_eq!(reqs[3].kind, fake_anthropic::RequestKind::SideMessages);
    assert_eq!(
        fake.tool_results(),
        vec![ToolResult {
            tool_use_id: id,
            text: "nope".into(),
            is_error: true
        }]
    );
    assert_eq!(fake.unknown_requests().len(), 1);
    assert_eq!(fake.unknown_requests()[0].path, "/v1/whatever");

    // Dropping the handle stops the server.
    let addr = fake.addr();
    drop(fake);
    tokio::task::yield_now().await;
    let mut closed = false;
    for _ in 0..100 {
        match TcpStream::connect(addr).await {
            Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(closed, "fake still accepting after drop");
}
