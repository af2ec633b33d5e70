//! An incremental `text/event-stream` parser (docs/PROTOCOL.md, "SSE +
//! POST"): fed the body in whatever chunks TCP delivers, it yields complete
//! events. Lines end in CRLF, LF or CR (a CR at the end of one chunk and an
//! LF at the start of the next are one line end); `data:` lines are joined
//! with `\n`; `:` lines are comments (the server's `:hb` keep-alive).
//!
//! Ours rather than a crate's: it must be bounded. An event bigger than the
//! frame limit (`max_frame_mib`) is refused as soon as it grows past it,
//! like an oversized WebSocket message, instead of buffering without end.

use std::collections::VecDeque;

/// One parsed item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(SseEvent),
    /// A comment line (`:hb`): the server is alive.
    Comment,
    /// The server's `retry:` reconnection delay, in milliseconds.
    Retry(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:`; `None` when absent (the default type, "message").
    pub name: Option<String>,
    /// The `id:` of this event, if it had one.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An event larger than the limit: the stream cannot go on (its id is not
/// known yet, so it can be neither acknowledged nor skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// Bytes of the event seen so far (at least this big).
    pub size: usize,
    pub max: usize,
}

pub struct Parser {
    /// The current line, not yet ended.
    line: Vec<u8>,
    /// The last byte fed was a CR: an LF right after it ends nothing.
    after_cr: bool,
    /// Still at the very start of the stream (a UTF-8 BOM is skipped).
    at_start: bool,
    data: String,
    has_data: bool,
    name: Option<String>,
    id: Option<String>,
    /// Bytes of the current event so far (its ended lines).
    event_bytes: usize,
    max: usize,
}

impl Parser {
    /// A parser refusing events over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            has_data: false,
            name: None,
            id: None,
            event_bytes: 0,
            max,
        }
    }

    /// Parse a chunk; complete items are appended to `out`. After an
    /// error the parser must not be fed again.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut VecDeque<Item>) -> Result<(), TooLarge> {
        if self.at_start {
            chunk = self.skip_bom(chunk);
        }
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.grow(chunk)?;
                    return Ok(());
                }
                Some(at) => {
                    self.grow(&chunk[..at])?;
                    self.after_cr = chunk[at] == b'\r';
                    chunk = &chunk[at + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&line, out);
                    self.line = line;
                    self.line.clear();
                }
            }
        }
        Ok(())
    }

    /// A BOM may only open the stream; it may itself arrive in pieces.
    fn skip_bom<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let seen = self.line.len();
        let take = (BOM.len() - seen).min(chunk.len());
        if BOM[..seen] == self.line[..] && BOM[seen..seen + take] == chunk[..take] {
            if seen + take == BOM.len() {
                self.line.clear();
                self.at_start = false;
                return &chunk[take..];
            }
            // A prefix of the BOM so far: hold it until we know.
            self.line.extend_from_slice(&chunk[..take]);
            return &chunk[take..];
        }
        self.at_start = false;
        chunk
    }

    fn grow(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        let size = self.event_bytes + self.line.len() + bytes.len();
        if size > self.max {
            return Err(TooLarge {
                size,
                max: self.max,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn on_line(&mut self, line: &[u8], out: &mut VecDeque<Item>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            out.push_back(Item::Comment);
            return;
        }
        self.event_bytes += line.len() + 1;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.name = Some(value.into_owned()),
            // An id with NUL is ignored (the SSE standard).
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            b"retry" => {
                if let Ok(ms) = value.parse::<u64>()
                    && value.bytes().all(|b| b.is_ascii_digit())
                {
                    out.push_back(Item::Retry(ms));
                }
            }
            // Unknown fields are ignored (the SSE standard).
            _ => {}
        }
    }

    /// A blank line ends the event. One without data is no event, but its
    /// lines still showed the server is alive.
    fn dispatch(&mut self, out: &mut VecDeque<Item>) {
        let name = self.name.take();
        let id = self.id.take();
        let had_lines = self.event_bytes > 0;
        self.event_bytes = 0;
        if !self.has_data {
            if had_lines {
                out.push_back(Item::Comment);
            }
            return;
        }
        self.has_data = false;
        out.push_back(Item::Event(SseEvent {
            name,
            id,
            data: std::mem::take(&mut self.data),
        }));
    }
}

#[cfg(test)]
mod tests;
