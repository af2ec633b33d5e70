//! One daemon per profile: an exclusive `flock` on `daemon.lock` held for
//! the daemon's life (PROTOCOL §6.1), and the PID file next to it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::fsutil;

pub struct ProfileLock {
    _file: File,
}

#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its PID if the PID file says so.
    Held(Option<u32>),
    Io(io::Error),
}

pub fn acquire(lock_path: &Path, pid_path: &Path) -> Result<ProfileLock, LockError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path)
        .map_err(LockError::Io)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(ProfileLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            Err(LockError::Held(read_pid(pid_path).ok().flatten()))
        }
        Err(e) => Err(LockError::Io(e.into())),
    }
}

/// The PID file, removed when dropped.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn write(path: &Path) -> io::Result<Self> {
        fsutil::write_atomic(path, std::process::id().to_string().as_bytes(), 0o644)?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `Ok(None)`: no PID file. `Err`: unreadable or not a number.
pub fn read_pid(path: &Path) -> Result<Option<u32>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| "corrupt".to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Signal 0: is the process there (EPERM counts as alive)? A zombie — exited
/// but not yet reaped by its parent — is not running.
pub fn alive(pid: u32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    exists && !crate::platform::is_zombie(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, pid) = (
            dir.path().join("daemon.lock"),
            dir.path().join("daemon.pid"),
        );
        let held = acquire(&lock, &pid).unwrap();
        let pidfile = PidFile::write(&pid).unwrap();
        match acquire(&lock, &pid) {
            Err(LockError::Held(Some(p))) => assert_eq!(p, std::process::id()),
            _ => panic!("second lock should fail"),
        }
        drop(pidfile);
        assert!(!pid.exists());
        drop(held);
        assert!(acquire(&lock, &pid).is_ok());
    }

    #[test]
    fn liveness() {
        assert!(alive(std::process::id()));
        assert!(!alive(0x7fff_fff0));
    }
}
