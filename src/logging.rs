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
