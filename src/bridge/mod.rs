//! The MCP bridge claude starts, and its IPC with the daemon.

pub mod ipc;
pub mod mcp;
pub mod tools;
