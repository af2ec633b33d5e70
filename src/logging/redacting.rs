//! The last line of defence: every line a log writer emits goes through
//! `crate::redact::secrets_bytes`, whatever produced it (our code, a
//! library, a `Debug` of a request).
//!
//! Redaction needs whole lines: a key split over two `write` calls would
//! pass unseen in either half. tracing-subscriber's fmt layer formats an
//! event into one buffer, asks the `MakeWriter` for a writer and hands it
//! the buffer with one `write_all` (fmt_layer.rs, `on_event`); a writer may
//! still see it in pieces (`write_all` retries a short write). So the
//! writer keeps what follows the last newline until the next newline or
//! until it is dropped at the end of the event.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Wraps a `MakeWriter`: each writer it makes redacts what it writes.
pub struct Redacting<M> {
    inner: M,
}

impl<M> Redacting<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer_for(meta))
    }
}

/// Passes on whole lines, redacted; keeps a partial line until its newline
/// arrives or the writer is dropped.
pub struct RedactingWriter<W: Write> {
    inner: W,
    partial: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            partial: Vec::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(&crate::redact::secrets_bytes(bytes))
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        if let Some(last) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(last + 1);
            let lines = std::mem::replace(&mut self.partial, rest);
            self.emit(&lines)?;
        }
        Ok(buf.len())
    }

    /// Flushes the complete lines; a partial one waits for the rest of
    /// its line (flushing it now could split a key).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            let _ = self.emit(&rest);
            let _ = self.inner.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::test_sink::Sink;

    #[test]
    fn a_key_split_over_writes_is_still_redacted() {
        let sink = Sink::default();
        let line = "Authorization: Bearer sk_machine_abcdef\nnext sk_machine_zz tail\n";
        // Every split point, including one inside the key and its prefix.
        for at in 0..line.len() {
            let sink = Sink::default();
            {
                let mut w = RedactingWriter::new(sink.clone());
                w.write_all(&line.as_bytes()[..at]).unwrap();
                w.write_all(&line.as_bytes()[at..]).unwrap();
            }
            let out = sink.text();
            assert!(
                !out.contains("abcdef") && !out.contains("zz"),
                "split at {at}: {out}"
            );
            assert_eq!(out.lines().count(), 2, "{out}");
        }
        // A line without its newline is written when the writer is dropped.
        {
            let mut w = RedactingWriter::new(sink.clone());
            w.write_all(b"key sk_machine_").unwrap();
            w.flush().unwrap();
            assert_eq!(sink.text(), "", "a partial line is held back");
            w.write_all(b"secret").unwrap();
        }
        assert_eq!(sink.text(), "key sk_machine_(redacted)");
    }

    #[test]
    fn fmt_layer_events_go_through_the_writer() {
        use tracing_subscriber::layer::SubscriberExt;
        let sink = Sink::default();
        let writer = sink.make_writer();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(Redacting::new(writer)),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(header = "Bearer sk_machine_k1", "request");
            tracing::warn!("key {} in a message", "sk_machine_k2");
        });
        let out = sink.text();
        assert!(
            out.contains("request") && out.contains("in a message"),
            "{out}"
        );
        assert!(!out.contains("k1") && !out.contains("k2"), "{out}");
        assert_eq!(sink.0.lock().unwrap().len(), 2, "one write per event");
    }
}
