//! The macOS side of `platform` (see `mod.rs` for what each call means).

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

/// No `O_PATH` on macOS: a read-only directory descriptor (open(2)). A
/// directory that can be searched but not read fails here; the caller then
/// falls back to per-path lookups.
pub fn open_dir_for_lookup(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `proc_pidinfo(PROC_PIDTBSDINFO)`: `pbi_status == SZOMB` (libproc.h).
pub fn is_zombie(pid: u32) -> bool {
    bsd_info(pid).is_some_and(|info| info.pbi_status == libc::SZOMB)
}

pub(super) fn bsd_info(pid: u32) -> Option<libc::proc_bsdinfo> {
    let pid = i32::try_from(pid).ok()?;
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as i32;
    // SAFETY: the buffer is a properly sized, writable proc_bsdinfo.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    // SAFETY: the kernel filled `size` bytes (zeroed before otherwise).
    (n == size).then(|| unsafe { info.assume_init() })
}

/// macOS has no equivalent of `/proc/locks`: the holder is unknown.
pub fn flock_holder(_file: &File) -> Option<u32> {
    None
}

/// macOS has no parent-death signal; a wake's processes are tied to the
/// daemon by the supervisor's lifeline instead (docs/PLATFORMS.md).
pub fn die_with_parent() -> io::Result<()> {
    Ok(())
}

/// `getpeereid` (getpeereid(3)) for the uid, `LOCAL_PEERPID` (unix(4),
/// sys/un.h) for the pid of the peer when it called `listen` or `connect`.
pub fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<super::PeerCred> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: both out-pointers are valid for writes.
    if unsafe { libc::getpeereid(fd, &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut pid: libc::pid_t = 0;
    let mut len = std::mem::size_of::<libc::pid_t>() as libc::socklen_t;
    // SAFETY: `pid` is a writable pid_t and `len` its size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_LOCAL,
            libc::LOCAL_PEERPID,
            (&mut pid as *mut libc::pid_t).cast(),
            &mut len,
        )
    };
    Ok(super::PeerCred {
        uid,
        pid: (r == 0)
            .then(|| u32::try_from(pid).ok())
            .flatten()
            .filter(|p| *p > 0),
    })
}
