//! One event, one line. Values logged come from the backend (message ids,
//! agent ids, `bye` reasons), from claude and from files; a newline or a
//! carriage return in one of them would start a line of its own in the log
//! file or the terminal, which a reader (or a log shipper) would take for
//! an event the daemon never wrote. Call sites format such values with
//! `?` (quoted, escaped); this formatter is the net under all of them: it
//! escapes every control character in every field, message included, so no
//! call site, present or future, can break a line.

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// The default field format (`message key=value ...`) with control
/// characters escaped. Field names lose their terminal styling: the inner
/// writer cannot be told to use it (tracing-subscriber keeps that private).
#[derive(Default)]
pub struct EscapedFields {
    inner: DefaultFields,
}

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut plain = String::new();
        self.inner.format_fields(Writer::new(&mut plain), fields)?;
        write_escaped(&mut writer, &plain)
    }
}

/// `text` with line breaks and other control characters (tab excepted)
/// written as escapes: `\n`, `\r`, `\u{1b}`.
fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_char(c)?,
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                write!(out, "\\u{{{:x}}}", c as u32)?
            }
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::test_sink::Sink;

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write_escaped(&mut out, "a\nFAKE\r\x1b[2J\u{85}\u{2028}\tok é").unwrap();
        assert_eq!(out, "a\\nFAKE\\r\\u{1b}[2J\\u{85}\\u{2028}\tok é");
    }

    #[test]
    fn every_event_is_one_line() {
        use tracing_subscriber::layer::SubscriberExt;
        let sink = Sink::default();
        let writer = sink.make_writer();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .fmt_fields(EscapedFields::default())
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, || {
            let id = "m1\nFAKE LOG LINE";
            tracing::info!("message {id} done");
            tracing::info!(reason = id, "bye");
            let span = tracing::info_span!("wake", agent = id);
            span.in_scope(|| tracing::info!("inside"));
        });
        let out = sink.text();
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.lines().all(|l| !l.starts_with("FAKE")), "{out}");
        assert!(out.contains("message m1\\nFAKE LOG LINE done"), "{out}");
    }
}
