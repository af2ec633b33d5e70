//! One apply at a time per home: `apply`, a daemon's start and its config
//! reloads each observe, plan and apply while holding an exclusive `flock`
//! on `~/.cloudagent/apply.lock`. Without it two of them could plan from
//! the same observation and both rewrite an inventory, losing what the
//! other recorded (and so what a later apply may prune or archive).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use crate::fsutil;

/// How long an apply waits for another one by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Held until dropped (the kernel releases it if the process dies).
pub struct ApplyLock {
    _file: File,
}

pub fn lock_path(cloudagent_root: &Path) -> PathBuf {
    cloudagent_root.join("apply.lock")
}

/// Take the lock, waiting up to `timeout` for another apply to finish;
/// `waiting` is told once, with the holder's PID when known, if it has to
/// wait. The error says who holds it and what to do.
pub fn acquire(
    cloudagent_root: &Path,
    timeout: Duration,
    waiting: impl FnOnce(Option<u32>),
) -> Result<ApplyLock, String> {
    let path = lock_path(cloudagent_root);
    let io_err = |e: io::Error| format!("cannot take the apply lock {}: {e}", path.display());
    fsutil::create_dir_all(cloudagent_root, 0o755).map_err(io_err)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err)?;
    let start = Instant::now();
    let mut waiting = Some(waiting);
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = crate::platform::flock_holder(&file);
                if start.elapsed() >= timeout {
                    let who = holder_note(holder);
                    return Err(format!(
                        "another apply is running{who} and still holds {} after {}s; wait for it to finish, or raise --lock-timeout",
                        path.display(),
                        timeout.as_secs()
                    ));
                }
                if let Some(w) = waiting.take() {
                    w(holder);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(io_err(e.into())),
        }
    }
    Ok(ApplyLock { _file: file })
}

/// " (pid N)" when the holder is known, for messages.
pub fn holder_note(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_apply_waits_then_times_out_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".cloudagent");
        let held = acquire(&root, Duration::ZERO, |_| panic!("free lock")).unwrap();
        let mut told = None;
        let err = match acquire(&root, Duration::from_millis(120), |p| told = Some(p)) {
            Err(e) => e,
            Ok(_) => panic!("lock taken twice"),
        };
        let me = std::process::id();
        assert_eq!(told, Some(Some(me)));
        assert!(err.contains(&format!("(pid {me})")), "{err}");
        assert!(err.contains("--lock-timeout"), "{err}");
        drop(held);
        let again = acquire(&root, Duration::ZERO, |_| panic!("released lock"));
        assert!(again.is_ok());
        let mode = fsutil::mode_of(&std::fs::metadata(lock_path(&root)).unwrap());
        assert_eq!(mode, 0o600);
    }
}
