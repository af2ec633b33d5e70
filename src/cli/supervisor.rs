//! `wake-supervisor` (hidden): the process the daemon puts between itself
//! and claude for each wake (README.md, "claude's processes"). Not for interactive use.

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;

use crate::runtime::wake::supervisor;

#[derive(Debug, Args)]
pub struct SupervisorArgs {
    /// The inherited end of the daemon's lifeline socket.
    #[arg(long, value_name = "FD")]
    pub lifeline_fd: i32,
    /// Grace between SIGTERM and SIGKILL for claude's processes, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub grace_ms: u64,
    /// claude and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

pub fn run(args: &SupervisorArgs) -> u8 {
    supervisor::run(
        args.lifeline_fd,
        Duration::from_millis(args.grace_ms),
        &args.command,
    )
}
