//! A lean backend for the daemon bench, WebSocket here and SSE + POST in
//! `sse_backend.rs` (no recording, minimal
//! parsing, so the harness adds as little as possible to what is measured),
//! with a ledger that counts every ack, wake start and final status as it
//! arrives. The benches read what the ledger holds at their deadline; they
//! never wait for a count to come right (README.md, "Benchmarks").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The daemon's watchdog drops a connection silent for 40 s; a real backend
/// pings every 30 s. A wait pings after this much silence.
const KEEPALIVE: Duration = Duration::from_secs(5);

pub const PING: &str = r#"{"v":1,"type":"ping","id":"p","ts":"t","payload":{}}"#;

/// A received frame, reduced to what the measurements need, with the time
/// the reader task got it.
pub struct Frame {
    pub ty: String,
    pub status: String,
    pub message_id: String,
    pub request_id: String,
    pub agent_id: String,
    pub at: Instant,
}

fn reduce(text: &str, at: Instant) -> Frame {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let s = |p: &Value| p.as_str().unwrap_or_default().to_string();
    Frame {
        ty: s(&v["type"]),
        status: s(&v["payload"]["status"]),
        message_id: s(&v["payload"]["message_id"]),
        request_id: s(&v["payload"]["request_id"]),
        agent_id: s(&v["payload"]["agent_id"]),
        at,
    }
}

/// Counts for one group of message ids (the part before the first `-`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Deliver frames sent (a redelivery counts again).
    pub sent: usize,
    /// Distinct message ids sent.
    pub ids: usize,
    /// `received` acks that match a deliver sent.
    pub acked: usize,
    /// `received` acks beyond the number of delivers of that id.
    pub dup_acks: usize,
    /// Distinct ids whose wake started (a `started` ack).
    pub started: usize,
    /// `started` acks beyond the first for an id: a message run twice.
    pub dup_starts: usize,
    /// When the latest `received` ack of the group arrived.
    pub last_ack: Option<Instant>,
}

impl Tally {
    /// Delivers without their ack when the tally was read.
    pub fn lost(&self) -> usize {
        self.sent - self.acked
    }
}

#[derive(Default)]
pub struct Ledger {
    sent: HashMap<String, usize>,
    acked: HashMap<String, usize>,
    started: HashMap<String, usize>,
    groups: HashMap<String, Tally>,
    /// Final `agent_status` frames (not `running`) per agent.
    pub finals: HashMap<String, usize>,
    /// Why the connection ended, once it has, and when.
    pub closed: Option<(String, Instant)>,
}

fn group(id: &str) -> &str {
    id.split('-').next().unwrap_or(id)
}

impl Ledger {
    fn sent(&mut self, id: &str) {
        let n = self.sent.entry(id.to_string()).or_default();
        *n += 1;
        let first = *n == 1;
        let g = self.groups.entry(group(id).to_string()).or_default();
        g.sent += 1;
        g.ids += usize::from(first);
    }

    pub fn frame(&mut self, f: &Frame) {
        match (f.ty.as_str(), f.status.as_str()) {
            ("delivery_ack", "received") => {
                let n = self.acked.entry(f.message_id.clone()).or_default();
                *n += 1;
                let sent = self.sent.get(&f.message_id).copied().unwrap_or(0);
                let g = self
                    .groups
                    .entry(group(&f.message_id).to_string())
                    .or_default();
                if *n > sent {
                    g.dup_acks += 1;
                } else {
                    g.acked += 1;
                }
                g.last_ack = Some(f.at);
            }
            ("delivery_ack", "started") => {
                let n = self.started.entry(f.message_id.clone()).or_default();
                *n += 1;
                let g = self
                    .groups
                    .entry(group(&f.message_id).to_string())
                    .or_default();
                match *n {
                    1 => g.started += 1,
                    _ => g.dup_starts += 1,
                }
            }
            ("agent_status", s) if s != "running" => {
                *self.finals.entry(f.agent_id.clone()).or_default() += 1;
            }
            _ => {}
        }
    }

    pub fn tally(&self, group: &str) -> Tally {
        self.groups.get(group).copied().unwrap_or_default()
    }

    pub fn finals_total(&self) -> usize {
        self.finals.values().sum()
    }
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// How frames reach the daemon.
enum Tx {
    Ws(Sink),
    /// The open event stream of an SSE session.
    Sse(mpsc::UnboundedSender<Vec<u8>>),
}

/// One connection from the daemon, after the handshake.
pub struct Conn {
    tx: Tx,
    frames: mpsc::UnboundedReceiver<Frame>,
    ledger: Arc<Mutex<Ledger>>,
    /// When the last frame arrived (or a keepalive ping left).
    last_frame: Instant,
}

pub fn deliver(seq: i64, agent: &str, id: &str, body: &str) -> String {
    json!({"v":1,"type":"deliver","id":"frm_b","ts":"t","seq":seq,
           "payload":{"agent_id":agent,"session_id":"sess_1","message_id":id,"body":body,"from":"user"}})
    .to_string()
}

impl Conn {
    /// Accept the daemon's connection, say `hello`, and wait for its
    /// `resume`, all before `deadline`.
    pub async fn accept(listener: &TcpListener, deadline: Instant) -> Result<Conn, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let (tcp, _) = tokio::time::timeout(left, listener.accept())
            .await
            .map_err(|_| "the daemon did not connect before the deadline".to_string())?
            .map_err(|e| format!("accept: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let ws = tokio_tungstenite::accept_async(tcp)
            .await
            .map_err(|e| format!("WebSocket upgrade: {e}"))?;
        let (mut tx, rx) = ws.split();
        let hello =
            json!({"v":1,"type":"hello","id":"frm_h","ts":"t","payload":{"host_id":"host_bench"}});
        tx.send(Message::text(hello.to_string()))
            .await
            .map_err(|e| format!("sending hello: {e}"))?;
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (ftx, frames) = mpsc::unbounded_channel();
        tokio::spawn(read(rx, ftx, ledger.clone()));
        let conn = Conn {
            tx: Tx::Ws(tx),
            frames,
            ledger,
            last_frame: Instant::now(),
        };
        conn.until_resume(deadline).await
    }

    /// Serve the SSE + POST transport on `listener` (over TLS with `tls`)
    /// and wait for the daemon's session: `/ready`, then its stream.
    pub async fn accept_sse(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        deadline: Instant,
    ) -> Result<Conn, String> {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (ftx, frames) = mpsc::unbounded_channel();
        let (streams, mut stream_rx) = mpsc::unbounded_channel();
        let sinks = crate::sse_backend::Sinks {
            frames: ftx,
            streams,
            ledger: ledger.clone(),
        };
        tokio::spawn(crate::sse_backend::serve(listener, tls, sinks));
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = tokio::time::timeout(left, stream_rx.recv())
            .await
            .ok()
            .flatten()
            .ok_or("the daemon opened no event stream before the deadline")?;
        let conn = Conn {
            tx: Tx::Sse(stream),
            frames,
            ledger,
            last_frame: Instant::now(),
        };
        conn.until_resume(deadline).await
    }

    /// Over SSE there is no ping: the latency series skips ping→pong.
    pub fn is_sse(&self) -> bool {
        matches!(self.tx, Tx::Sse(_))
    }

    async fn until_resume(mut self, deadline: Instant) -> Result<Conn, String> {
        loop {
            match self.recv_until(deadline).await {
                Some(f) if f.ty == "resume" => return Ok(self),
                Some(_) => {}
                None => return Err(format!("no resume: {}", self.why_closed())),
            }
        }
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn why_closed(&self) -> String {
        self.closed()
            .map(|(why, _)| why)
            .unwrap_or_else(|| "deadline passed".into())
    }

    /// One frame: a WebSocket text message, or an SSE event.
    pub async fn send(&mut self, text: String) -> Result<(), String> {
        match &mut self.tx {
            Tx::Ws(sink) => sink
                .send(Message::text(text))
                .await
                .map_err(|e| e.to_string()),
            Tx::Sse(stream) => stream
                .send(format!("data: {text}\n\n").into_bytes())
                .map_err(|_| "the event stream has ended".to_string()),
        }
    }

    /// What keeps a quiet connection alive: a `ping` frame, or an SSE
    /// comment.
    async fn keepalive(&mut self) {
        let _ = match &mut self.tx {
            Tx::Ws(_) => self.send(PING.to_string()).await,
            Tx::Sse(stream) => stream.send(b":hb\n\n".to_vec()).map_err(|_| String::new()),
        };
    }

    /// Send a deliver, counted in the ledger before it leaves.
    pub async fn deliver(
        &mut self,
        seq: i64,
        agent: &str,
        id: &str,
        body: &str,
    ) -> Result<(), String> {
        self.ledger().sent(id);
        self.send(deliver(seq, agent, id, body)).await
    }

    /// The next frame, or None once `deadline` has passed or the connection
    /// has ended. Pings the daemon after `KEEPALIVE` of silence.
    pub async fn recv_until(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let ping_at = self.last_frame + KEEPALIVE;
            if now >= ping_at {
                self.keepalive().await;
                self.last_frame = now;
                continue;
            }
            if let Ok(f) =
                tokio::time::timeout_at(deadline.min(ping_at).into(), self.frames.recv()).await
            {
                self.last_frame = Instant::now();
                return f;
            }
        }
    }

    /// Read frames until `done(ledger)` holds or `deadline` passes; true when
    /// it holds. The ledger is what the caller reports, either way.
    pub async fn wait(&mut self, deadline: Instant, done: impl Fn(&Ledger) -> bool) -> bool {
        while !done(&self.ledger()) {
            if self.recv_until(deadline).await.is_none() {
                return done(&self.ledger());
            }
        }
        true
    }

    /// Whether the connection has ended (the daemon closed it or it broke).
    pub fn closed(&self) -> Option<(String, Instant)> {
        self.ledger().closed.clone()
    }
}

/// The one reader task: counts each frame in the ledger, then hands it on.
async fn read(
    mut rx: futures_util::stream::SplitStream<WebSocketStream<TcpStream>>,
    ftx: mpsc::UnboundedSender<Frame>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let why = loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => {
                let f = reduce(t.as_str(), Instant::now());
                ledger.lock().unwrap_or_else(|e| e.into_inner()).frame(&f);
                let _ = ftx.send(f);
            }
            Some(Ok(Message::Close(c))) => {
                break match c {
                    Some(c) => format!("closed by the daemon: {} {:?}", c.code, c.reason.as_str()),
                    None => "closed by the daemon (no close frame payload)".into(),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("connection error: {e}"),
            None => break "connection ended".into(),
        }
    };
    ledger.lock().unwrap_or_else(|e| e.into_inner()).closed = Some((why, Instant::now()));
}
