//! The WebSocket transport (docs/PROTOCOL.md, "WebSocket"): one socket to
//! `<server>/v1/daemon/ws` carrying envelope frames both ways, with
//! `Authorization: Bearer` on the upgrade.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::tls::{self, ConnectError};
use super::{Event, FrameReader, FrameText, FrameWriter};
use crate::config::Secret;
use crate::protocol::Outbound;
use crate::runtime::delivery::outbox::Outbox;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The receiving half of a connected socket (generic so that tests can run
/// it over an in-memory pipe).
pub struct Reader<S = MaybeTlsStream<TcpStream>> {
    stream: SplitStream<WebSocketStream<S>>,
}

pub struct Writer<S = MaybeTlsStream<TcpStream>> {
    sink: SplitSink<WebSocketStream<S>, Message>,
}

/// Split an open socket into the halves the session uses.
pub fn split<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocketStream<S>) -> (Reader<S>, Writer<S>) {
    let (sink, stream) = ws.split();
    (Reader { stream }, Writer { sink })
}

/// `wss://…/v1/daemon/ws` from the server URL (PROTOCOL §1.5).
pub fn url(server_url: &str) -> String {
    let url = server_url.trim_end_matches('/');
    let url = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    };
    format!("{url}/v1/daemon/ws")
}

/// Open the socket: upgrade with the key, bounded by `max_frame` bytes per
/// message.
pub async fn connect(
    url: &str,
    key: &Secret,
    insecure: bool,
    max_frame: usize,
) -> Result<(Reader, Writer), ConnectError> {
    let other = |detail: String| ConnectError::Other {
        url: url.to_string(),
        detail,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| other(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        // The error would quote the key: say only what is wrong.
        .map_err(|_| {
            other("the API key contains characters not allowed in an HTTP header".into())
        })?;
    request.headers_mut().insert("Authorization", auth);
    let host = request.uri().host().unwrap_or_default().to_string();
    let connector = Some(Connector::Rustls(Arc::new(
        tls::config_for(url, insecure).map_err(|e| other(e.to_string()))?,
    )));
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    let ws = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Err(_) => return Err(other(format!("timed out after {CONNECT_TIMEOUT:?}"))),
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return Err(upgrade_error(url, &host, e)),
    };
    Ok(split(ws))
}

fn upgrade_error(url: &str, host: &str, e: tungstenite::Error) -> ConnectError {
    let other = |detail: String| ConnectError::Other {
        url: url.to_string(),
        detail,
    };
    match e {
        tungstenite::Error::Http(resp) => match resp.status().as_u16() {
            code @ (401 | 403) => ConnectError::Auth(code),
            status => ConnectError::Status {
                url: url.to_string(),
                status,
            },
        },
        tungstenite::Error::Io(e) => match tls::rustls_error(&e) {
            Some(err) => tls::tls_error(url, host, err),
            None if cut(e.kind()) => ConnectError::UpgradeCut {
                url: url.to_string(),
                detail: e.to_string(),
            },
            None => other(e.to_string()),
        },
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HandshakeIncomplete)
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => ConnectError::UpgradeCut {
            url: url.to_string(),
            detail: e.to_string(),
        },
        tungstenite::Error::Tls(tungstenite::error::TlsError::Rustls(err)) => {
            tls::tls_error(url, host, &err)
        }
        e => other(e.to_string()),
    }
}

/// An I/O error that means the peer hung up on an open connection (not
/// that nobody listens: a refused connection is not a cut upgrade).
fn cut(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameReader for Reader<S> {
    /// The next text frame, or why the connection ended. Control frames
    /// are answered by tungstenite; binary frames are not part of the
    /// protocol and skipped.
    async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = convert(self.stream.next().await) {
                return event;
            }
        }
    }

    fn next_now(&mut self) -> Option<Event> {
        loop {
            match self.stream.next().now_or_never() {
                None => return None,
                Some(msg) => {
                    if let Some(event) = convert(msg) {
                        return Some(event);
                    }
                }
            }
        }
    }
}

/// `None`: a message that is not a frame (ping, pong, binary).
fn convert(msg: Option<Result<Message, tungstenite::Error>>) -> Option<Event> {
    Some(match msg {
        None => Event::Closed("the server closed the connection".into()),
        Some(Err(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong { size, max_size },
        ))) => Event::TooLarge {
            size,
            max: max_size,
        },
        Some(Err(e)) => Event::Closed(e.to_string()),
        Some(Ok(Message::Text(t))) => Event::Frame(FrameText::Ws(t)),
        Some(Ok(Message::Close(frame))) => Event::Closed(format!(
            "the server closed the connection ({})",
            frame
                .map(|f| f.code.to_string())
                .unwrap_or_else(|| "no code".into())
        )),
        Some(Ok(_)) => return None,
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Writer<S> {
    /// Send a frame of the handshake (`ready`, `resume`).
    pub async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.sink
            .send(Message::text(text))
            .await
            .map_err(|e| format!("sending failed: {e}"))
    }

    async fn send(&mut self, frame: &Outbound) -> Result<(), String> {
        self.send_text(frame.envelope()).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameWriter for Writer<S> {
    async fn pong(&mut self) -> Result<(), String> {
        self.send(&Outbound::Pong).await
    }

    async fn flush(&mut self, outbox: &Outbox) -> Result<(), String> {
        let result: Result<(), tungstenite::Error> = async {
            while let Some(frame) = outbox.front_now() {
                self.sink.feed(Message::text(frame.envelope())).await?;
                outbox.pop();
            }
            self.sink.flush().await
        }
        .await;
        result.map_err(|e| format!("sending failed: {e}"))
    }

    async fn send_next(&mut self, outbox: &Outbox) -> Result<(), String> {
        let frame = outbox.front().await;
        self.send(&frame).await?;
        outbox.pop();
        Ok(())
    }

    async fn close(&mut self, why: &str, _outbox: &Outbox) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: why.to_string().into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keeps_the_path_prefix() {
        assert_eq!(
            url("https://api.x/prefix"),
            "wss://api.x/prefix/v1/daemon/ws"
        );
        assert_eq!(
            url("http://127.0.0.1:80/"),
            "ws://127.0.0.1:80/v1/daemon/ws"
        );
    }

    #[tokio::test]
    async fn a_server_without_tls_is_not_called_a_certificate_problem() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let url = format!("wss://127.0.0.1:{port}/v1/daemon/ws");
        let err = connect(&url, &Secret::new("sk_machine_x"), false, 1 << 20)
            .await
            .err()
            .unwrap();
        server.await.unwrap();
        let text = err.to_string();
        assert!(matches!(err, ConnectError::Other { .. }), "{err:?}");
        assert!(text.contains("TLS handshake failed"), "{text}");
        assert!(text.contains("does not seem to speak TLS"), "{text}");
        assert!(!text.contains("insecure"), "{text}");
    }
}
