//! Test-only stand-in for the Anthropic Messages API, good enough for the real
//! Claude Code CLI (`claude`, 2.1.197) running offline with
//! `ANTHROPIC_BASE_URL=<FakeAnthropic::base_url()>`.
//!
//! Hand-rolled HTTP/1.1 on tokio (keep-alive, content-length or chunked
//! request bodies, `Expect: 100-continue`), bound to `127.0.0.1:0`.
//!
//! What real claude 2.1.197 sends (offline, with
//! `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`): one `HEAD /` probe, then one
//! streaming `POST /v1/messages?beta=true` per model turn, all on keep-alive
//! connections, bodies with `Content-Length`. Everything else is answered
//! harmlessly and recorded (see [`RequestKind`]).
//!
//! Each test scripts the model with a [`Script`]: a function of the request
//! (so retries and side requests do not consume anything) or a queue.
//! The server and all its connection tasks stop when the handle is dropped.
//!
//! Include with `mod fake_anthropic;` from `tests/support/mod.rs`, or with
//! `#[path = "support/fake_anthropic.rs"] mod fake_anthropic;` from a test.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Model name reported in responses (what claude 2.1.197 asks for by default).
pub const FAKE_MODEL: &str = "claude-opus-4-8";

// ───────────────────────────────────────────────────────────────── script ──

/// One content block of a scripted assistant message.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Text(String),
    /// `id: None` lets the fake generate a fresh `toolu_...` id per response.
    ToolUse {
        id: Option<String>,
        name: String,
        input: Value,
    },
}

/// What the fake answers to one `POST /v1/messages`.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// An assistant message, streamed as SSE when the request has `stream: true`.
    Message {
        blocks: Vec<Block>,
        stop_reason: String,
    },
    /// An API error: HTTP `status` with an Anthropic-style error body.
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
}

impl Reply {
    /// A text answer ending the turn (`stop_reason: end_turn`).
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Message {
            blocks: vec![Block::Text(text.into())],
            stop_reason: "end_turn".into(),
        }
    }

    /// A single `tool_use` block (`stop_reason: tool_use`).
    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        Reply::Message {
            blocks: vec![Block::ToolUse {
                id: None,
                name: name.into(),
                input,
            }],
            stop_reason: "tool_use".into(),
        }
    }

    /// Optional text followed by a `tool_use` block.
    pub fn text_then_tool_use(
        text: impl Into<String>,
        name: impl Into<String>,
        input: Value,
    ) -> Self {
        Reply::Message {
            blocks: vec![
                Block::Text(text.into()),
                Block::ToolUse {
                    id: None,
                    name: name.into(),
                    input,
                },
            ],
            stop_reason: "tool_use".into(),
        }
    }

    /// An HTTP error (e.g. 500 `api_error`, 529 `overloaded_error`).
    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Reply::Error {
            status,
            error_type: error_type.into(),
            message: message.into(),
        }
    }
}

type ReplyFn = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// Decides the answer to every main-conversation `POST /v1/messages`
/// (see [`RecordedRequest::is_main_conversation`]); side requests get
/// [`Script::side_reply`] and never reach the script.
#[derive(Clone)]
pub struct Script {
    main: Arc<ReplyFn>,
    side: Reply,
}

impl Script {
    /// Full control: answer computed from the request.
    pub fn from_fn(f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) -> Self {
        Script {
            main: Arc::new(f),
            side: Reply::text("ok"),
        }
    }

    /// Always the same text answer.
    pub fn text(text: impl Into<String>) -> Self {
        let reply = Reply::text(text);
        Self::from_fn(move |_| reply.clone())
    }

    /// Per user prompt: the model's `i`-th turn after the latest prompt gets
    /// `turns[i]` (`i` = [`RecordedRequest::turn_index`], i.e. the number of
    /// assistant messages since the latest user message that is not a tool
    /// result). A pure function of the request: retries get the same answer,
    /// and `--resume` with a new prompt starts at `turns[0]` again.
    /// Past the end, answers an HTTP 500 naming the problem.
    pub fn per_prompt(turns: Vec<Reply>) -> Self {
        Self::from_fn(move |req| {
            let i = req.turn_index();
            turns.get(i).cloned().unwrap_or_else(|| {
                Reply::error(
                    500,
                    "api_error",
                    format!(
                        "fake_anthropic: script has no turn {i} (only {})",
                        turns.len()
                    ),
                )
            })
        })
    }

    /// The common tool round trip: a `tool_use` of `tool` with `input` for a
    /// new prompt, then `final_text` once the tool result is back.
    pub fn tool_then_text(
        tool: impl Into<String>,
        input: Value,
        final_text: impl Into<String>,
    ) -> Self {
        Self::per_prompt(vec![Reply::tool_use(tool, input), Reply::text(final_text)])
    }

    /// Replies consumed in order, one per main-conversation request (retries
    /// consume too). When empty: HTTP 500 naming the problem.
    pub fn queue(replies: Vec<Reply>) -> Self {
        let q = Mutex::new(VecDeque::from(replies));
        Self::from_fn(move |_| {
            q.lock().unwrap().pop_front().unwrap_or_else(|| {
                Reply::error(500, "api_error", "fake_anthropic: script queue exhausted")
            })
        })
    }

    /// Answer for side requests (`/v1/messages` calls that are not the main
    /// conversation, e.g. titles or quota checks). Default: text "ok".
    pub fn with_side_reply(mut self, reply: Reply) -> Self {
        self.side = reply;
        self
    }

    fn answer(&self, req: &RecordedRequest) -> Reply {
        if req.is_main_conversation() {
            (self.main)(req)
        } else {
            self.side.clone()
        }
    }
}

// ─────────────────────────────────────────────────────────────── recording ──

/// How the fake classified (and answered) a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// `HEAD /` connectivity probe: 200, empty.
    Probe,
    /// `POST /v1/messages` that [`RecordedRequest::is_main_conversation`]: scripted.
    MainMessages,
    /// Any other `POST /v1/messages`: answered with the script's side reply.
    SideMessages,
    /// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`.
    CountTokens,
    /// `GET /v1/models...`: a list with [`FAKE_MODEL`].
    Models,
    /// Anything else: 404 with an Anthropic-style error body.
    Unknown,
}

/// A tool result that claude sent back in a request.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    pub tool_use_id: String,
    /// All text of the result (string content, or text blocks joined by "\n").
    pub text: String,
    pub is_error: bool,
}

/// One HTTP request as received, plus what the fake answered.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// 0-based arrival order.
    pub seq: usize,
    /// Which TCP connection it came on (0-based, in accept order).
    pub connection: u64,
    pub method: String,
    /// Path including the query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body; `Value::Null` if empty or not JSON (see `body_text`).
    pub body: Value,
    pub body_text: String,
    pub kind: RequestKind,
    /// HTTP status the fake answered with.
    pub status: u16,
    /// The scripted reply (with generated tool_use ids filled in), for messages requests.
    pub reply: Option<Reply>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path_only() == "/v1/messages"
    }

    /// Heuristic for "this is the agent loop, not a side request": a
    /// `POST /v1/messages` with `stream: true` that offers tools or allows a
    /// large output (`max_tokens > 4096`; claude 2.1.197's main requests
    /// have `max_tokens: 64000` and the full tool list, side requests such as
    /// title generation or quota checks have small `max_tokens` and no tools).
    pub fn is_main_conversation(&self) -> bool {
        if !self.is_messages() || self.body.get("stream") != Some(&Value::Bool(true)) {
            return false;
        }
        let has_tools = self
            .body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        let max_tokens = self
            .body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        has_tools || max_tokens > 4096
    }

    /// Claude's session id for this request: the `x-claude-code-session-id`
    /// header (claude 2.1.197 sends it on every `/v1/messages` call; equal to
    /// the stream-json `session_id`, also after `--resume`), else the
    /// `session_id` inside `metadata.user_id` (a JSON string). Lets several
    /// claude processes share one fake.
    pub fn session_id(&self) -> Option<String> {
        if let Some(h) = self.header("x-claude-code-session-id") {
            return Some(h.to_string());
        }
        let user_id = self.body.get("metadata")?.get("user_id")?.as_str()?;
        let parsed: Value = serde_json::from_str(user_id).ok()?;
        parsed.get("session_id")?.as_str().map(String::from)
    }

    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// `messages` of the body (empty if none).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// `tools[].name` offered to the model.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn offers_tool(&self, name: &str) -> bool {
        self.tool_names().iter().any(|n| n == name)
    }

    /// Every `tool_result` block in the request's messages, in order.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.messages()
            .iter()
            .filter(|m| role(m) == "user")
            .flat_map(content_blocks)
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| ToolResult {
                tool_use_id: b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                text: content_text(b.get("content").unwrap_or(&Value::Null)),
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect()
    }

    /// Tool results in the last message only (the ones this request delivers).
    pub fn new_tool_results(&self) -> Vec<ToolResult> {
        let Some(last) = self.messages().last() else {
            return vec![];
        };
        let only_last = RecordedRequest {
            body: json!({ "messages": [last] }),
            ..self.clone()
        };
        only_last.tool_results()
    }

    /// Ids of `tool_use` blocks in assistant messages (the conversation so far).
    pub fn tool_use_ids(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| role(m) == "assistant")
            .flat_map(content_blocks)
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            .filter_map(|b| b.get("id").and_then(Value::as_str).map(String::from))
            .collect()
    }

    /// Text blocks of user messages, without claude's `<system-reminder>` blocks.
    pub fn user_texts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| role(m) == "user")
            .flat_map(prompt_texts)
            .collect()
    }

    /// Text blocks of assistant messages.
    pub fn assistant_texts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| role(m) == "assistant")
            .flat_map(content_blocks)
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str).map(String::from))
            .collect()
    }

    /// The latest user prompt text (trailing newline trimmed), skipping
    /// tool-result messages and `<system-reminder>` blocks.
    pub fn last_prompt(&self) -> Option<String> {
        self.messages()
            .iter()
            .rev()
            .filter(|m| is_prompt_message(m))
            .find_map(|m| {
                let texts = prompt_texts(m);
                (!texts.is_empty()).then(|| texts.join("\n").trim_end().to_string())
            })
    }

    /// Whether the last message carries tool results.
    pub fn last_message_has_tool_result(&self) -> bool {
        !self.new_tool_results().is_empty()
    }

    /// Number of assistant messages after the latest user prompt (a user
    /// message without tool results): 0 for a fresh prompt, 1 after one
    /// tool round trip, ... `role: "system"` entries are ignored.
    pub fn turn_index(&self) -> usize {
        let msgs = self.messages();
        let start = msgs
            .iter()
            .rposition(is_prompt_message)
            .map_or(0, |i| i + 1);
        msgs[start..]
            .iter()
            .filter(|m| role(m) == "assistant")
            .count()
    }

    /// True if any string anywhere in `messages` contains `needle`.
    pub fn messages_contain(&self, needle: &str) -> bool {
        fn walk(v: &Value, needle: &str) -> bool {
            match v {
                Value::String(s) => s.contains(needle),
                Value::Array(a) => a.iter().any(|x| walk(x, needle)),
                Value::Object(o) => o.values().any(|x| walk(x, needle)),
                _ => false,
            }
        }
        self.messages().iter().any(|m| walk(m, needle))
    }

    /// Whether this request's conversation contains `earlier`'s conversation:
    /// every prompt, assistant text, tool_use id and tool result of `earlier`
    /// (ignoring `<system-reminder>` blocks and `cache_control` markers).
    pub fn contains_conversation_of(&self, earlier: &RecordedRequest) -> bool {
        let mine_user = self.user_texts();
        let mine_asst = self.assistant_texts();
        let mine_ids = self.tool_use_ids();
        let mine_results = self.tool_results();
        earlier.user_texts().iter().all(|t| mine_user.contains(t))
            && earlier
                .assistant_texts()
                .iter()
                .all(|t| mine_asst.contains(t))
            && earlier.tool_use_ids().iter().all(|t| mine_ids.contains(t))
            && earlier
                .tool_results()
                .iter()
                .all(|t| mine_results.contains(t))
    }

    /// One-line description for assertion messages.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "#{} conn{} {} {} -> {} {:?}",
            self.seq, self.connection, self.method, self.path, self.status, self.kind
        );
        if self.is_messages() {
            let _ = write!(
                s,
                " model={} max_tokens={} stream={} tools={} msgs={} turn={} last_prompt={:?} new_tool_results={:?}",
                self.model().unwrap_or("?"),
                self.body.get("max_tokens").unwrap_or(&Value::Null),
                self.body.get("stream").unwrap_or(&Value::Null),
                self.tool_names().len(),
                self.messages().len(),
                self.turn_index(),
                self.last_prompt(),
                self.new_tool_results(),
            );
            if let Some(r) = &self.reply {
                let _ = write!(s, " reply={r:?}");
            }
        } else if !self.body_text.is_empty() {
            let _ = write!(s, " body={:.200}", self.body_text);
        }
        s
    }
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

/// `content` as a list of blocks (a string content becomes one text block).
fn content_blocks(m: &Value) -> Vec<Value> {
    match m.get("content") {
        Some(Value::String(s)) => vec![json!({ "type": "text", "text": s })],
        Some(Value::Array(a)) => a.clone(),
        _ => vec![],
    }
}

/// Text blocks of a message, without claude's `<system-reminder>` blocks.
fn prompt_texts(m: &Value) -> Vec<String> {
    content_blocks(m)
        .into_iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str).map(String::from))
        .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
        .collect()
}

fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn is_prompt_message(m: &Value) -> bool {
    role(m) == "user"
        && !content_blocks(m)
            .iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
}

// ────────────────────────────────────────────────────────────────── server ──

struct State {
    script: Script,
    requests: Mutex<Vec<RecordedRequest>>,
    next_conn: AtomicU64,
}

/// Handle to a running fake. Dropping it stops the server and every
/// connection task (tasks are aborted; no process is involved).
pub struct FakeAnthropic {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeAnthropic {
    /// Binds `127.0.0.1:0` and serves until dropped. Must be called inside a
    /// tokio runtime that keeps running while claude talks to it (use
    /// `tokio::process` or a multi-thread runtime; a blocking wait on the
    /// test's only runtime thread would starve the server).
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake_anthropic: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake_anthropic: local_addr");
        let state = Arc::new(State {
            script,
            requests: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        FakeAnthropic { addr, state, task }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash), for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Main-conversation `POST /v1/messages` requests.
    pub fn main_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.kind == RequestKind::MainMessages)
            .collect()
    }

    /// Main-conversation requests of one claude session (see
    /// [`RecordedRequest::session_id`]).
    pub fn main_requests_for_session(&self, session_id: &str) -> Vec<RecordedRequest> {
        self.main_requests()
            .into_iter()
            .filter(|r| r.session_id().as_deref() == Some(session_id))
            .collect()
    }

    /// Requests the fake has no real handler for (`RequestKind::Unknown`).
    pub fn unknown_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.kind == RequestKind::Unknown)
            .collect()
    }

    /// `tool_use` ids the fake handed out, in order.
    pub fn issued_tool_use_ids(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.reply.as_ref())
            .flat_map(|r| match r {
                Reply::Message { blocks, .. } => blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::ToolUse { id, .. } => id.clone(),
                        Block::Text(_) => None,
                    })
                    .collect(),
                Reply::Error { .. } => vec![],
            })
            .collect()
    }

    /// Tool results delivered to the model (each result once, from the
    /// request whose last message carried it), in order.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.main_requests()
            .iter()
            .flat_map(RecordedRequest::new_tool_results)
            .collect()
    }

    /// Multi-line description of everything received, for assertion messages.
    pub fn summary(&self) -> String {
        let reqs = self.requests();
        if reqs.is_empty() {
            return format!("fake_anthropic at {}: no requests", self.base_url());
        }
        let mut s = format!(
            "fake_anthropic at {}: {} request(s)\n",
            self.base_url(),
            reqs.len()
        );
        for r in reqs {
            let _ = writeln!(s, "  {}", r.summary());
        }
        s
    }

    /// Stops the server and waits until its tasks are gone.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every
        // connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let id = state.next_conn.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                conns.spawn(async move {
                    let _ = serve_connection(stream, id, state).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Buffered reader over the socket that keeps leftover bytes between
/// pipelined/keep-alive requests.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n > 0)
    }

    /// Reads up to and including `\r\n\r\n`; `None` on clean EOF before any byte.
    async fn read_head(&mut self) -> std::io::Result<Option<Head>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return parse_head(&raw).map(Some);
            }
            if self.buf.len() > 1024 * 1024 {
                return Err(invalid("request head too large"));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(invalid("eof inside request head"))
                };
            }
        }
    }

    async fn read_exact_buf(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(invalid("eof inside request body"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn read_line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if !self.fill().await? {
                return Err(invalid("eof inside chunked body"));
            }
        }
    }

    async fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let line = String::from_utf8_lossy(&line);
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    if self.read_line().await?.is_empty() {
                        return Ok(body);
                    }
                }
            }
            body.extend(self.read_exact_buf(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err(invalid("missing CRLF after chunk"));
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn parse_head(raw: &[u8]) -> std::io::Result<Head> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid("bad request line"));
    };
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        headers,
    })
}

async fn serve_connection(
    stream: TcpStream,
    conn_id: u64,
    state: Arc<State>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    while let Some(head) = conn.read_head().await? {
        if head
            .get("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            conn.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let chunked = head
            .get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            conn.read_chunked().await?
        } else {
            let len = head
                .get("content-length")
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| invalid("bad content-length"))
                })
                .transpose()?
                .unwrap_or(0);
            conn.read_exact_buf(len).await?
        };
        let close = head
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));

        let response = handle(&state, conn_id, head, body);
        conn.stream.write_all(&response).await?;
        conn.stream.flush().await?;
        if close {
            let _ = conn.stream.shutdown().await;
            return Ok(());
        }
    }
    Ok(())
}

/// Builds the whole response (SSE bodies are small; sent chunked, one chunk
/// per event, like the real API) and records the request.
fn handle(state: &State, conn_id: u64, head: Head, body: Vec<u8>) -> Vec<u8> {
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut req = RecordedRequest {
        seq: 0,
        connection: conn_id,
        method: head.method,
        path: head.path,
        headers: head.headers,
        body: body_json,
        body_text,
        kind: RequestKind::Unknown,
        status: 0,
        reply: None,
    };
    let path = req.path_only().to_string();
    let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());

    let (kind, response) = match (req.method.as_str(), path.as_str()) {
        ("HEAD", _) => (
            RequestKind::Probe,
            http_response(200, "text/plain", &request_id, b"", true),
        ),
        ("POST", "/v1/messages") => {
            let kind = if req.is_main_conversation() {
                RequestKind::MainMessages
            } else {
                RequestKind::SideMessages
            };
            let reply = fill_ids(state.script.answer(&req));
            let stream = req.body.get("stream") == Some(&Value::Bool(true));
            let response = match &reply {
                Reply::Message {
                    blocks,
                    stop_reason,
                } if stream => sse_response(&request_id, blocks, stop_reason),
                Reply::Message {
                    blocks,
                    stop_reason,
                } => {
                    let msg = message_json(blocks, stop_reason, 5);
                    json_response(200, &request_id, &msg)
                }
                Reply::Error {
                    status,
                    error_type,
                    message,
                } => json_response(*status, &request_id, &error_json(error_type, message)),
            };
            req.reply = Some(reply);
            (kind, response)
        }
        ("POST", "/v1/messages/count_tokens") => (
            RequestKind::CountTokens,
            json_response(
                200,
                &request_id,
                &json!({ "input_tokens": estimate_tokens(&req.body_text) }),
            ),
        ),
        ("GET", p) if p == "/v1/models" || p.starts_with("/v1/models/") => {
            let model = json!({
                "type": "model",
                "id": FAKE_MODEL,
                "display_name": "Fake Claude",
                "created_at": "2025-01-01T00:00:00Z"
            });
            let body = if p == "/v1/models" {
                json!({ "data": [model], "has_more": false, "first_id": FAKE_MODEL, "last_id": FAKE_MODEL })
            } else {
                model
            };
            (RequestKind::Models, json_response(200, &request_id, &body))
        }
        _ => (
            RequestKind::Unknown,
            json_response(
                404,
                &request_id,
                &error_json(
                    "not_found_error",
                    &format!("fake_anthropic: no handler for {} {}", req.method, req.path),
                ),
            ),
        ),
    };
    req.kind = kind;
    req.status = status_of(&response);

    let mut requests = state.requests.lock().unwrap();
    req.seq = requests.len();
    requests.push(req);
    response
}

fn fill_ids(reply: Reply) -> Reply {
    match reply {
        Reply::Message {
            blocks,
            stop_reason,
        } => Reply::Message {
            blocks: blocks
                .into_iter()
                .map(|b| match b {
                    Block::ToolUse {
                        id: None,
                        name,
                        input,
                    } => Block::ToolUse {
                        id: Some(format!("toolu_{}", &random_hex()[..24])),
                        name,
                        input,
                    },
                    other => other,
                })
                .collect(),
            stop_reason,
        },
        e => e,
    }
}

/// Ids must be unique across fake instances: a `--resume`d conversation
/// mixes messages from several runs.
fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn estimate_tokens(body: &str) -> u64 {
    (body.len() as u64 / 4).max(1)
}

fn status_of(response: &[u8]) -> u16 {
    std::str::from_utf8(&response[..response.len().min(16)])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn http_response(
    status: u16,
    content_type: &str,
    request_id: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nrequest-id: {request_id}\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

fn json_response(status: u16, request_id: &str, body: &Value) -> Vec<u8> {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut resp = http_response(status, "application/json", request_id, &bytes, false);
    if status == 429 || status == 529 || status >= 500 {
        // Tell the SDK not to wait long if a test ever allows retries.
        let pos = find(&resp, b"\r\n").unwrap() + 2;
        resp.splice(
            pos..pos,
            b"retry-after: 0\r\nx-should-retry: false\r\n"
                .iter()
                .copied(),
        );
    }
    resp
}

fn error_json(error_type: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": error_type, "message": message } })
}

fn usage(output_tokens: u64) -> Value {
    json!({
        "input_tokens": 10,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0
    })
}

fn block_json(b: &Block) -> Value {
    match b {
        Block::Text(t) => json!({ "type": "text", "text": t }),
        Block::ToolUse { id, name, input } => {
            json!({ "type": "tool_use", "id": id, "name": name, "input": input })
        }
    }
}

fn message_json(blocks: &[Block], stop_reason: &str, output_tokens: u64) -> Value {
    json!({
        "id": format!("msg_{}", &random_hex()[..24]),
        "type": "message",
        "role": "assistant",
        "model": FAKE_MODEL,
        "content": blocks.iter().map(block_json).collect::<Vec<_>>(),
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(output_tokens),
    })
}

/// Splits `s` roughly in half on a char boundary (to exercise delta joining).
fn halves(s: &str) -> (&str, &str) {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    s.split_at(mid)
}

fn sse_response(request_id: &str, blocks: &[Block], stop_reason: &str) -> Vec<u8> {
    let mut events: Vec<(&str, Value)> = Vec::new();
    let mut start = message_json(&[], "", 1);
    start["stop_reason"] = Value::Null;
    events.push((
        "message_start",
        json!({ "type": "message_start", "message": start }),
    ));
    events.push(("ping", json!({ "type": "ping" })));
    for (index, b) in blocks.iter().enumerate() {
        let (start_block, deltas): (Value, Vec<Value>) = match b {
            Block::Text(t) => {
                let (a, z) = halves(t);
                (
                    json!({ "type": "text", "text": "" }),
                    [a, z]
                        .iter()
                        .filter(|p| !p.is_empty())
                        .map(|p| json!({ "type": "text_delta", "text": p }))
                        .collect(),
                )
            }
            Block::ToolUse { id, name, input } => {
                let input = serde_json::to_string(input).unwrap();
                let (a, z) = halves(&input);
                (
                    json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                    [a, z]
                        .iter()
                        .filter(|p| !p.is_empty())
                        .map(|p| json!({ "type": "input_json_delta", "partial_json": p }))
                        .collect(),
                )
            }
        };
        events.push((
            "content_block_start",
            json!({ "type": "content_block_start", "index": index, "content_block": start_block }),
        ));
        for delta in deltas {
            events.push((
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": index, "delta": delta }),
            ));
        }
        events.push((
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": index }),
        ));
    }
    events.push((
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": 5 },
        }),
    ));
    events.push(("message_stop", json!({ "type": "message_stop" })));

    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\nrequest-id: {request_id}\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
    )
    .into_bytes();
    for (name, data) in events {
        let chunk = format!("event: {name}\ndata: {data}\n\n");
        out.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        out.extend(chunk.into_bytes());
        out.extend(b"\r\n");
    }
    out.extend(b"0\r\n\r\n");
    out
}
