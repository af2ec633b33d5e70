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
pub mod metrics;
pub mod metrics_server;
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

/// The single-threaded async runtime of the short-lived processes (`stop`,
/// `status`, the MCP bridge, the wake supervisor).
pub fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

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
