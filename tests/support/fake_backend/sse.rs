//! The SSE + POST side of the fake backend (docs/PROTOCOL.md, "SSE +
//! POST"), so one scenario runs over either transport against the same
//! [`Conn`] API.
//!
//! One session is a `POST /v1/daemon/ready` (the "upgrade": recorded in
//! [`FakeBackend::upgrades`], answered with the `hello` settings as
//! `host_id`, or rejected as [`Auth`] says) followed by a
//! `GET /v1/daemon/stream`. The daemon's POSTs become frames again
//! (`{"type", "payload"}`: `ready` from `/ready`, `delivery_ack` from
//! `/delivery-ack`, ...); the stream's `Last-Event-ID` is recorded as the
//! `resume {last_seq}` frame it replaces over SSE. Heartbeat POSTs are the
//! transport's keep-alive, like WebSocket pings: not frames. Every POST is
//! also recorded with its answer ([`FakeBackend::posts`]), and
//! [`FakeBackend::fail_post`] makes the next ones to a path fail.
//! [`Conn::send`] writes the frame as one event (`event:` its type, `id:`
//! its seq, `data:` its JSON), [`Conn::close`] and dropping the `Conn` end
//! the stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::http1::{self, Request};
use super::{Auth, Cmd, Conn, Event, Post, Shared, Upgrade, record_frame};

/// How long a [`Conn::send`] waits for the daemon to open its stream.
const STREAM_WAIT: Duration = Duration::from_secs(10);

/// The session the daemon's POSTs belong to (the last accepted `/ready`).
pub(super) struct Session {
    index: usize,
    log: Arc<Mutex<Vec<Value>>>,
    events: mpsc::UnboundedSender<Event>,
    /// The open stream's writer, once the daemon opened it.
    stream: watch::Sender<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    /// The test closed or dropped its `Conn`: a stream opened later is
    /// ended at once, as a dropped WebSocket would be.
    ended: AtomicBool,
}

impl Session {
    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.stream.send_replace(None);
    }
}

impl Session {
    fn record(&self, shared: &Shared, frame: Value) {
        record_frame(shared, self.index, &self.log, &self.events, frame);
    }
}

/// Serve one TCP connection of the SSE side: POSTs (keep-alive) or the
/// stream.
pub(super) async fn serve(
    tcp: TcpStream,
    shared: Arc<Shared>,
    conn_tx: mpsc::UnboundedSender<Conn>,
) {
    let mut tcp = BufReader::new(tcp);
    while let Some(req) = http1::read_request(&mut tcp).await {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/daemon/stream") => return stream(tcp, req, &shared).await,
            ("POST", "/v1/daemon/ready") => {
                if !ready(&mut tcp, &req, &shared, &conn_tx).await {
                    return;
                }
            }
            ("POST", path) => {
                let status = post(&req, path, &shared);
                http1::respond(&mut tcp, status, "{}").await;
            }
            _ => http1::respond(&mut tcp, 404, "").await,
        }
    }
}

fn authorized(shared: &Shared, req: &Request) -> bool {
    match &shared.config.lock().unwrap().auth {
        Auth::Bearer(key) => req.header("authorization") == Some(&format!("Bearer {key}")),
        Auth::Accept | Auth::Reject(_) => true,
    }
}

/// `/ready`: a new session, answered like `hello`. `false` when the
/// connection is done with (a backend that never answers).
async fn ready(
    tcp: &mut BufReader<TcpStream>,
    req: &Request,
    shared: &Arc<Shared>,
    conn_tx: &mpsc::UnboundedSender<Conn>,
) -> bool {
    let config = shared.config.lock().unwrap().clone();
    let status = match config.auth {
        Auth::Reject(s) => s,
        _ if !authorized(shared, req) => 401,
        _ => queued_failure(shared, &req.path).unwrap_or(200),
    };
    recorded(shared, req, status);
    let upgrade = record_request(shared, req, status);
    if status != 200 {
        http1::respond(tcp, status, "").await;
        return true;
    }
    if !config.send_hello {
        // Never answer: hold the request until the daemon gives up.
        let _ = tcp.read(&mut [0u8; 1]).await;
        return false;
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let session = open_session(shared, upgrade, &config.host_id, conn_tx);
    session.record(shared, json!({"type": "ready", "payload": body}));
    let answer =
        json!({"host_id": config.host_id, "last_acked_seq": config.last_acked_seq, "agents": []});
    http1::respond(tcp, 200, &answer.to_string()).await;
    true
}

fn open_session(
    shared: &Arc<Shared>,
    upgrade: Upgrade,
    host_id: &str,
    conn_tx: &mpsc::UnboundedSender<Conn>,
) -> Arc<Session> {
    let index = shared.accepted.fetch_add(1, Ordering::SeqCst);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let session = Arc::new(Session {
        index,
        log: log.clone(),
        events: ev_tx,
        stream: watch::channel(None).0,
        ended: AtomicBool::new(false),
    });
    *shared.sse.lock().unwrap() = Some(session.clone());
    let conn = Conn {
        index,
        upgrade,
        hello: Some(super::hello(host_id, json!([]))),
        cmds: cmd_tx,
        events: ev_rx,
        log,
        pongs: Arc::new(Mutex::new(Vec::new())),
        closed: None,
        shared: shared.clone(),
    };
    tokio::spawn(drive(session.clone(), cmd_rx));
    let _ = conn_tx.send(conn);
    shared.bump();
    session
}

/// The daemon's frame POSTs, back into frames of the current session
/// (heartbeats are only recorded as POSTs).
fn post(req: &Request, path: &str, shared: &Shared) -> u16 {
    let status = post_status(req, path, shared);
    if status == 200
        && let Some(ty) = frame_type(path)
    {
        let session = shared.sse.lock().unwrap().clone();
        let Some(session) = session else {
            return recorded(shared, req, 409);
        };
        let payload: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        session.record(shared, json!({"type": ty, "payload": payload}));
    }
    recorded(shared, req, status)
}

/// The frame type a POST path carries (`None`: a heartbeat).
fn frame_type(path: &str) -> Option<String> {
    match path.strip_prefix("/v1/daemon/")? {
        "heartbeat" => None,
        name => Some(name.replace('-', "_")),
    }
}

fn post_status(req: &Request, path: &str, shared: &Shared) -> u16 {
    const PATHS: [&str; 6] = [
        "heartbeat",
        "delivery-ack",
        "agent-status",
        "agent-session-start",
        "tool-call",
        "publish-partial",
    ];
    if !PATHS
        .iter()
        .any(|p| path.strip_prefix("/v1/daemon/") == Some(p))
    {
        return 404;
    }
    if !authorized(shared, req) {
        return 401;
    }
    queued_failure(shared, path).unwrap_or(200)
}

fn queued_failure(shared: &Shared, path: &str) -> Option<u16> {
    let mut f = shared.post_failures.lock().unwrap();
    f.get_mut(path).and_then(VecDeque::pop_front)
}

/// Record a POST with its answer; returns `status`.
fn recorded(shared: &Shared, req: &Request, status: u16) -> u16 {
    let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    shared.posts.lock().unwrap().push(Post {
        path: req.path.clone(),
        body,
        status,
    });
    shared.bump();
    status
}

fn record_request(shared: &Shared, req: &Request, status: u16) -> Upgrade {
    let authorization = req.header("authorization").map(String::from);
    super::push_upgrade(
        shared,
        req.path.clone(),
        authorization,
        req.headers.clone(),
        status,
    )
}

/// `GET /stream`: the current session's event stream, until either side
/// ends it.
async fn stream(mut tcp: BufReader<TcpStream>, req: Request, shared: &Shared) {
    let session = shared.sse.lock().unwrap().clone();
    let Some(session) = session.filter(|_| authorized(shared, &req)) else {
        return http1::respond(&mut tcp, 401, "").await;
    };
    let last_seq = req
        .header("last-event-id")
        .and_then(|v| v.parse::<i64>().ok());
    session.record(
        shared,
        json!({"type": "resume", "payload": {"last_seq": last_seq}}),
    );
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nconnection: close\r\n\r\n";
    if tcp.get_mut().write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    session.stream.send_replace(Some(tx));
    if !session.ended.load(Ordering::SeqCst) {
        pump(&mut tcp, &mut rx).await;
    }
    let _ = session.events.send(Event::Closed(super::Closed {
        close_frame: false,
        code: None,
        reason: String::new(),
    }));
    shared.bump();
}

/// Write what the test sends until it ends the stream or the daemon
/// closes it.
async fn pump(tcp: &mut BufReader<TcpStream>, rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            bytes = rx.recv() => match bytes {
                Some(b) => {
                    if tcp.get_mut().write_all(&b).await.is_err() {
                        return;
                    }
                    let _ = tcp.get_mut().flush().await;
                }
                None => return,
            },
            n = tcp.read(&mut probe) => if matches!(n, Ok(0) | Err(_)) { return },
        }
    }
}

/// The test's side of a session: its sends become events on the stream.
async fn drive(session: Arc<Session>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::Send(msgs, done) => {
                let _ = done.send(send(&session, &msgs).await);
            }
            Cmd::Close(..) => session.end(),
        }
    }
    session.end();
}

async fn send(session: &Session, msgs: &[Message]) -> Result<(), String> {
    let mut bytes = Vec::new();
    for m in msgs {
        match m {
            Message::Text(t) => bytes.extend_from_slice(event(t.as_str()).as_bytes()),
            Message::Binary(b) => bytes.extend_from_slice(b),
            other => return Err(format!("{other:?} has no SSE equivalent")),
        }
    }
    let mut rx = session.stream.subscribe();
    let writer = tokio::time::timeout(STREAM_WAIT, rx.wait_for(Option::is_some))
        .await
        .map_err(|_| "the daemon opened no stream".to_string())?
        .map_err(|_| "session gone".to_string())?
        .clone();
    writer
        .ok_or("stream closed")?
        .send(bytes)
        .map_err(|_| "stream closed".to_string())
}

/// One event carrying `text`: `event:` the frame's type and `id:` its seq
/// when it has them, one `data:` line per line of text.
pub fn event(text: &str) -> String {
    let v: Option<Value> = serde_json::from_str(text).ok();
    let mut out = String::new();
    if let Some(ty) = v
        .as_ref()
        .and_then(|v| v.get("type"))
        .and_then(Value::as_str)
    {
        out.push_str(&format!("event: {ty}\n"));
    }
    if let Some(seq) = v
        .as_ref()
        .and_then(|v| v.get("seq"))
        .and_then(Value::as_i64)
    {
        out.push_str(&format!("id: {seq}\n"));
    }
    for line in text.split('\n') {
        out.push_str(&format!("data: {line}\n"));
    }
    out.push('\n');
    out
}
