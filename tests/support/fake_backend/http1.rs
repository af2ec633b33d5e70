//! The little HTTP/1.1 the fake backends need: one request read from a
//! connection (head and `content-length` body) and a complete answer.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The next request on a keep-alive connection; `None` at its end.
pub async fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// A whole JSON answer (`content-length` set, so the connection stays
/// usable for the next request).
pub async fn respond(tcp: &mut BufReader<TcpStream>, status: u16, body: &str) {
    let text = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.get_mut().write_all(text.as_bytes()).await;
}

/// `/v1/daemon/ws` upgrades go to the WebSocket side, everything else to
/// the SSE + POST side: peek at the request line without consuming it.
pub async fn is_websocket(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 256];
    for _ in 0..200 {
        if tcp.readable().await.is_err() {
            return true;
        }
        let n = tcp.peek(&mut buf).await.unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        if let Some(line) = head.split("\r\n").next().filter(|_| head.contains("\r\n")) {
            return !(line.starts_with("POST ") || line.starts_with("GET /v1/daemon/stream"));
        }
        if n == 0 || n == buf.len() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    true
}
