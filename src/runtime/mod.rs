//! The daemon runtime: the session with the backend (over one of the
//! transports), durable delivery, claude wakes.

pub mod agents;
pub mod assign_queue;
pub mod daemon;
pub mod delivery;
pub mod detect;
pub mod failpoint;
pub mod ipc;
pub mod lock;
pub mod reload;
pub mod resync;
pub mod running;
pub mod session;
pub mod settings;
pub mod shared;
pub mod status;
pub mod timing;
pub mod tool_calls;
pub mod transport;
pub mod wake;

/// An invariant the daemon's promises rest on is broken (a journal write
/// failed after an ack may depend on it, a lock was poisoned): say so and
/// exit 1 instead of going on with a default. The service manager restarts
/// the daemon, the ledger replays what was accepted, and the backend
/// redelivers what was not acknowledged.
pub fn fatal(what: &str) -> ! {
    tracing::error!("fatal: {what}; exiting");
    eprintln!("Error: fatal: {what}; exiting");
    std::process::exit(1)
}
