//! Test-only cloudagent backend speaking both transports on one port
//! (docs/PROTOCOL.md, "Transports"): the WebSocket one (`GET /v1/daemon/ws`
//! upgrade with `Authorization: Bearer <key>`, then JSON text frames both
//! ways) and SSE + POST (see [`sse`]: the same frames, so a scenario runs
//! unchanged over either; the daemon's config chooses).
//!
//! Bound to `127.0.0.1:0`; accepts any number of sequential or parallel
//! connections. For every accepted upgrade it sends `hello` (unless disabled
//! with [`FakeBackend::set_send_hello`]), then records every frame the daemon
//! sends. It answers nothing by itself (no `pong` to anything, no acks): the
//! test drives it through the [`Conn`] it gets from
//! [`FakeBackend::next_connection`]. Each connection keeps being read in the
//! background, so WebSocket control frames (ping, close) are handled even
//! while the test is not calling [`Conn::recv`].
//!
//! Everything stops when the [`FakeBackend`] is dropped; dropping a [`Conn`]
//! drops its TCP connection without a close frame.
//!
//! Use from a `#[tokio::test(flavor = "multi_thread")]` test (the server runs
//! as tasks on the test's runtime, so a current-thread test that blocks its
//! thread would starve it).
//!
//! ```ignore
//! let backend = FakeBackend::start().await;
//! // ... start the daemon with server URL backend.url() ...
//! let mut conn = backend.next_connection(Duration::from_secs(10)).await;
//! assert_eq!(conn.upgrade.authorization.as_deref(), Some("Bearer sk_machine_x"));
//! conn.recv_type("ready", T).await;
//! conn.send(deliver(1, "agent_x", "msg_1", "hello")).await;
//! let ack = conn.recv_type("delivery_ack", T).await;
//! ```
//!
//! Include with `mod fake_backend;` from `tests/support/mod.rs`, or with
//! `#[path = "support/fake_backend.rs"] mod fake_backend;` from a test.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

mod http1;
mod sse;

/// Upgrade path the daemon must use (§1.5).
pub const WS_PATH: &str = "/v1/daemon/ws";
/// `host_id` sent in `hello` unless changed with [`FakeBackend::set_hello`].
pub const DEFAULT_HOST_ID: &str = "host_test";
/// How long [`Conn::close`] waits for the daemon's half of the close handshake.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

// ──────────────────────────────────────────────────────────────── config ──

/// How the upgrade request is answered (checked per upgrade, so it can be
/// changed between connections).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Accept any (or no) Authorization header. The default.
    Accept,
    /// Accept only `Authorization: Bearer <key>`; anything else gets 401.
    Bearer(String),
    /// Reject every upgrade with this HTTP status (401/403 are terminal for
    /// the daemon, others such as 500/503 are retried).
    Reject(u16),
}

#[derive(Clone, Debug)]
struct Config {
    auth: Auth,
    host_id: String,
    send_hello: bool,
    ws_path: String,
    /// `last_acked_seq` in the answer to an SSE `/ready`.
    last_acked_seq: i64,
}

/// One POST of the SSE transport, as received and answered.
#[derive(Debug, Clone)]
pub struct Post {
    pub path: String,
    pub body: Value,
    /// What the fake answered.
    pub status: u16,
}

/// One upgrade request as received (accepted or rejected).
#[derive(Clone, Debug)]
pub struct Upgrade {
    /// 0-based, in arrival order, over all upgrade requests.
    pub index: usize,
    /// Path and query as requested, e.g. `/v1/daemon/ws`.
    pub path: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// All headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// 101 if accepted (200 for an SSE `/ready`), else the HTTP status it
    /// was rejected with (404 when the path is not the expected one, see
    /// [`FakeBackend::set_ws_path`]).
    pub status: u16,
}

impl Upgrade {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn accepted(&self) -> bool {
        matches!(self.status, 101 | 200)
    }
}

/// How a connection ended from the server's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The daemon sent a Close frame (`false`: EOF/reset without one).
    pub close_frame: bool,
    /// Close code of that frame, if it carried one (1000 = normal).
    pub code: Option<u16>,
    pub reason: String,
}

// ──────────────────────────────────────────────────────────────── server ──

struct Shared {
    config: Mutex<Config>,
    upgrades: Mutex<Vec<Upgrade>>,
    /// Every frame of every connection: (connection index, frame).
    frames: Mutex<Vec<(usize, Value)>>,
    accepted: AtomicUsize,
    /// The SSE session the daemon's POSTs belong to.
    sse: Mutex<Option<Arc<sse::Session>>>,
    /// Every SSE POST (`/ready`, frames, heartbeats), failed ones included.
    posts: Mutex<Vec<Post>>,
    /// Statuses to answer the next POSTs to a path with, instead of 200.
    post_failures: Mutex<HashMap<String, VecDeque<u16>>>,
    /// Bumped on every recorded event; waiters watch it.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Wait until `check` returns `Some`, re-checking after every recorded
    /// event; `None` on timeout.
    async fn wait<T>(&self, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        let mut rx = self.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = check() {
                return Some(t);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return check(),
            }
        }
    }
}

/// A scriptable cloudagent backend (WebSocket transport). See module docs.
pub struct FakeBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    conns: tokio::sync::Mutex<mpsc::UnboundedReceiver<Conn>>,
    task: JoinHandle<()>,
}

impl FakeBackend {
    /// Listen on `127.0.0.1:0` and start accepting.
    pub async fn start() -> FakeBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake backend: bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            config: Mutex::new(Config {
                auth: Auth::Accept,
                host_id: DEFAULT_HOST_ID.to_string(),
                send_hello: true,
                ws_path: WS_PATH.to_string(),
                last_acked_seq: 0,
            }),
            upgrades: Mutex::new(Vec::new()),
            frames: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            sse: Mutex::new(None),
            posts: Mutex::new(Vec::new()),
            post_failures: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        });
        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), conn_tx));
        FakeBackend {
            addr,
            shared,
            conns: tokio::sync::Mutex::new(conn_rx),
            task,
        }
    }

    /// Server URL for the daemon's config: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/v1/daemon/ws`, for connecting directly.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, WS_PATH)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How to answer the next upgrades (default [`Auth::Accept`]).
    pub fn set_auth(&self, auth: Auth) {
        self.shared.config.lock().unwrap().auth = auth;
    }

    /// `host_id` of the `hello` sent on the next connections (default
    /// [`DEFAULT_HOST_ID`]).
    pub fn set_hello(&self, host_id: &str) {
        self.shared.config.lock().unwrap().host_id = host_id.to_string();
    }

    /// `false`: send no `hello` on the next connections (the test may send its
    /// own first message with [`Conn::send`] / [`Conn::send_raw`]).
    pub fn set_send_hello(&self, on: bool) {
        self.shared.config.lock().unwrap().send_hello = on;
    }

    /// Path upgrades must use (default [`WS_PATH`]); other paths get 404.
    pub fn set_ws_path(&self, path: &str) {
        self.shared.config.lock().unwrap().ws_path = path.to_string();
    }

    /// The next accepted connection (in accept order; connections accepted
    /// earlier and not yet taken are returned first). Panics on timeout,
    /// listing the upgrade requests seen so far.
    pub async fn next_connection(&self, timeout: Duration) -> Conn {
        let mut rx = self.conns.lock().await;
        match tokio::time::timeout(timeout, rx.recv()).await {
            Ok(Some(conn)) => conn,
            Ok(None) => panic!("fake backend: accept loop ended"),
            Err(_) => panic!(
                "fake backend: no new connection within {timeout:?}; upgrade requests so far: {}",
                self.describe_upgrades()
            ),
        }
    }

    /// Like [`FakeBackend::next_connection`], but `None` instead of a panic
    /// when none comes within `timeout` (`Duration::ZERO`: only one already
    /// accepted), for a test that polls while daemons come and go.
    pub async fn try_next_connection(&self, timeout: Duration) -> Option<Conn> {
        let mut rx = self.conns.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every upgrade request so far (accepted and rejected), in order.
    pub fn upgrades(&self) -> Vec<Upgrade> {
        self.shared.upgrades.lock().unwrap().clone()
    }

    /// Number of upgrade requests (accepted and rejected).
    pub fn upgrade_count(&self) -> usize {
        self.shared.upgrades.lock().unwrap().len()
    }

    /// Number of accepted connections.
    pub fn accepted_count(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// `last_acked_seq` in the answer to the next SSE `/ready`s.
    pub fn set_last_acked_seq(&self, seq: i64) {
        self.shared.config.lock().unwrap().last_acked_seq = seq;
    }

    /// Answer the next SSE POST to `path` (`/v1/daemon/ready` included)
    /// with `status`; queued, one per call.
    pub fn fail_post(&self, path: &str, status: u16) {
        let mut f = self.shared.post_failures.lock().unwrap();
        f.entry(path.to_string()).or_default().push_back(status);
    }

    /// Every SSE POST so far, failed ones included, in arrival order.
    pub fn posts(&self) -> Vec<Post> {
        self.shared.posts.lock().unwrap().clone()
    }

    /// Bodies of the SSE POSTs to `path` answered 2xx, in order.
    pub fn accepted_posts(&self, path: &str) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|p| p.path == path && p.status < 300)
            .map(|p| p.body)
            .collect()
    }

    /// Wait until `pred` holds for the SSE POSTs so far.
    pub async fn wait_posts(&self, timeout: Duration, what: &str, pred: impl Fn(&[Post]) -> bool) {
        let found = self
            .shared
            .wait(timeout, || pred(&self.posts()).then_some(()))
            .await;
        if found.is_none() {
            panic!(
                "fake backend: timed out waiting for {what}; POSTs: {:#?}",
                self.posts()
            );
        }
    }

    /// The `Authorization` header of each upgrade request, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.upgrades()
            .into_iter()
            .map(|u| u.authorization)
            .collect()
    }

    /// Wait until at least `count` upgrade requests arrived; returns them all.
    pub async fn wait_for_upgrades(&self, count: usize, timeout: Duration) -> Vec<Upgrade> {
        let found = self
            .shared
            .wait(timeout, || {
                let ups = self.upgrades();
                (ups.len() >= count).then_some(ups)
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "fake backend: wanted {count} upgrade requests within {timeout:?}; got: {}",
                self.describe_upgrades()
            )
        })
    }

    /// Every frame received on any connection, as (connection index, frame),
    /// in arrival order. Survives reconnects.
    pub fn all_frames(&self) -> Vec<(usize, Value)> {
        self.shared.frames.lock().unwrap().clone()
    }

    /// The frames of [`FakeBackend::all_frames`] from position `from` on, to
    /// follow them incrementally.
    pub fn frames_from(&self, from: usize) -> Vec<(usize, Value)> {
        let frames = self.shared.frames.lock().unwrap();
        frames.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// All frames of type `ty` from all connections, in arrival order.
    pub fn frames_of_type(&self, ty: &str) -> Vec<Value> {
        self.all_frames()
            .into_iter()
            .map(|(_, f)| f)
            .filter(|f| frame_type(f) == ty)
            .collect()
    }

    /// Wait (across reconnects) for the first frame, on any connection, that
    /// matches `pred`; returns it. Frames received earlier count too.
    pub async fn wait_for_frame(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let found = self
            .shared
            .wait(timeout, || {
                let frames = self.shared.frames.lock().unwrap();
                frames.iter().map(|(_, f)| f).find(|f| pred(f)).cloned()
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "fake backend: no matching frame within {timeout:?}; frames so far:\n{}",
                self.describe_frames()
            )
        })
    }

    /// Wait (across reconnects) until `pred` holds for all frames received so
    /// far (see [`FakeBackend::all_frames`]); returns them. `what` names the
    /// condition in the panic message.
    pub async fn wait_for_frames(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&[(usize, Value)]) -> bool,
    ) -> Vec<(usize, Value)> {
        let found = self
            .shared
            .wait(timeout, || {
                let frames = self.all_frames();
                pred(&frames).then_some(frames)
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "fake backend: timed out after {timeout:?} waiting for {what}; frames so far:\n{}",
                self.describe_frames()
            )
        })
    }

    fn describe_upgrades(&self) -> String {
        let ups = self.upgrades();
        if ups.is_empty() {
            return "none".into();
        }
        ups.iter()
            .map(|u| {
                format!(
                    "#{} {} -> {} (authorization: {:?})",
                    u.index, u.path, u.status, u.authorization
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn describe_frames(&self) -> String {
        self.all_frames()
            .iter()
            .map(|(c, f)| format!("  conn {c}: {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every
        // connection task (and so closes every socket).
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    conn_tx: mpsc::UnboundedSender<Conn>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tasks.spawn(serve_tcp(stream, shared.clone(), conn_tx.clone()));
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

// ─────────────────────────────────────────────────────────── connection ──

enum Cmd {
    /// Messages written back to back and flushed once (one TCP write for a
    /// burst, so the daemon reads them together).
    Send(Vec<Message>, oneshot::Sender<Result<(), String>>),
    Close(u16, String),
}

enum Event {
    Frame(Value),
    Closed(Closed),
}

/// One accepted WebSocket connection, driven by the test.
pub struct Conn {
    /// 0-based, in accept order (rejected upgrades not counted).
    pub index: usize,
    /// The upgrade request of this connection.
    pub upgrade: Upgrade,
    /// The `hello` frame the server sent first, if any.
    pub hello: Option<Value>,
    cmds: mpsc::UnboundedSender<Cmd>,
    events: mpsc::UnboundedReceiver<Event>,
    log: Arc<Mutex<Vec<Value>>>,
    pongs: Arc<Mutex<Vec<Vec<u8>>>>,
    closed: Option<Closed>,
    shared: Arc<Shared>,
}

impl Conn {
    /// Next frame from the daemon (parsed JSON; a text message that is not
    /// JSON comes back as a JSON string, a binary one as
    /// `{"binary": <lossy text>}`). Panics on timeout or when the socket closes.
    pub async fn recv(&mut self, timeout: Duration) -> Value {
        self.recv_matching(
            timeout,
            &format!("any frame on conn {}", self.index),
            |_| true,
        )
        .await
    }

    /// Like [`Conn::recv`] but `None` on timeout or close (for "nothing is
    /// sent" checks).
    pub async fn try_recv(&mut self, timeout: Duration) -> Option<Value> {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(Event::Frame(v))) => Some(v),
            Ok(Some(Event::Closed(c))) => {
                self.closed = Some(c);
                None
            }
            Ok(None) | Err(_) => None,
        }
    }

    /// Skip frames until one of type `ty` arrives and return it. Skipped
    /// frames stay in [`Conn::frames`].
    pub async fn recv_type(&mut self, ty: &str, timeout: Duration) -> Value {
        self.recv_matching(timeout, &format!("a {ty:?} frame"), |f| frame_type(f) == ty)
            .await
    }

    /// Skip frames until one matches `pred` and return it. Skipped frames stay
    /// in [`Conn::frames`]. Panics (naming `what`) on timeout or close.
    pub async fn recv_matching(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Frame(v))) => {
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(Some(Event::Closed(c))) => {
                    let msg = format!(
                        "fake backend conn {}: socket closed ({c:?}) while waiting for {what}; frames received:\n{}",
                        self.index,
                        self.describe()
                    );
                    self.closed = Some(c);
                    panic!("{msg}");
                }
                Ok(None) => panic!(
                    "fake backend conn {}: connection gone (already closed, or backend dropped) while waiting for {what}; frames received:\n{}",
                    self.index,
                    self.describe()
                ),
                Err(_) => panic!(
                    "fake backend conn {}: timed out after {timeout:?} waiting for {what}; frames received:\n{}",
                    self.index,
                    self.describe()
                ),
            }
        }
    }

    /// Everything the daemon sent on this connection so far, in order
    /// (whether or not it was consumed by `recv*`).
    pub fn frames(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }

    /// Send a JSON frame (as one text message). Panics if the connection is gone.
    pub async fn send(&mut self, frame: Value) {
        self.send_message(Message::text(frame.to_string())).await;
    }

    /// Send JSON frames back to back with a single flush.
    pub async fn send_burst(&mut self, frames: &[Value]) {
        let msgs = frames
            .iter()
            .map(|f| Message::text(f.to_string()))
            .collect();
        self.send_messages(msgs).await;
    }

    /// SSE only: these bytes on the event stream as one TCP write (an event
    /// split across reads, comments, ...). Over WebSocket a binary message.
    pub async fn send_stream_bytes(&mut self, bytes: &[u8]) {
        self.send_message(Message::Binary(bytes.to_vec().into()))
            .await;
    }

    /// Send arbitrary text (invalid JSON, a non-object, ...).
    pub async fn send_raw(&mut self, text: &str) {
        self.send_message(Message::text(text.to_string())).await;
    }

    /// Send a WebSocket-level Ping with `data` and wait for the matching Pong.
    /// `false` if none came within `timeout`.
    pub async fn ws_ping(&mut self, data: &[u8], timeout: Duration) -> bool {
        self.send_message(Message::Ping(data.to_vec().into())).await;
        let pongs = self.pongs.clone();
        self.shared
            .wait(timeout, || {
                pongs
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|p| p == data)
                    .then_some(())
            })
            .await
            .is_some()
    }

    async fn send_message(&mut self, msg: Message) {
        self.send_messages(vec![msg]).await;
    }

    /// Send a frame the daemon may refuse by closing the connection (an
    /// oversized one): whether it was sent whole.
    pub async fn try_send(&mut self, frame: Value) -> Result<(), String> {
        self.try_send_messages(vec![Message::text(frame.to_string())])
            .await
    }

    /// Like [`Conn::send_burst`], but whether it was sent instead of a
    /// panic (the daemon may be gone).
    pub async fn try_send_burst(&mut self, frames: &[Value]) -> Result<(), String> {
        let msgs = frames
            .iter()
            .map(|f| Message::text(f.to_string()))
            .collect();
        self.try_send_messages(msgs).await
    }

    async fn try_send_messages(&mut self, msgs: Vec<Message>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Send(msgs, tx)).is_err() {
            return Err("connection task ended".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("connection task ended".into()))
    }

    async fn send_messages(&mut self, msgs: Vec<Message>) {
        let result = self.try_send_messages(msgs).await;
        if let Err(e) = result {
            panic!(
                "fake backend conn {}: send failed: {e} (closed: {:?})",
                self.index, self.closed
            );
        }
    }

    /// Clean close with code 1000: sends a Close frame and waits (up to 5 s)
    /// for the daemon's reply, then drops the connection.
    pub async fn close(self) {
        self.close_with(1000, "").await;
    }

    /// Like [`Conn::close`] with a chosen close code and reason.
    pub async fn close_with(mut self, code: u16, reason: &str) {
        if self.closed.is_some() || self.cmds.send(Cmd::Close(code, reason.into())).is_err() {
            return;
        }
        let _ = self.closed(CLOSE_HANDSHAKE_TIMEOUT).await;
    }

    /// Drop the TCP connection without a close frame.
    pub fn drop_abruptly(self) {
        drop(self);
    }

    /// `true` if the socket is (or becomes, within `timeout`) closed by the
    /// daemon, with or without a close frame. Frames still pending are
    /// consumed (they stay in [`Conn::frames`]).
    pub async fn closed(&mut self, timeout: Duration) -> bool {
        if self.closed.is_some() {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Frame(_))) => {}
                Ok(Some(Event::Closed(c))) => {
                    self.closed = Some(c);
                    return true;
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// How the connection ended, once [`Conn::closed`] (or a `recv*`) saw it.
    pub fn close_info(&self) -> Option<Closed> {
        self.closed.clone()
    }

    fn describe(&self) -> String {
        let frames = self.frames();
        if frames.is_empty() {
            return "  (none)".into();
        }
        frames
            .iter()
            .map(|f| format!("  {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn serve_tcp(stream: TcpStream, shared: Arc<Shared>, conn_tx: mpsc::UnboundedSender<Conn>) {
    if http1::is_websocket(&stream).await {
        serve_connection(stream, shared, conn_tx).await;
    } else {
        sse::serve(stream, shared, conn_tx).await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    conn_tx: mpsc::UnboundedSender<Conn>,
) {
    let config = shared.config.lock().unwrap().clone();
    let mut upgrade = None;
    // The Result type is dictated by tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let up = record_upgrade(&shared, &config, req);
        let status = up.status;
        upgrade = Some(up);
        if status == 101 {
            Ok(resp)
        } else {
            let mut err = ErrorResponse::new(Some(format!("fake backend: rejected with {status}")));
            *err.status_mut() = http::StatusCode::from_u16(status).expect("valid HTTP status");
            Err(err)
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let upgrade = upgrade.expect("upgrade recorded by the handshake callback");
    let hello = if config.send_hello {
        let hello = hello(&config.host_id, json!([]));
        if ws.send(Message::text(hello.to_string())).await.is_err() {
            return;
        }
        Some(hello)
    } else {
        None
    };

    let index = shared.accepted.fetch_add(1, Ordering::SeqCst);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let pongs = Arc::new(Mutex::new(Vec::new()));
    let conn = Conn {
        index,
        upgrade,
        hello,
        cmds: cmd_tx,
        events: ev_rx,
        log: log.clone(),
        pongs: pongs.clone(),
        closed: None,
        shared: shared.clone(),
    };
    if conn_tx.send(conn).is_err() {
        return;
    }
    shared.bump();
    let io = ConnIo {
        index,
        shared,
        log,
        pongs,
        events: ev_tx,
    };
    io.run(ws, cmd_rx).await;
}

fn record_upgrade(shared: &Shared, config: &Config, req: &Request) -> Upgrade {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let status = if req.uri().path() != config.ws_path {
        404
    } else {
        match &config.auth {
            Auth::Accept => 101,
            Auth::Reject(s) => *s,
            Auth::Bearer(key) => {
                if authorization.as_deref() == Some(format!("Bearer {key}").as_str()) {
                    101
                } else {
                    401
                }
            }
        }
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    push_upgrade(shared, path, authorization, headers, status)
}

/// Record a handshake request (a WebSocket upgrade or an SSE `/ready`).
fn push_upgrade(
    shared: &Shared,
    path: String,
    authorization: Option<String>,
    headers: Vec<(String, String)>,
    status: u16,
) -> Upgrade {
    let mut ups = shared.upgrades.lock().unwrap();
    let up = Upgrade {
        index: ups.len(),
        path,
        authorization,
        headers,
        status,
    };
    ups.push(up.clone());
    drop(ups);
    shared.bump();
    up
}

/// The reading/writing side of one connection (runs in its own task).
struct ConnIo {
    index: usize,
    shared: Arc<Shared>,
    log: Arc<Mutex<Vec<Value>>>,
    pongs: Arc<Mutex<Vec<Vec<u8>>>>,
    events: mpsc::UnboundedSender<Event>,
}

impl ConnIo {
    async fn run(self, mut ws: WebSocketStream<TcpStream>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut close_frame: Option<Closed> = None;
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let v = serde_json::from_str(t.as_str())
                            .unwrap_or_else(|_| Value::String(t.to_string()));
                        self.record(v);
                    }
                    Some(Ok(Message::Binary(b))) => {
                        self.record(json!({ "binary": String::from_utf8_lossy(&b) }));
                    }
                    Some(Ok(Message::Pong(p))) => {
                        self.pongs.lock().unwrap().push(p.to_vec());
                        self.shared.bump();
                    }
                    Some(Ok(Message::Close(cf))) => {
                        // tungstenite queues the reply; keep reading until the
                        // stream ends.
                        close_frame = Some(Closed {
                            close_frame: true,
                            code: cf.as_ref().map(|f| u16::from(f.code)),
                            reason: cf.map(|f| f.reason.to_string()).unwrap_or_default(),
                        });
                    }
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                    Some(Err(_)) | None => {
                        let closed = close_frame.take().unwrap_or(Closed {
                            close_frame: false,
                            code: None,
                            reason: String::new(),
                        });
                        let _ = self.events.send(Event::Closed(closed));
                        self.shared.bump();
                        return;
                    }
                },
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Send(msgs, done)) => {
                        let mut r = Ok(());
                        for m in msgs {
                            r = r.and(ws.feed(m).await);
                        }
                        let r = r.and(ws.flush().await).map_err(|e| e.to_string());
                        let _ = done.send(r);
                    }
                    Some(Cmd::Close(code, reason)) => {
                        let _ = ws
                            .close(Some(CloseFrame {
                                code: CloseCode::from(code),
                                reason: reason.into(),
                            }))
                            .await;
                    }
                    // The Conn was dropped: drop the socket without a close frame.
                    None => return,
                },
            }
        }
    }

    fn record(&self, v: Value) {
        record_frame(&self.shared, self.index, &self.log, &self.events, v);
    }
}

/// A frame from the daemon on connection `index`: in its log, in the
/// backend's, and to the test.
fn record_frame(
    shared: &Shared,
    index: usize,
    log: &Mutex<Vec<Value>>,
    events: &mpsc::UnboundedSender<Event>,
    v: Value,
) {
    log.lock().unwrap().push(v.clone());
    shared.frames.lock().unwrap().push((index, v.clone()));
    let _ = events.send(Event::Frame(v));
    shared.bump();
}

// ─────────────────────────────────────────────────────────────── frames ──

/// `frm_` + 16 lowercase hex chars (§1.1).
pub fn frame_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("frm_{}", &hex[..16])
}

/// UTC ISO-8601 with microseconds and `+00:00`.
pub fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// `{"v":1,"type":ty,"id":"frm_…","ts":"…","payload":payload}` (no `seq`).
pub fn frame(ty: &str, payload: Value) -> Value {
    json!({ "v": 1, "type": ty, "id": frame_id(), "ts": now_ts(), "payload": payload })
}

/// A `deliver` envelope per §1.4 with frame-level `seq`. Add optional keys
/// with e.g. `d["payload"]["wake_id"] = json!("wk_1")`.
pub fn deliver(seq: i64, agent_id: &str, message_id: &str, body: &str) -> Value {
    json!({
        "v": 1,
        "type": "deliver",
        "id": frame_id(),
        "ts": now_ts(),
        "seq": seq,
        "payload": {
            "agent_id": agent_id,
            "session_id": "sess_1",
            "message_id": message_id,
            "kind": "task",
            "body": body,
            "sender": "user",
            "target": agent_id,
            "from": "user",
            "dispatch_source": "user_direct",
        },
    })
}

/// The `hello` the server sends first.
pub fn hello(host_id: &str, agents: Value) -> Value {
    frame("hello", json!({ "host_id": host_id, "agents": agents }))
}

/// App-level `ping` (the daemon must answer `pong`).
pub fn ping() -> Value {
    frame("ping", json!({}))
}

/// A successful `tool_result` for `request_id`.
pub fn tool_result_ok(request_id: &str, data: Value) -> Value {
    frame(
        "tool_result",
        json!({ "request_id": request_id, "ok": true, "data": data }),
    )
}

/// A failed `tool_result` for `request_id`.
pub fn tool_result_err(request_id: &str, code: &str, message: &str) -> Value {
    frame(
        "tool_result",
        json!({ "request_id": request_id, "ok": false, "error": { "code": code, "message": message } }),
    )
}

/// `type` of a frame (`""` if missing).
pub fn frame_type(frame: &Value) -> &str {
    frame.get("type").and_then(Value::as_str).unwrap_or("")
}
