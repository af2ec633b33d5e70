//! `cloudagent-daemon wake-supervisor` (hidden): the small process between
//! the daemon and claude that ties every process of a wake to the daemon
//! (README.md, "claude's processes").
//!
//! It starts claude in a new process group with the supervisor's own
//! stdin, stdout and stderr (the daemon's pipes), reports claude's pid on
//! the lifeline, and then:
//! * passes SIGINT and SIGTERM from the daemon on to claude's group;
//! * on [`KILL`] from the daemon, SIGKILLs the group;
//! * when the lifeline reaches end of file (the daemon is gone, however it
//!   died), SIGTERMs the group, and SIGKILLs it after the grace period;
//! * once claude has exited, stops what is left of its group and, on Linux
//!   where it is a child subreaper, every descendant that left the group
//!   (`setsid`) — SIGTERM, the grace period, SIGKILL — and exits the way
//!   claude did: the same exit code, or killed by the same signal, so the
//!   daemon reports claude's own exit status (PROTOCOL §4.6).

mod cleanup;

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use super::lifeline::{KILL, Report};
use crate::platform;

/// Messages go to stderr, which is claude's: the daemon keeps its tail in
/// `last-spawn.json`.
const NAME: &str = "cloudagent-daemon wake-supervisor";

/// Supervise `command` (claude and its arguments). Returns only on a
/// failure before claude ran (the exit code); otherwise exits the way
/// claude did.
pub fn run(lifeline_fd: i32, grace: Duration, command: &[OsString]) -> u8 {
    let lifeline = match adopt_lifeline(lifeline_fd) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{NAME}: --lifeline-fd {lifeline_fd}: {e}");
            return 2;
        }
    };
    let Some((program, args)) = command.split_first() else {
        eprintln!("{NAME}: no command to run");
        return 2;
    };
    if let Err(e) = platform::become_subreaper() {
        eprintln!(
            "{NAME}: cannot become a child subreaper ({e}); processes that leave claude's group may outlive the wake"
        );
    }
    let rt = match crate::runtime::current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{NAME}: cannot start the async runtime: {e}");
            return 126;
        }
    };
    let outcome = rt.block_on(supervise(lifeline, program, args, grace));
    drop(rt);
    match outcome {
        Ok(mut claude) => {
            cleanup::stop_the_rest(claude.id(), grace);
            // Only now is claude reaped (see `exited`).
            match claude.wait() {
                Ok(status) => exit_like(status),
                Err(e) => {
                    eprintln!("{NAME}: waiting for claude failed: {e}");
                    1
                }
            }
        }
        Err(code) => code,
    }
}

/// Take the inherited socket named on the command line, and make sure
/// claude does not inherit it in turn.
fn adopt_lifeline(fd: i32) -> Result<StdUnixStream, String> {
    if fd < 3 {
        return Err("must be an inherited descriptor above 2".into());
    }
    // SAFETY: F_GETFD on any number is harmless; it tells whether it is
    // open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err("not an open descriptor".into());
    }
    // SAFETY: the descriptor is open (checked above) and was inherited for
    // this purpose alone: nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let stat = rustix::fs::fstat(&owned).map_err(|e| e.to_string())?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        return Err("not a socket".into());
    }
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC).map_err(|e| e.to_string())?;
    Ok(StdUnixStream::from(owned))
}

/// Start claude and watch it, the signals and the lifeline until it has
/// exited. Returns claude exited but not yet reaped.
async fn supervise(
    lifeline: StdUnixStream,
    program: &OsString,
    args: &[OsString],
    grace: Duration,
) -> Result<Child, u8> {
    let setup = |l: StdUnixStream| -> std::io::Result<_> {
        l.set_nonblocking(true)?;
        Ok((
            UnixStream::from_std(l)?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    };
    let (mut lifeline, mut int, mut term) = setup(lifeline).map_err(|e| {
        eprintln!("{NAME}: cannot set up: {e}");
        126
    })?;
    let claude = match Command::new(program).args(args).process_group(0).spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot start {}: {e}", program.to_string_lossy());
            let _ = lifeline
                .write_all(Report::Failed(why).line().as_bytes())
                .await;
            // As when the daemon itself failed to start claude.
            return Err(126);
        }
    };
    let Some(group) = Pid::from_raw(claude.id() as i32) else {
        eprintln!("{NAME}: claude has no valid pid");
        return Err(1);
    };
    // The daemon may be gone already: the read below then says so.
    let started = Report::Started(claude.id()).line();
    let _ = lifeline.write_all(started.as_bytes()).await;

    let mut exit = exited(group);
    let mut listening = true;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            _ = &mut exit => return Ok(claude),
            Some(()) = int.recv() => signal_group(group, Signal::INT),
            Some(()) = term.recv() => signal_group(group, Signal::TERM),
            read = lifeline.read(&mut buf), if listening => match read {
                Ok(n) if n > 0 => {
                    if buf[..n].contains(&KILL) {
                        signal_group(group, Signal::KILL);
                    }
                }
                _ => {
                    listening = false;
                    signal_group(group, Signal::TERM);
                    kill_at = Some(tokio::time::Instant::now() + grace);
                }
            },
            () = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)),
                if kill_at.is_some() =>
            {
                kill_at = None;
                signal_group(group, Signal::KILL);
            }
        }
    }
}

/// Resolves once claude has exited, without reaping it: while it is a
/// zombie its pid, and so its process group's id, cannot be reused, and
/// signalling the group stays safe until the cleanup is done.
fn exited(claude: Pid) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let how = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        while let Err(rustix::io::Errno::INTR) = waitid(WaitId::Pid(claude), how) {}
        let _ = tx.send(());
    });
    rx
}

fn signal_group(group: Pid, sig: Signal) {
    // ESRCH: the group is gone already.
    let _ = kill_process_group(group, sig);
}

/// Exit as claude did: its exit code, or death by the same signal (the
/// daemon maps that to minus the signal number, PROTOCOL §4.6).
fn exit_like(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    let Some(sig) = status.signal() else {
        return 1;
    };
    // No core file of ours for claude's crash.
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    // SAFETY: resetting a disposition and raising a signal; nothing runs
    // concurrently (the runtime is gone).
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    // Still here: a signal whose default is not to terminate.
    128u8.saturating_add(u8::try_from(sig).unwrap_or(0))
}
