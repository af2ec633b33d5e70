//! The Linux side of `platform` (see `mod.rs` for what each call means).

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fd::OwnedFd;
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
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// From `/proc/locks` (proc(5)), matched by inode.
pub fn flock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let ino = file.metadata().ok()?.ino().to_string();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF"; a waiter's
        // line has "->" after the number and is skipped.
        let f: Vec<&str> = line.split_whitespace().collect();
        let inode = f.get(5)?.rsplit(':').next()?;
        (f.get(1) == Some(&"FLOCK") && inode == ino)
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// `PR_SET_PDEATHSIG` with SIGTERM (prctl(2)).
pub fn die_with_parent() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .map_err(io::Error::from)
}
