//! The daemon runtime: connection to the backend, durable delivery, claude
//! wakes.

pub mod agents;
pub mod connection;
pub mod daemon;
pub mod detect;
pub mod frames;
pub mod journal;
pub mod ledger;
pub mod lock;
pub mod outbox;
pub mod reload;
pub mod settings;
pub mod shared;
pub mod timing;
pub mod tool_calls;
pub mod transport;
pub mod wake;
