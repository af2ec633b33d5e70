//! claude as a process group: spawned in its own group so that stopping it
//! also stops its children (the MCP bridge, shells it started), and stopped
//! with escalation: SIGINT (claude exits cleanly), then SIGTERM, then
//! SIGKILL.

use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::process::Child;

/// Set up a claude command: its own process group (stopping it stops its
/// children), killed if the handle is dropped, SIGINT/SIGTERM back to their
/// default action (a daemon started from a non-interactive shell inherits
/// SIGINT ignored, and exec keeps ignored signals ignored — claude would
/// then never see our polite SIGINT), and on Linux a SIGTERM if the daemon
/// dies without cleaning up (SIGKILL), instead of running on as an orphan.
pub fn configure(cmd: &mut tokio::process::Command) {
    cmd.process_group(0).kill_on_drop(true);
    // SAFETY: runs in the forked child before exec and only makes
    // async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            crate::platform::die_with_parent()?;
            Ok(())
        });
    }
}

/// Exit code as the original reports it: the status, or minus the signal
/// number when killed by one (PROTOCOL §4.6).
pub fn exit_code(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => i64::from(c),
        (None, Some(s)) => -i64::from(s),
        (None, None) => -1,
    }
}

fn signal_group(pgid: Option<Pid>, sig: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (group already gone) is fine.
        let _ = kill_process_group(pgid, sig);
    }
}

pub fn group_of(child: &Child) -> Option<Pid> {
    child.id().and_then(|id| Pid::from_raw(id as i32))
}

/// Stop the group, waiting `grace` after SIGINT and after SIGTERM. Returns
/// the leader's exit status.
pub async fn stop(child: &mut Child, pgid: Option<Pid>, grace: Duration) -> Option<ExitStatus> {
    for sig in [Signal::INT, Signal::TERM] {
        signal_group(pgid, sig);
        if let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await {
            signal_group(pgid, Signal::KILL);
            return Some(status);
        }
    }
    signal_group(pgid, Signal::KILL);
    child.wait().await.ok()
}

/// After a normal exit, whatever claude left running in its group
/// (background shells, a stuck MCP server) is stopped too: nothing outlives
/// its wake.
pub fn reap_group(pgid: Option<Pid>) {
    signal_group(pgid, Signal::TERM);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use tokio::process::Command;

    /// Spawn `sh -c script` in its own group and wait until it printed its
    /// first line (so its traps are installed).
    async fn spawn_ready(script: &str) -> Child {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        configure(&mut cmd);
        let mut c = cmd.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(c.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
        c
    }

    #[tokio::test]
    async fn sigint_is_enough_for_a_cooperative_process() {
        // Like claude: SIGINT makes it finish cleanly.
        let mut c =
            spawn_ready("trap 'exit 0' INT; echo ready; while :; do sleep 0.05; done").await;
        let pgid = group_of(&c);
        let status = stop(&mut c, pgid, Duration::from_secs(5)).await.unwrap();
        assert_eq!(exit_code(status), 0);
    }

    #[tokio::test]
    async fn escalates_to_sigkill_when_signals_are_ignored() {
        let mut c = spawn_ready("trap '' INT TERM; echo ready; while :; do sleep 0.05; done").await;
        let pgid = group_of(&c);
        let status = stop(&mut c, pgid, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(exit_code(status), -9);
    }
}
