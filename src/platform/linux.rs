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
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
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

/// `PR_SET_PDEATHSIG` with SIGTERM (prctl(2)).
pub fn die_with_parent() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
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
