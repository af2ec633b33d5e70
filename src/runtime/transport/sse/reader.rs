//! The receiving half: `GET /v1/daemon/stream`, parsed into frames.

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};

use super::parser::{Item, Parser};
use crate::runtime::transport::{Event, FrameReader, FrameText};

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub struct Reader {
    body: Body,
    parser: Parser,
    items: VecDeque<Item>,
    /// Set once the stream failed: every later call says so.
    ended: Option<Event>,
}

impl Reader {
    pub fn new(response: reqwest::Response, max_frame: usize) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::new(max_frame),
            items: VecDeque::new(),
            ended: None,
        }
    }

    /// The next parsed item as an event, if one is waiting.
    fn pop(&mut self) -> Option<Event> {
        while let Some(item) = self.items.pop_front() {
            match item {
                // An event without data was already left out by the parser;
                // an empty data line is not a frame either.
                Item::Event(e) if e.data.trim().is_empty() => return Some(Event::Alive),
                Item::Event(e) => return Some(Event::Frame(FrameText::Owned(e.data))),
                Item::Comment => return Some(Event::Alive),
                // The daemon's own backoff decides when to reconnect.
                Item::Retry(_) => {}
            }
        }
        None
    }

    /// Feed one read of the body to the parser; `Some` when the stream is over.
    fn on_chunk(&mut self, chunk: Option<reqwest::Result<Bytes>>) -> Option<Event> {
        let end = match chunk {
            None => Event::Closed("the server ended the event stream".into()),
            Some(Err(e)) => Event::Closed(format!("the event stream failed: {e}")),
            Some(Ok(bytes)) => match self.parser.feed(&bytes, &mut self.items) {
                Ok(()) => return None,
                Err(too) => Event::TooLarge {
                    size: too.size,
                    max: too.max,
                },
            },
        };
        self.ended = Some(end.clone());
        Some(end)
    }
}

impl FrameReader for Reader {
    async fn next(&mut self) -> Event {
        loop {
            if let Some(e) = self.pop() {
                return e;
            }
            if let Some(end) = &self.ended {
                return end.clone();
            }
            let chunk = self.body.next().await;
            if let Some(end) = self.on_chunk(chunk) {
                return end;
            }
        }
    }

    fn next_now(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pop() {
                return Some(e);
            }
            if let Some(end) = &self.ended {
                return Some(end.clone());
            }
            let chunk = self.body.next().now_or_never()?;
            if let Some(end) = self.on_chunk(chunk) {
                return Some(end);
            }
        }
    }
}
