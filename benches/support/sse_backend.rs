//! The SSE + POST side of the bench backend (docs/PROTOCOL.md, "SSE +
//! POST"), over plain TCP or TLS: `POST /ready` is answered at once, the
//! `GET /stream` becomes the connection's sending half, and each frame POST
//! is counted in the ledger and answered `200 {}` as soon as its body is
//! read. Lean like the WebSocket side: a hand-written HTTP/1.1 reader, no
//! recording.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::backend::{Frame, Ledger};

/// Where a session's pieces go: frames to the bench, the stream's writer
/// to its `Conn`.
#[derive(Clone)]
pub struct Sinks {
    pub frames: mpsc::UnboundedSender<Frame>,
    pub streams: mpsc::UnboundedSender<mpsc::UnboundedSender<Vec<u8>>>,
    pub ledger: Arc<Mutex<Ledger>>,
}

/// Accept connections (TLS when `tls` is given) until the bench ends.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, sinks: Sinks) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let sinks = sinks.clone();
        match tls.clone() {
            None => {
                tokio::spawn(connection(tcp, sinks));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    if let Ok(s) = acceptor.accept(tcp).await {
                        connection(s, sinks).await;
                    }
                });
            }
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.ok()?;
    Some(Request { method, path, body })
}

async fn respond<S: AsyncWrite + Unpin>(w: &mut S, status: u16, body: &str) -> bool {
    let text = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    w.write_all(text.as_bytes()).await.is_ok() && w.flush().await.is_ok()
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(io: S, sinks: Sinks) {
    let mut io = BufReader::new(io);
    while let Some(req) = read_request(&mut io).await {
        let answer = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/daemon/stream") => return stream(io, &sinks).await,
            ("POST", "/v1/daemon/ready") => {
                pass(&sinks, "ready", &Value::Null);
                json!({"host_id": "host_bench", "last_acked_seq": 0, "agents": []}).to_string()
            }
            ("POST", path) => {
                let ty = path.trim_start_matches("/v1/daemon/").replace('-', "_");
                if ty != "heartbeat" {
                    let payload = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                    pass(&sinks, &ty, &payload);
                }
                "{}".to_string()
            }
            _ => String::new(),
        };
        if !respond(io.get_mut(), 200, &answer).await {
            return;
        }
    }
}

/// A frame of type `ty` the daemon POSTed: counted, then handed on.
fn pass(sinks: &Sinks, ty: &str, payload: &Value) {
    let s = |p: &Value| p.as_str().unwrap_or_default().to_string();
    let f = Frame {
        ty: ty.to_string(),
        status: s(&payload["status"]),
        message_id: s(&payload["message_id"]),
        request_id: s(&payload["request_id"]),
        agent_id: s(&payload["agent_id"]),
        at: Instant::now(),
    };
    sinks
        .ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .frame(&f);
    let _ = sinks.frames.send(f);
}

/// The event stream: what the bench sends, written as it comes, until
/// either side ends it. Its opening stands for `resume` (the stream's
/// `Last-Event-ID` replaces it over SSE).
async fn stream<S: AsyncRead + AsyncWrite + Unpin>(mut io: BufReader<S>, sinks: &Sinks) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nconnection: close\r\n\r\n";
    if io.get_mut().write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let _ = io.get_mut().flush().await;
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    if sinks.streams.send(tx).is_err() {
        return;
    }
    pass(sinks, "resume", &Value::Null);
    let (mut r, mut w) = tokio::io::split(io);
    let mut probe = [0u8; 64];
    let why = loop {
        tokio::select! {
            bytes = rx.recv() => match bytes {
                Some(b) => {
                    if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                        break "stream write failed";
                    }
                }
                None => break "stream dropped by the bench",
            },
            n = r.read(&mut probe) => if matches!(n, Ok(0) | Err(_)) {
                break "stream closed by the daemon";
            },
        }
    };
    sinks
        .ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .closed = Some((why.into(), Instant::now()));
}
