//! tracing setup. Short-lived commands log warnings to stderr; stdout is
//! reserved for their output (and for MCP framing in the bridge).

use tracing_subscriber::EnvFilter;

pub fn init_cli() {
    let filter =
        EnvFilter::try_from_env("CLOUDAGENT_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The daemon logs to `<profile>/logs/daemon.YYYY-MM-DD.log` (one file a
/// day) and, when run in a terminal, to stderr too. `CLOUDAGENT_LOG`
/// overrides the configured level. Returns the guard that flushes the file
/// writer on drop.
pub fn init_daemon(
    log_dir: &std::path::Path,
    level: &str,
) -> Result<tracing_appender::non_blocking::WorkerGuard, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    crate::fsutil::create_dir_all(log_dir, 0o700)
        .map_err(|e| format!("cannot create log directory {}: {e}", log_dir.display()))?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("daemon")
        .filename_suffix("log")
        .build(log_dir)
        .map_err(|e| format!("cannot open a log file in {}: {e}", log_dir.display()))?;
    // The default queue of 128,000 lines is preallocated (about 4 MiB of a
    // daemon that otherwise idles in a few); 4,096 lines is plenty, and a
    // full queue drops lines rather than blocking the daemon.
    let (file_writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(4096)
        .lossy(true)
        .finish(appender);
    let filter =
        || EnvFilter::try_from_env("CLOUDAGENT_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(file_writer)
        .with_ansi(false)
        .with_target(false)
        .with_filter(filter());
    let stderr_layer = std::io::stderr().is_terminal().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter())
    });
    tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(guard)
}
