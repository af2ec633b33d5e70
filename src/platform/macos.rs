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

/// `kern.boottime` (sysctl(3)): when the machine booted, as
/// `seconds.microseconds`; it changes with every boot.
pub fn boot_id() -> Option<String> {
    let mut mib = [libc::CTL_KERN, libc::KERN_BOOTTIME];
    let mut tv = std::mem::MaybeUninit::<libc::timeval>::zeroed();
    let mut size = std::mem::size_of::<libc::timeval>();
    // SAFETY: `tv` is a writable timeval and `size` its size.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            2,
            tv.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || size != std::mem::size_of::<libc::timeval>() {
        return None;
    }
    // SAFETY: the kernel filled the whole timeval (checked above).
    let tv = unsafe { tv.assume_init() };
    Some(format!("{}.{:06}", tv.tv_sec, tv.tv_usec))
}

/// `proc_pidinfo(PROC_PIDTBSDINFO)`: `pbi_start_tvsec` and
/// `pbi_start_tvusec`, as microseconds since the epoch (libproc.h).
pub fn start_time(pid: u32) -> Option<u64> {
    let info = bsd_info(pid)?;
    info.pbi_start_tvsec
        .checked_mul(1_000_000)?
        .checked_add(info.pbi_start_tvusec)
}

/// macOS has no child subreaper: an orphan always goes to launchd. A wake's
/// process that left claude's process group (`setsid`) and outlived its
/// parent cannot be found from the supervisor; the lifeline and the group
/// kill still apply (README.md, "claude's processes").
pub fn become_subreaper() -> io::Result<bool> {
    Ok(false)
}

/// `proc_listchildpids` (libproc.h).
pub fn own_children() -> Vec<u32> {
    // SAFETY: as `list_pids` requires.
    list_pids(|buf, bytes| unsafe {
        libc::proc_listchildpids(std::process::id() as i32, buf, bytes)
    })
}

/// `proc_listpgrppids` (libproc.h).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(pgid) = i32::try_from(pgid) else {
        return Vec::new();
    };
    // SAFETY: as `list_pids` requires.
    list_pids(|buf, bytes| unsafe { libc::proc_listpgrppids(pgid, buf, bytes) })
}

/// Call a libproc pid lister with a zeroed buffer of `bytes` bytes; `list`
/// must write at most that many.
fn list_pids(list: impl FnOnce(*mut libc::c_void, libc::c_int) -> libc::c_int) -> Vec<u32> {
    const MAX: usize = 4096;
    let mut pids = vec![0 as libc::pid_t; MAX];
    let bytes = (MAX * std::mem::size_of::<libc::pid_t>()) as libc::c_int;
    let n = list(pids.as_mut_ptr().cast(), bytes);
    // The buffer was zeroed, so an answer counted in bytes rather than in
    // pids only adds zeros, which are skipped.
    let n = usize::try_from(n).unwrap_or(0).min(MAX);
    pids[..n]
        .iter()
        .filter_map(|p| u32::try_from(*p).ok().filter(|p| *p > 0))
        .collect()
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
