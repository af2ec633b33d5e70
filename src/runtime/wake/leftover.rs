//! Records of running wakes, for the one case the supervisor cannot cover:
//! the daemon and the supervisor both killed at once (SIGKILL of both, the
//! OOM killer). While a wake runs, `<daemon dir>/wakes/<agent>.json` (0600)
//! names its supervisor and claude (the leader of claude's process group)
//! with the boot they ran in and their start times; the file goes when the
//! wake ends. At the next start, whatever such files still name is stopped
//! (SIGTERM, then SIGKILL) — but only a process whose pid, start time and
//! boot all still match: a pid reused by another program is never
//! signalled (SECURITY.md, "Files the daemon reads back").
//!
//! The records are written without fsync: after a power loss the boot id
//! differs and they are dropped unread anyway.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::paths::AgentId;
use crate::platform;
use crate::runtime::lock::valid_pid;

/// A record is a few hundred bytes; anything larger is not ours.
const MAX_RECORD_BYTES: u64 = 4096;
const POLL: Duration = Duration::from_millis(50);

/// One process, identified beyond its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proc {
    pub pid: u32,
    /// [`platform::start_time`] of the pid when recorded.
    pub start: u64,
}

impl Proc {
    /// The process running as `pid` now.
    pub fn current(pid: u32) -> Option<Self> {
        valid_pid(pid).then_some(())?;
        Some(Self {
            pid,
            start: platform::start_time(pid)?,
        })
    }

    /// Still this very process, and not a zombie.
    pub fn is_running(&self) -> bool {
        platform::start_time(self.pid) == Some(self.start) && !platform::is_zombie(self.pid)
    }

    /// Signal it, if it is still this process. A forged record cannot make
    /// the daemon signal itself or its own group.
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.target()
            && self.is_running()
        {
            // ESRCH: gone in between, which is what we want.
            let _ = kill_process(pid, sig);
        }
    }

    /// Signal the process group it leads, if it is still this process (its
    /// pid then still names that group).
    fn signal_group(&self, sig: Signal) {
        if let Some(pid) = self.target()
            && self.is_running()
        {
            let _ = kill_process_group(pid, sig);
        }
    }

    fn target(&self) -> Option<Pid> {
        let pid = Pid::from_raw(i32::try_from(self.pid).ok()?)?;
        let ours = [rustix::process::getpid(), rustix::process::getpgrp()];
        (valid_pid(self.pid) && !ours.contains(&pid)).then_some(pid)
    }

    /// This process and the members of the group it leads, each identified
    /// by its start time; nothing when it is no longer this process.
    fn with_group(&self) -> Vec<Proc> {
        if !self.is_running() {
            return Vec::new();
        }
        let mut all = vec![*self];
        all.extend(
            platform::group_members(self.pid)
                .into_iter()
                .filter(|p| *p != self.pid)
                .filter_map(Proc::current),
        );
        all
    }
}

/// Stop the process groups led by `leaders` and the processes `others`:
/// SIGTERM (to a group only while its leader is still the one recorded),
/// up to `grace` for them to go, then SIGKILL — to the groups whose leader
/// still runs, and to every process seen before the SIGTERM that is still
/// the same one, so that the members of a group whose leader has exited
/// are not missed. Blocks for up to `grace`.
pub fn stop(leaders: &[Proc], others: &[Proc], grace: Duration) {
    let mut seen: Vec<Proc> = leaders.iter().flat_map(Proc::with_group).collect();
    seen.extend(others.iter().filter(|p| p.is_running()));
    if seen.is_empty() {
        return;
    }
    for l in leaders {
        l.signal_group(Signal::TERM);
    }
    for p in others {
        p.signal(Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while seen.iter().any(Proc::is_running) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    for l in leaders {
        l.signal_group(Signal::KILL);
    }
    for p in &seen {
        p.signal(Signal::KILL);
    }
}

/// What a running wake leaves on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub boot_id: String,
    pub supervisor: Proc,
    /// claude, whose pid is also its process group id.
    pub claude: Proc,
}

impl Record {
    /// A record of the supervisor and claude as they run now; `None` when
    /// the OS cannot identify them (they are then never cleaned up by
    /// record, only by the supervisor).
    pub fn capture(supervisor: u32, claude: u32) -> Option<Self> {
        Some(Self {
            boot_id: platform::boot_id()?,
            supervisor: Proc::current(supervisor)?,
            claude: Proc::current(claude)?,
        })
    }

    /// Parse a record read back from disk, as untrusted input.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let r: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let id_ok = (1..=64).contains(&r.boot_id.len())
            && r.boot_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !id_ok {
            return Err(format!("boot_id {:?} is not a boot id", r.boot_id));
        }
        for (what, p) in [("supervisor", r.supervisor), ("claude", r.claude)] {
            if !valid_pid(p.pid) {
                return Err(format!("{what}.pid {} is outside 2..=2147483647", p.pid));
            }
        }
        Ok(r)
    }
}

pub fn path(dir: &Path, agent: &AgentId) -> PathBuf {
    dir.join(format!("{agent}.json"))
}

pub fn write(dir: &Path, agent: &AgentId, record: &Record) -> io::Result<()> {
    fsutil::create_dir_all(dir, 0o700)?;
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    fsutil::write_replace(&path(dir, agent), &text, 0o600)
}

pub fn remove(dir: &Path, agent: &AgentId) {
    let p = path(dir, agent);
    if let Err(e) = std::fs::remove_file(&p)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", p.display());
    }
}

/// At start, before any wake runs: stop what the records in `dir` name and
/// still match, waiting up to `grace` after SIGTERM before SIGKILL; then
/// remove every record.
pub fn clean_up(dir: &Path, grace: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let boot = platform::boot_id();
    let (mut leaders, mut others) = (Vec::new(), Vec::new());
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        match load(&p) {
            Ok(r) if boot.as_deref() == Some(r.boot_id.as_str()) => {
                leaders.push(r.claude);
                others.push(r.supervisor);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{}: {e}; removed", p.display()),
        }
        files.push(p);
    }
    if leaders.iter().chain(&others).any(Proc::is_running) {
        tracing::warn!("stopping the processes of wakes left running by a daemon that was killed");
        stop(&leaders, &others, grace);
    }
    for f in files {
        if let Err(e) = std::fs::remove_file(&f) {
            tracing::warn!("cannot remove {}: {e}", f.display());
        }
    }
}

/// A regular file of sane size holding a valid record.
fn load(path: &Path) -> Result<Record, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_RECORD_BYTES {
        return Err(format!("larger than {MAX_RECORD_BYTES} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    Record::parse(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Child, Command};

    /// A `sleep` of our own, leading its own process group.
    fn sleeper() -> Child {
        Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn record_for(child: &Child, start_delta: u64) -> Record {
        let mut me = Proc::current(child.id()).unwrap();
        me.start += start_delta;
        Record {
            boot_id: platform::boot_id().unwrap(),
            supervisor: me,
            claude: me,
        }
    }

    fn clean_up_with(record: &Record) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let agent = AgentId::parse("agent_a").unwrap();
        write(dir.path(), &agent, record).unwrap();
        assert_eq!(
            fsutil::mode_of(&std::fs::metadata(path(dir.path(), &agent)).unwrap()),
            0o600
        );
        clean_up(dir.path(), Duration::from_millis(200));
        assert!(!path(dir.path(), &agent).exists(), "record removed");
        dir
    }

    #[test]
    fn a_record_whose_start_time_differs_is_never_signalled() {
        let mut child = sleeper();
        clean_up_with(&record_for(&child, 1));
        std::thread::sleep(Duration::from_millis(300));
        let survived = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(survived, "a reused pid must not be signalled");
    }

    #[test]
    fn a_record_of_another_boot_is_never_signalled() {
        let mut child = sleeper();
        let mut r = record_for(&child, 0);
        r.boot_id = "00000000-0000-4000-8000-000000000000".into();
        clean_up_with(&r);
        std::thread::sleep(Duration::from_millis(300));
        let survived = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(survived);
    }

    #[test]
    fn a_matching_record_has_its_group_stopped() {
        let mut child = sleeper();
        clean_up_with(&record_for(&child, 0));
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn members_of_a_group_whose_leader_exits_on_sigterm_are_killed() {
        use std::io::BufRead;
        // The leader dies of SIGTERM; its child ignores SIGTERM and, the
        // leader gone, can no longer be reached through the leader's pid.
        // The child says `ignoring` once its trap is set (an ignored signal
        // stays ignored across exec), the leader prints the child's pid:
        // two lines in either order. Portable, no /proc.
        let mut leader = Command::new("sh")
            .args([
                "-c",
                "(trap '' TERM; echo ignoring; exec sleep 60) & echo $!; wait",
            ])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(leader.stdout.take().unwrap());
        let mut pid = None;
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            pid = pid.or(line.trim().parse::<u32>().ok());
        }
        let member = Proc::current(pid.unwrap()).unwrap();
        stop(
            &[Proc::current(leader.id()).unwrap()],
            &[],
            Duration::from_millis(200),
        );
        assert_eq!(leader.wait().unwrap().signal(), Some(libc::SIGTERM));
        let deadline = Instant::now() + Duration::from_secs(5);
        while member.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let survived = member.is_running();
        member.signal(Signal::KILL);
        assert!(!survived, "the member ignoring SIGTERM is SIGKILLed");
    }

    #[test]
    fn records_are_parsed_as_untrusted_input() {
        let ok =
            r#"{"boot_id":"b-1","supervisor":{"pid":10,"start":5},"claude":{"pid":11,"start":6}}"#;
        assert_eq!(Record::parse(ok.as_bytes()).unwrap().claude.pid, 11);
        for bad in [
            r#"{"boot_id":"b","supervisor":{"pid":1,"start":5},"claude":{"pid":11,"start":6}}"#,
            r#"{"boot_id":"b","supervisor":{"pid":10,"start":5},"claude":{"pid":0,"start":6}}"#,
            r#"{"boot_id":"b","supervisor":{"pid":10,"start":5},"claude":{"pid":-3,"start":6}}"#,
            r#"{"boot_id":"b","supervisor":{"pid":10,"start":5},"claude":{"pid":2147483648,"start":6}}"#,
            r#"{"boot_id":"","supervisor":{"pid":10,"start":5},"claude":{"pid":11,"start":6}}"#,
            r#"{"boot_id":"../x","supervisor":{"pid":10,"start":5},"claude":{"pid":11,"start":6}}"#,
            r#"{"boot_id":"b","supervisor":{"pid":10,"start":5},"claude":{"pid":11,"start":6},"x":1}"#,
            r#"{"boot_id":"b","supervisor":{"pid":10,"start":5}}"#,
            "not json",
        ] {
            assert!(Record::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_or_odd_files_are_removed_unread() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.json"), vec![b' '; 10_000]).unwrap();
        std::fs::write(dir.path().join("junk.json"), b"{").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.json")).unwrap();
        clean_up(dir.path(), Duration::from_millis(10));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(Path::new("/etc/passwd").exists());
    }
}
