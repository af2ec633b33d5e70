//! Every call whose behaviour differs between operating systems, each with
//! a Linux side (`linux.rs`) and a macOS side (`macos.rs`) of the same
//! signature. Code elsewhere calls these functions and never `cfg`s on the
//! OS itself; `docs/PLATFORMS.md` lists each one with both implementations
//! and the documentation it relies on.

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fd::{BorrowedFd, OwnedFd};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as imp;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("cloudagent-daemon supports Linux and macOS");

/// A directory handle good enough for `*at()` lookups and `fstatat` of its
/// entries, opened without following a final symlink's target content.
pub fn open_dir_for_lookup(path: &Path) -> rustix::io::Result<OwnedFd> {
    imp::open_dir_for_lookup(path)
}

/// Whether `pid` is a zombie: exited, not yet reaped by its parent. Such a
/// process answers signal 0 but is not running.
pub fn is_zombie(pid: u32) -> bool {
    imp::is_zombie(pid)
}

/// The pid holding the `flock` on `file`, when the OS can tell without
/// touching the file.
pub fn flock_holder(file: &File) -> Option<u32> {
    imp::flock_holder(file)
}

/// An identifier of the current boot, or `None` when the OS does not tell.
/// A pid and its start time identify a process only within one boot.
pub fn boot_id() -> Option<String> {
    imp::boot_id()
}

/// When `pid` started, in the OS's own opaque unit (compare, never
/// interpret): with the pid, it tells a process apart from a later one
/// that reuses its number. `None` when there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    imp::start_time(pid)
}

/// Ask that orphaned descendants be re-parented to this process rather
/// than to init, so that a wake's processes that left its process group
/// (`setsid`) can still be found and stopped. Returns false where the OS
/// has no such thing.
pub fn become_subreaper() -> io::Result<bool> {
    imp::become_subreaper()
}

/// The pids of this process's children, zombies included.
pub fn own_children() -> Vec<u32> {
    imp::own_children()
}

/// The pids of the members of process group `pgid`, zombies included.
pub fn group_members(pgid: u32) -> Vec<u32> {
    imp::group_members(pgid)
}

/// Who is at the other end of a connected unix socket, as the kernel saw
/// it when that end bound and listened (or connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    /// `None` where the OS does not tell.
    pub pid: Option<u32>,
}

/// The peer credentials of a connected unix socket.
pub fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<PeerCred> {
    imp::peer_credentials(socket)
}
