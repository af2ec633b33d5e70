//! The wire vocabulary, in one place: frames exchanged with the backend
//! (typed at the edge), the bridge ↔ daemon IPC, the names of the MCP tools
//! and of the environment variables other programs read. `docs/PROTOCOL.md`
//! describes the same vocabulary in prose.

pub mod env;
pub mod frames;
pub mod ipc;
pub mod message;
pub mod outbound;
pub mod tools;
pub mod usage;

pub use frames::{Assign, Deliver, FrameError, Inbound, ToolResult};
pub use message::MessageId;
pub use outbound::{AckStatus, Outbound, WakeStatus};
pub use usage::Usage;
