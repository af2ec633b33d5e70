//! tracing setup. Short-lived commands log warnings to stderr; stdout is
//! reserved for their output (and for MCP framing in the bridge). The
//! daemon logs to a private file per day.
//!
//! Whatever the level or filter, no key is written: the transport
//! libraries, which see the `Authorization` header, never log below
//! `info` (`filter`), and every writer passes each line through
//! `crate::redact` before it leaves the process (`redacting`). And every
//! event is one line: control characters in logged values are escaped
//! (`escape`), so a string from the backend cannot forge a log line.

mod escape;
mod file;
mod filter;
mod json;
mod redacting;
#[cfg(test)]
mod test_sink;

use std::io::IsTerminal;
use std::path::Path;

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use escape::EscapedFields;
pub use filter::ENV;
use redacting::Redacting;

/// Commands other than `start` and `mcp-bridge`: warnings to stderr.
pub fn init_cli() {
    let _ = tracing_subscriber::registry()
        .with(stderr_layer("warn", true))
        .try_init();
}

/// `mcp-bridge`: stderr only (stdout is the MCP channel), no colours (claude
/// keeps the text).
pub fn init_bridge() {
    let _ = tracing_subscriber::registry()
        .with(stderr_layer("info,rmcp=warn", false))
        .try_init();
}

/// The daemon logs to `<profile>/logs/daemon-YYYY-MM-DD.log` (one file a
/// day, README "Logs") and to stderr when someone reads it there: a
/// terminal, or the journal of a systemd unit (`stderr_use`).
/// `CLOUDAGENT_LOG` overrides the configured level;
/// `CLOUDAGENT_DAEMON_JSON_LOG` switches both outputs to JSON lines. The directory is made
/// 0700 and its files 0600 however they were created before (an older
/// version, a service manager's own log files). Returns the guard that
/// flushes the file writer on drop.
pub fn init_daemon(
    log_dir: &Path,
    level: &str,
) -> Result<tracing_appender::non_blocking::WorkerGuard, String> {
    file::private_dir(log_dir).map_err(|e| {
        format!(
            "cannot make the log directory {} private: {e}",
            log_dir.display()
        )
    })?;
    let daily = file::DailyFile::open(log_dir)
        .map_err(|e| format!("cannot open a log file in {}: {e}", log_dir.display()))?;
    // The default queue of 128,000 lines is preallocated (about 4 MiB of a
    // daemon that otherwise idles in a few); 4,096 lines is plenty, and a
    // full queue drops lines rather than blocking the daemon.
    let (file_writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(4096)
        .lossy(true)
        .finish(daily);
    let json = json::wanted();
    let mut layers = vec![output(Redacting::new(file_writer), level, false, json)];
    if let Some(ansi) = stderr_use() {
        layers.push(output(Redacting::new(std::io::stderr), level, ansi, json));
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(guard)
}

/// Where stderr goes decides whether the daemon logs there too (README
/// "Logs"): a terminal (with colours), or systemd's journal, which sets
/// `JOURNAL_STREAM` to the `device:inode` of the stream it gave us (so
/// `journalctl --user -u cloudagent-daemon -f` shows the log). Anything
/// else (launchd's `launchd.err.log`, a redirect) gets nothing: the daily
/// file already has every line, and a second copy would only fill a disk.
fn stderr_use() -> Option<bool> {
    if std::io::stderr().is_terminal() {
        return Some(true);
    }
    let journal = std::env::var(JOURNAL_STREAM).ok()?;
    let st = rustix::fs::fstat(std::io::stderr()).ok()?;
    (journal.trim() == format!("{}:{}", st.st_dev, st.st_ino)).then_some(false)
}

/// Set by systemd for a unit whose stdout/stderr is the journal.
const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// One of the daemon's outputs: text (control characters escaped) or JSON
/// lines, redacted either way.
fn output<W>(writer: W, level: &str, ansi: bool, json: bool) -> BoxedLayer
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    if json {
        tracing_subscriber::fmt::layer()
            .event_format(json::JsonLines)
            .with_writer(writer)
            .with_filter(filter::chosen(level))
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .fmt_fields(EscapedFields::default())
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(false)
            .with_filter(filter::chosen(level))
            .boxed()
    }
}

fn stderr_layer<S>(default: &str, ansi: bool) -> impl Layer<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(EscapedFields::default())
        .with_writer(Redacting::new(std::io::stderr))
        .with_ansi(ansi)
        .with_target(false)
        .with_filter(filter::chosen(default))
}
