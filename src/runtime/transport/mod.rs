//! How frames travel between daemon and backend. The session
//! (`runtime::session`) is written against [`FrameReader`] and
//! [`FrameWriter`]; each transport implements them: `ws` (one WebSocket
//! both ways) and `sse` (an event stream in, one POST per frame out). What is not transport — delivery, acks, wakes, tool calls,
//! the outbox — is shared (docs/PROTOCOL.md, "Transports").

pub mod sse;
pub mod tls;
pub mod ws;

use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use tls::ConnectError;

use crate::runtime::delivery::outbox::Outbox;

/// One frame's JSON text, as the transport received it (not copied).
#[derive(Clone)]
pub enum FrameText {
    Ws(Utf8Bytes),
    Owned(String),
}

impl FrameText {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ws(t) => t.as_str(),
            Self::Owned(s) => s,
        }
    }
}

/// What the receiving side of a connection yields.
#[derive(Clone)]
pub enum Event {
    Frame(FrameText),
    /// No frame, but the server is alive (an SSE comment such as `:hb`):
    /// it keeps the watchdog quiet.
    Alive,
    /// The connection ended, and why.
    Closed(String),
    /// The backend sent a frame over the size limit; the transport cannot
    /// go on (over WebSocket the library refuses it from its header, so its
    /// seq is unknown: it can be neither acknowledged nor skipped).
    TooLarge {
        size: usize,
        max: usize,
    },
}

/// The receiving half of a connection.
pub(crate) trait FrameReader {
    /// The next frame, or why the connection ended.
    async fn next(&mut self) -> Event;
    /// A frame that has already arrived, without waiting (so a burst is
    /// handled as one batch).
    fn next_now(&mut self) -> Option<Event>;
}

/// The sending half of a connection. Frames go through the outbox, which
/// survives the connection; a writer takes them out once they are sent.
pub(crate) trait FrameWriter {
    /// Answer the server's application ping.
    async fn pong(&mut self) -> Result<(), String>;
    /// Send every frame queued now, in order.
    async fn flush(&mut self, outbox: &Outbox) -> Result<(), String>;
    /// Wait for the next queued frame and send it.
    async fn send_next(&mut self, outbox: &Outbox) -> Result<(), String>;
    /// Say goodbye, as far as the transport can; a frame the server is
    /// taking right now is given a moment to arrive (and is then popped).
    async fn close(&mut self, why: &str, outbox: &Outbox);
}
