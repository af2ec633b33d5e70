//! Environment variables read by the daemon, the bridge and the tests
//! (docs/PROTOCOL.md, "Environment").

/// The profile a command acts on when `--profile` is not given; also how
/// claude's MCP bridge finds its daemon.
pub const PROFILE: &str = "CLOUDAGENT_DAEMON_PROFILE";
/// A daemon socket other than the profile's `bridge.sock`.
pub const SOCKET_PATH: &str = "CLOUDAGENT_DAEMON_SOCKET_PATH";
/// The claude binary, overriding `[daemon] claude_binary`.
pub const CLAUDE_BINARY: &str = "CLOUDAGENT_DAEMON_CLAUDE_BINARY";
/// claude's permission mode, overriding the config (set by service units).
pub const PERMISSION_MODE: &str = "CLOUDAGENT_DAEMON_PERMISSION_MODE";
/// `1`: keep the system proxy variables for the daemon and claude.
pub const USE_SYSTEM_PROXY: &str = "CLOUDAGENT_USE_SYSTEM_PROXY";
