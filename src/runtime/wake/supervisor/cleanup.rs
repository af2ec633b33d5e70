//! After claude has exited: nothing it started outlives the wake. What is
//! left of its process group, and every child the supervisor has adopted
//! as a subreaper (Linux: descendants that left the group with `setsid`
//! and whose parent died), gets SIGTERM, then SIGKILL after the grace
//! period. Adopted children are reaped as they exit; claude itself stays
//! a zombie until the end, so that its group's id cannot be reused while
//! the group is signalled. Every wait is bounded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rustix::process::{
    Pid, Signal, WaitOptions, getpgid, kill_process, kill_process_group, waitpid,
};

use crate::platform;

/// How long SIGKILLed processes get to disappear (the kernel needs no
/// more; this only bounds the loop).
const KILL_WAIT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

pub fn stop_the_rest(claude: u32, grace: Duration) {
    let Some(group) = Pid::from_raw(claude as i32) else {
        return;
    };
    if sweep(group, Signal::TERM, grace) {
        return;
    }
    if !sweep(group, Signal::KILL, KILL_WAIT) {
        eprintln!(
            "cloudagent-daemon wake-supervisor: processes started by claude are still running after SIGKILL"
        );
    }
}

/// Send `sig` to claude's group and to each adopted child outside it (once
/// each, as they appear), reaping children, until none is left (true) or
/// `within` has passed (false). SIGKILL goes to the group on every round,
/// so that a process forking in a loop cannot outrun it.
fn sweep(group: Pid, sig: Signal, within: Duration) -> bool {
    let claude = group.as_raw_nonzero().get() as u32;
    let deadline = Instant::now() + within;
    let mut signalled = BTreeSet::new();
    let _ = kill_process_group(group, sig);
    loop {
        let children = reap_all_but(claude);
        let group_left = platform::group_members(claude)
            .into_iter()
            .any(|p| p != claude && !platform::is_zombie(p));
        if !group_left && children.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        if group_left && sig == Signal::KILL {
            let _ = kill_process_group(group, sig);
        }
        for pid in children {
            let Some(p) = Pid::from_raw(pid as i32) else {
                continue;
            };
            // Group members got the group's signal already.
            if signalled.insert(pid) && getpgid(Some(p)).ok() != Some(group) {
                let _ = kill_process(p, sig);
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Reap every child that has exited, except claude; returns the children
/// still there (claude excluded).
fn reap_all_but(claude: u32) -> Vec<u32> {
    let mut left = Vec::new();
    for pid in platform::own_children() {
        let Some(p) = Pid::from_raw(pid as i32).filter(|_| pid != claude) else {
            continue;
        };
        // Some: reaped now. Err: not (or no longer) our child.
        if let Ok(None) = waitpid(Some(p), WaitOptions::NOHANG) {
            left.push(pid);
        }
    }
    left
}
