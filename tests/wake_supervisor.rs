//! `cloudagent-daemon wake-supervisor` run directly, with a socket pair as
//! its lifeline: what it reports, and that it exits the way its command
//! did. (What it does to claude's processes is tested through the daemon in
//! `wake_processes.rs`.)

mod support;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use support::BIN;

/// Run `sh -c script` under the supervisor; its report and exit status.
fn supervise(command: &[&str]) -> (String, ExitStatus) {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(BIN);
    cmd.args(["wake-supervisor", "--lifeline-fd", &fd.to_string()])
        .args(["--grace-ms", "200", "--"])
        .args(command)
        .stdin(Stdio::null());
    // SAFETY: one fcntl in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(theirs);
    ours.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut report = String::new();
    // The supervisor's end closes when it exits: read to the end.
    ours.read_to_string(&mut report).unwrap();
    (report, child.wait().unwrap())
}

#[test]
fn exits_the_way_its_command_did() {
    let (report, status) = supervise(&["sh", "-c", "exit 3"]);
    assert!(report.starts_with("started "), "{report:?}");
    assert_eq!(status.code(), Some(3));
    assert_eq!(supervise(&["true"]).1.code(), Some(0));
    for (sig, n) in [("TERM", 15), ("KILL", 9), ("SEGV", 11)] {
        let (_, status) = supervise(&["sh", "-c", &format!("kill -{sig} $$")]);
        assert_eq!(status.signal(), Some(n), "killed by SIG{sig}");
        assert!(!status.core_dumped(), "no core file of the supervisor's");
    }
}

#[test]
fn a_command_that_cannot_start_is_reported() {
    let (report, status) = supervise(&["/nonexistent/claude", "--print"]);
    assert!(
        report.starts_with("failed cannot start /nonexistent/claude: "),
        "{report:?}"
    );
    assert_eq!(status.code(), Some(126));
}

#[test]
fn without_its_lifeline_it_does_not_run() {
    let out = Command::new(BIN)
        .args(["wake-supervisor", "--lifeline-fd", "1", "--", "true"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--lifeline-fd 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
