//! The Linux side of `platform` (see `mod.rs` for what each call means).

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

/// `O_PATH`: no read permission needed and no access time touched
/// (open(2)).
pub fn open_dir_for_lookup(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `/proc/<pid>/stat` field 3 is `Z` (proc(5)); comm may hold spaces or `)`.
pub fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"))
}

/// From `/proc/locks` (proc(5)), matched by device and inode: the kernel
/// prints `MAJOR:MINOR:INODE` with the device numbers in hex (fs/locks.c).
/// A file whose device the kernel reports differently from `stat` (btrfs
/// subvolumes) finds no holder rather than a wrong one.
pub fn flock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF"; a waiter's
        // line has "->" after the number and is skipped.
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// The kernel's random per-boot UUID (`/proc/sys/kernel/random/boot_id`,
/// random(4)).
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// `/proc/<pid>/stat` field 22, `starttime`: clock ticks after boot
/// (proc(5)).
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` after `(comm)`, so that index 0 is
/// field 3 (`state`); comm may hold spaces or `)`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// `PR_SET_CHILD_SUBREAPER` (prctl(2)).
pub fn become_subreaper() -> io::Result<bool> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map(|()| true)
        .map_err(io::Error::from)
}

/// `SO_PEERCRED` (unix(7)): the peer's pid, uid and gid when it called
/// `listen` or `connect`.
pub fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<super::PeerCred> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable ucred and `len` its size.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(super::PeerCred {
        uid: cred.uid,
        pid: u32::try_from(cred.pid).ok().filter(|p| *p > 0),
    })
}

/// Every process whose `/proc/<pid>/stat` field 4 (`ppid`) is this
/// process. Orphans are re-parented to the process, not to one of its
/// threads, so `/proc/self/task/*/children` could miss some.
pub fn own_children() -> Vec<u32> {
    processes_where(4, std::process::id())
}

/// Every process whose `/proc/<pid>/stat` field 5 (`pgrp`) is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    processes_where(5, pgid)
}

/// The pids whose `/proc/<pid>/stat` field `field` (numbered as in
/// proc(5), 4 or later) equals `value`.
fn processes_where(field: usize, value: u32) -> Vec<u32> {
    let value = value.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f.get(field - 3) == Some(&value)))
        .collect()
}
