//! `mcp-bridge` (hidden): the stdio MCP server claude starts for an agent,
//! per the MCP config the daemon writes (PROTOCOL §5.1). stdout is the MCP
//! channel, so every log line goes to stderr.

use std::path::PathBuf;

use clap::Args;

use super::profile::ProfileArg;
use crate::bridge::mcp::{self, Bridge, BridgeConfig};

#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// The agent whose tools to serve.
    #[arg(long, value_name = "ID")]
    pub agent_id: String,
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The running wake's token file, written by the daemon before it
    /// starts claude (default: the agent's `.meta/claude-token.txt`).
    /// Tool calls work only while it holds the token of the agent's
    /// running wake (SECURITY.md).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

pub fn run(args: &BridgeArgs) -> u8 {
    crate::logging::init_bridge();
    let profile = match args.profile.resolve() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let config = match BridgeConfig::from_env(&args.agent_id, profile, args.token_file.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("mcp-bridge: {e}");
            return 2;
        }
    };
    tracing::info!(
        "mcp-bridge for {} (profile {}, {} tools, socket {})",
        config.agent_id,
        config.profile,
        if config.is_chief { "chief" } else { "staff" },
        config.socket.display()
    );
    let runtime = match crate::runtime::current_thread_runtime() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("mcp-bridge: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(mcp::serve_stdio(Bridge::new(config))) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("mcp-bridge: {e}");
            1
        }
    }
}
