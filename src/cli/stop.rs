//! `stop` (PROTOCOL §7.2): SIGTERM to the profile's daemon, wait for it to
//! exit, SIGKILL after the timeout. Only a process proven to be the daemon
//! (`runtime::running`: it holds `daemon.lock` or listens on the
//! profile's socket) is ever signalled. The PID file only names a
//! candidate: a stale one whose pid now belongs to another process, or a
//! forged one (4294967295 read as a pid is -1, and `kill(-1, …)` signals
//! every process of the user), must not make `stop` kill anything.

use std::time::{Duration, Instant};

use clap::Args;
use rustix::process::Signal;

use super::profile::ProfileArg;
use super::status::{Named, profile_and_home, socket_for};
use crate::runtime::lock::{alive, valid_pid};
use crate::runtime::running::{self, Found};

/// Longest accepted `--timeout`: a day.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Seconds to wait for a clean exit before sending SIGKILL (0 to 86400).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: f64,
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    let range = format!("a number of seconds from 0 to {MAX_TIMEOUT_SECS}");
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && (0.0..=MAX_TIMEOUT_SECS).contains(&t) => Ok(t),
        _ => Err(format!("--timeout must be {range}")),
    }
}

pub fn stop(args: &StopArgs) -> u8 {
    let (profile, home) = match profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let paths = home.profile(&profile);
    let named = match Named::read(&paths.pid_file()) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let rt = match crate::runtime::current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let (lock_file, socket) = (paths.lock_file(), socket_for(&home, &profile));
    let find = || rt.block_on(running::find(&lock_file, &socket));
    match find() {
        Found::Daemon(pid) => {
            if let Named::Pid(n) = named
                && n != pid
            {
                println!(
                    "{} names pid {n}, but the profile's daemon is pid {pid}",
                    paths.pid_file().display()
                );
            }
            terminate(pid, args.timeout, find)
        }
        Found::None => {
            clean_up(&paths.pid_file(), &profile, named);
            0
        }
        Found::Unidentified => {
            eprintln!(
                "Error: a daemon holds {} but cannot be identified (its socket {} does not answer with its pid); nothing was signalled. Try again in a moment, or stop it through its service manager.",
                lock_file.display(),
                socket.display()
            );
            1
        }
    }
}

/// No daemon runs: say what the PID file was and remove it.
fn clean_up(pid_file: &std::path::Path, profile: &crate::paths::ProfileName, named: Named) {
    match named {
        Named::Missing => {
            println!("daemon not running for profile '{profile}' (no PID file)");
            return;
        }
        Named::Unusable => println!("stale PID file — removing"),
        Named::Pid(n) if alive(n) => println!(
            "no daemon is running for profile '{profile}': pid {n} in {} is another process; removing the stale PID file",
            pid_file.display()
        ),
        Named::Pid(n) => {
            println!("daemon already stopped (pid={n} not alive); cleaning up PID file")
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

/// SIGTERM `pid` (proven to be the daemon), wait up to `timeout` seconds,
/// then SIGKILL it if it is still the daemon.
fn terminate(pid: u32, timeout: f64, find: impl Fn() -> Found) -> u8 {
    println!("sending SIGTERM to pid={pid}...");
    if send(pid, Signal::TERM).is_err() {
        println!("process already gone");
        return 0;
    }
    let wait = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::from_secs(10));
    let deadline = Instant::now() + wait;
    loop {
        if !alive(pid) {
            println!("✓ daemon stopped cleanly");
            return 0;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match find() {
        Found::Daemon(p) if p == pid => {}
        // The lock is still held and `pid` answered at every poll since
        // it was proven to be the daemon: for it to be another process
        // now, the daemon would have had to exit, a new one take the lock
        // and the pid be reused, all between two polls.
        Found::Unidentified => {}
        _ => {
            println!(
                "daemon did not exit within {timeout}s, and pid {pid} can no longer be shown to be it; not sending SIGKILL"
            );
            return 1;
        }
    }
    println!("daemon did not exit within {timeout}s; sending SIGKILL");
    let _ = send(pid, Signal::KILL);
    1
}

fn send(pid: u32, signal: Signal) -> rustix::io::Result<()> {
    let target = valid_pid(pid)
        .then(|| rustix::process::Pid::from_raw(pid as i32))
        .flatten()
        .ok_or(rustix::io::Errno::SRCH)?;
    rustix::process::kill_process(target, signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_finite_and_bounded() {
        assert_eq!(parse_timeout("2.5"), Ok(2.5));
        assert_eq!(parse_timeout("0"), Ok(0.0));
        for bad in ["-1", "nan", "inf", "-inf", "1e300", "86401", "ten", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
