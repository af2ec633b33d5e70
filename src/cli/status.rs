//! `status` (PROTOCOL §7.2). Whether a daemon runs is decided by
//! `runtime::running` (the lock holder, the socket's peer), not by the
//! PID file alone: a stale pid now used by another process is not
//! reported as running.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::profile::ProfileArg;
use crate::bridge::ipc;
use crate::paths::{Home, ProfileName};
use crate::protocol::env::SOCKET_PATH as SOCKET_PATH_ENV;
use crate::protocol::ipc::Request;
use crate::runtime::lock::{PidFileError, alive, read_pid};
use crate::runtime::running::{self, Found};
use crate::runtime::status::StatusReport;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn socket_for(home: &Home, profile: &ProfileName) -> std::path::PathBuf {
    std::env::var_os(SOCKET_PATH_ENV)
        .filter(|v| !v.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| home.profile(profile).socket())
}

/// The profile (exit 2 when invalid) and the home directory (exit 1).
pub(super) fn profile_and_home(arg: &ProfileArg) -> Result<(ProfileName, Home), u8> {
    let profile = arg.resolve()?;
    let home = Home::from_env().map_err(|e| {
        eprintln!("Error: {e}");
        1
    })?;
    Ok((profile, home))
}

pub fn status(args: &StatusArgs) -> u8 {
    let (profile, home) = match profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let paths = home.profile(&profile);
    let candidate = match Named::read(&paths.pid_file()) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let socket = socket_for(&home, &profile);
    let rt = match crate::runtime::current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    match rt.block_on(running::find(&paths.lock_file(), &socket)) {
        Found::Daemon(pid) => {
            if let Named::Pid(named) = candidate
                && named != pid
            {
                eprintln!(
                    "warning: {} names pid {named}, but the daemon is pid {pid}",
                    paths.pid_file().display()
                );
            }
            let live = rt.block_on(report(&socket));
            running_report(args, &profile, Some(pid), live)
        }
        // The lock is held: a daemon runs, whatever its socket says.
        Found::Unidentified => {
            let live = rt.block_on(report(&socket));
            running_report(args, &profile, None, live)
        }
        Found::None => not_running(args, &profile, candidate),
    }
}

/// What the PID file says: only a candidate, never proof (see `stop`).
pub enum Named {
    Missing,
    Unusable,
    Pid(u32),
}

impl Named {
    /// Read the PID file; a pid out of range is an error for the user
    /// (exit 1), never a process to look at.
    pub fn read(pid_file: &std::path::Path) -> Result<Self, u8> {
        match read_pid(pid_file) {
            Err(e @ PidFileError::OutOfRange { .. }) => {
                eprintln!("Error: {e}");
                Err(1)
            }
            Err(_) => Ok(Self::Unusable),
            Ok(None) => Ok(Self::Missing),
            Ok(Some(pid)) => Ok(Self::Pid(pid)),
        }
    }
}

fn not_running(args: &StatusArgs, profile: &ProfileName, candidate: Named) -> u8 {
    let (pid, message) = match candidate {
        Named::Missing => (
            None,
            format!("daemon not running for profile '{profile}' (no PID file)"),
        ),
        Named::Unusable => (
            None,
            format!("daemon stale PID file (corrupt) profile='{profile}'"),
        ),
        Named::Pid(pid) if alive(pid) => (
            Some(pid),
            format!(
                "daemon stale PID file (pid={pid} is not this profile's daemon) profile='{profile}'"
            ),
        ),
        Named::Pid(pid) => (
            Some(pid),
            format!("daemon stale PID file (pid={pid} not alive) profile='{profile}'"),
        ),
    };
    if args.json {
        println!(
            "{}",
            json!({"running": false, "profile": profile.as_str(), "pid": pid, "message": message})
        );
    } else {
        println!("● {message}");
    }
    1
}

async fn report(socket: &std::path::Path) -> Result<StatusReport, ipc::ClientError> {
    let v = ipc::call(socket, &Request::Status, Duration::from_secs(3)).await?;
    serde_json::from_value::<StatusReport>(v).map_err(|e| ipc::ClientError::Protocol(e.to_string()))
}

/// A daemon runs (`pid` when it could be told); its report if it answered.
fn running_report(
    args: &StatusArgs,
    profile: &ProfileName,
    pid: Option<u32>,
    live: Result<StatusReport, ipc::ClientError>,
) -> u8 {
    match live {
        Ok(report) if args.json => println!("{}", super::status_render::json(&report)),
        Ok(report) => print!("{}", super::status_render::text(&report)),
        Err(e) if args.json => println!(
            "{}",
            json!({"running": true, "profile": profile.as_str(), "pid": pid, "error": e.to_string()})
        ),
        Err(e) => {
            let pid = pid.map(|p| format!("pid={p}, ")).unwrap_or_default();
            println!(
                "● daemon running ({pid}profile='{profile}') but it does not answer on its socket: {e}"
            );
        }
    }
    0
}
