//! One daemon per profile: an exclusive `flock` on `daemon.lock` held for
//! the daemon's life (PROTOCOL §6.1), and the PID file next to it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use thiserror::Error;

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

/// What a PID file can hold that is not a usable pid.
#[derive(Debug, Error)]
pub enum PidFileError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{} is corrupt (not a number)", path.display())]
    Corrupt { path: PathBuf },
    /// A number no daemon can have: 0 and negative numbers address process
    /// groups, 1 is init, and 4294967295 read as a pid is -1, which
    /// `kill` takes as every process the user may signal.
    #[error(
        "{} holds {value}, which is not a daemon's process id (2 to {}); nothing was signalled. Remove the file if no daemon runs",
        path.display(),
        i32::MAX
    )]
    OutOfRange { path: PathBuf, value: String },
}

/// `Ok(None)`: no PID file.
pub fn read_pid(path: &Path) -> Result<Option<u32>, PidFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PidFileError::Unreadable {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let text = text.trim();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PidFileError::Corrupt {
            path: path.to_path_buf(),
        });
    }
    match text.parse::<u32>() {
        Ok(pid) if valid_pid(pid) => Ok(Some(pid)),
        _ => Err(PidFileError::OutOfRange {
            path: path.to_path_buf(),
            value: text.to_string(),
        }),
    }
}

/// A pid that names one process other than init: 2..=i32::MAX.
pub fn valid_pid(pid: u32) -> bool {
    (2..=i32::MAX as u32).contains(&pid)
}

/// Signal 0: is the process there (EPERM counts as alive)? A zombie — exited
/// but not yet reaped by its parent — is not running.
pub fn alive(pid: u32) -> bool {
    if !valid_pid(pid) {
        return false;
    }
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    exists && !crate::platform::is_zombie(pid)
}

/// Who holds a profile's `daemon.lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: no daemon runs for the profile.
    Free,
    /// This process holds it: it is the profile's daemon.
    Pid(u32),
    /// Someone holds it; the OS does not say who (macOS).
    Unknown,
}

/// Who holds the lock, without creating the file. Where the OS cannot
/// name the holder, a non-blocking shared lock taken and dropped at once
/// tells whether anyone does (a daemon starting in that instant would see
/// the lock taken and say so).
pub fn holder(lock_path: &Path) -> Holder {
    let file = match File::open(lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Holder::Free,
        Err(_) => return Holder::Unknown,
    };
    if let Some(pid) = crate::platform::flock_holder(&file).filter(|p| valid_pid(*p)) {
        return Holder::Pid(pid);
    }
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(&file, FlockOperation::Unlock);
            Holder::Free
        }
        Err(_) => Holder::Unknown,
    }
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
        for pid in [0, 1, u32::MAX, i32::MAX as u32 + 1] {
            assert!(!alive(pid), "{pid}");
        }
    }

    #[test]
    fn pid_files_outside_the_range_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.pid");
        for (text, want) in [
            ("4242", Some(Ok(4242))),
            (" 4242\n", Some(Ok(4242))),
            ("2147483647", Some(Ok(i32::MAX as u32))),
            ("4294967295", None),
            ("2147483648", None),
            ("99999999999999999999", None),
            ("-1", None),
            ("0", None),
            ("1", None),
            ("abc", Some(Err(()))),
            ("", Some(Err(()))),
        ] {
            std::fs::write(&path, text).unwrap();
            let got = read_pid(&path);
            match (want, got) {
                (Some(Ok(w)), Ok(Some(p))) => assert_eq!(w, p),
                (Some(Err(())), Err(PidFileError::Corrupt { .. })) => {}
                (None, Err(e @ PidFileError::OutOfRange { .. })) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(text.trim()) && msg.contains("daemon.pid"),
                        "{msg}"
                    );
                }
                (w, g) => panic!("{text:?}: wanted {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn the_lock_holder_is_known_or_at_least_that_it_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, pid) = (
            dir.path().join("daemon.lock"),
            dir.path().join("daemon.pid"),
        );
        assert_eq!(holder(&lock), Holder::Free, "no file");
        drop(acquire(&lock, &pid).unwrap());
        assert_eq!(holder(&lock), Holder::Free, "file, no holder");
        let held = acquire(&lock, &pid).unwrap();
        let h = holder(&lock);
        if cfg!(target_os = "linux") {
            assert_eq!(h, Holder::Pid(std::process::id()));
        } else {
            assert_eq!(h, Holder::Unknown);
        }
        drop(held);
        assert_eq!(holder(&lock), Holder::Free, "released");
    }
}
