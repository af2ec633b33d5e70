//! The daemon's side of a wake's processes: claude runs under
//! `cloudagent-daemon wake-supervisor` (see [`super::supervisor`]), which
//! the daemon starts in a process group of its own, with claude's cwd,
//! environment and pipes, and the supervisor's end of a [`lifeline`].
//!
//! Stopping goes through the supervisor, with escalation: SIGINT (claude
//! exits cleanly), then SIGTERM, each passed on to claude's group, then the
//! lifeline's KILL. A supervisor that does not answer even that is
//! SIGKILLed, and claude's group with it (checked by start time first).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::process::Child;

use super::leftover::{self, Proc};
use super::lifeline::{self, KILL, Report};

/// How claude is to be run.
pub struct Launch<'a> {
    /// This program (it holds the `wake-supervisor` command).
    pub exe: &'a Path,
    pub program: &'a Path,
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub env: Vec<(OsString, OsString)>,
    /// The supervisor's grace between SIGTERM and SIGKILL.
    pub grace: Duration,
}

pub struct Supervised {
    pub child: Child,
    lifeline: UnixStream,
    /// claude, once the supervisor has reported it.
    claude: Option<Proc>,
}

impl Supervised {
    /// Start the supervisor (which starts claude). Its stdin, stdout and
    /// stderr are pipes, passed on to claude.
    pub fn spawn(l: Launch) -> io::Result<Self> {
        let (ours, theirs) = StdUnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        let mut cmd = tokio::process::Command::new(l.exe);
        cmd.arg("wake-supervisor")
            .arg("--lifeline-fd")
            .arg(fd.to_string())
            .arg("--grace-ms")
            .arg(l.grace.as_millis().to_string())
            .arg("--")
            .arg(l.program)
            .args(l.args)
            .current_dir(l.cwd)
            .env_clear()
            .envs(l.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a Ctrl-C in the daemon's terminal reaches the
            // daemon only, which then stops wakes in order.
            .process_group(0);
        // SAFETY: runs in the forked child before exec and only makes one
        // async-signal-safe call. Both socket ends are close-on-exec; the
        // supervisor's end is made inheritable in the supervisor alone.
        unsafe {
            cmd.pre_exec(move || {
                let theirs = BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(theirs, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        Ok(Self {
            child,
            lifeline: UnixStream::from_std(ours)?,
            claude: None,
        })
    }

    pub fn supervisor_pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// claude's pid as the supervisor reports it (at once, unless the
    /// machine is very busy).
    pub async fn claude_started(&mut self) -> Result<u32, String> {
        match Report::parse(&read_line(&mut self.lifeline).await?)? {
            Report::Started(pid) => {
                self.claude = Proc::current(pid);
                Ok(pid)
            }
            Report::Failed(why) => Err(why),
        }
    }

    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stop claude, waiting `grace` after each step. Returns the
    /// supervisor's exit status, which mirrors claude's.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        for sig in [Signal::INT, Signal::TERM] {
            self.signal(sig);
            if let Ok(Ok(status)) = tokio::time::timeout(grace, self.child.wait()).await {
                return Some(status);
            }
        }
        let _ = self.lifeline.try_write(&[KILL]);
        if let Ok(Ok(status)) = tokio::time::timeout(grace, self.child.wait()).await {
            return Some(status);
        }
        tracing::warn!("the wake supervisor does not exit; killing it and claude's process group");
        self.signal(Signal::KILL);
        let status = self.child.wait().await.ok();
        self.stop_orphaned(Duration::ZERO).await;
        status
    }

    /// After the supervisor has exited: claude still running means the
    /// supervisor was killed (by someone else, or by [`Self::stop`]). Its
    /// group is stopped as the supervisor would have: SIGTERM, `grace`,
    /// SIGKILL.
    pub async fn stop_orphaned(&self, grace: Duration) {
        let Some(claude) = self.claude.filter(Proc::is_running) else {
            return;
        };
        tracing::warn!(
            "the wake supervisor died before claude (pid {}); stopping claude's process group",
            claude.pid
        );
        let _ = tokio::task::spawn_blocking(move || leftover::stop(&[claude], &[], grace)).await;
    }

    fn signal(&self, sig: Signal) {
        // No pid once reaped: the number may belong to someone else then.
        if let Some(pid) = self.child.id().and_then(|p| Pid::from_raw(p as i32)) {
            let _ = kill_process(pid, sig);
        }
    }
}

/// Exit code as the original reports it: the status, or minus the signal
/// number when killed by one (PROTOCOL §4.6). The supervisor exits the way
/// claude did, so its status is claude's.
pub fn exit_code(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => i64::from(c),
        (None, Some(s)) => -i64::from(s),
        (None, None) => -1,
    }
}

/// One line, without its newline, of at most [`lifeline::MAX_LINE`] bytes.
async fn read_line(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(0) => return Err("the wake supervisor exited before starting claude".into()),
            Ok(_) if byte[0] == b'\n' => return Ok(line),
            Ok(_) if line.len() >= lifeline::MAX_LINE => {
                return Err("the wake supervisor's report is too long".into());
            }
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("cannot read the wake supervisor's report: {e}")),
        }
    }
}
