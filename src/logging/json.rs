//! `CLOUDAGENT_DAEMON_JSON_LOG=1|true|yes`: one JSON object per line, the
//! keys the original daemon writes (docs/PROTOCOL.md "Logs"): `ts`,
//! `level`, `name` (the module), `msg`, `pid`, `thread`, then the event's
//! other fields. Log shippers that parsed the original's lines keep
//! working.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable and its "on" values (case-insensitive).
pub const ENV: &str = "CLOUDAGENT_DAEMON_JSON_LOG";

pub fn wanted() -> bool {
    std::env::var(ENV)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let thread = std::thread::current();
        let mut obj = Map::new();
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
        obj.insert("ts".into(), ts.into());
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("name".into(), meta.target().into());
        obj.insert("msg".into(), Value::String(String::new()));
        obj.insert("pid".into(), std::process::id().into());
        let thread_name = thread
            .name()
            .map(String::from)
            .unwrap_or_else(|| format!("{:?}", thread.id()));
        obj.insert("thread".into(), thread_name.into());
        event.record(&mut Fields(&mut obj));
        let line = serde_json::to_string(&obj).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// `message` becomes `msg`; other fields are added unless they would
/// replace one of the fixed keys.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.0.insert("msg".into(), value);
        } else {
            self.0.entry(field.name()).or_insert(value);
        }
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::test_sink::Sink;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn one_object_per_line_with_the_original_keys_and_no_key() {
        let sink = Sink::default();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(crate::logging::redacting::Redacting::new(
                sink.make_writer(),
            ));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                agent = "a1",
                n = 3,
                "daemon ready\nkey sk_machine_abcdefghijklmnop"
            );
        });
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            ["ts", "level", "name", "msg", "pid", "thread", "agent", "n"]
        );
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["agent"], "a1");
        assert_eq!(v["n"], 3);
        assert_eq!(v["pid"], std::process::id());
        assert!(v["msg"].as_str().unwrap().starts_with("daemon ready\n"));
        assert!(!text.contains("abcdefghijklmnop"), "{text}");
    }
}
