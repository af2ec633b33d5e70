//! Which process is a profile's running daemon. The PID file only names a
//! candidate: it may be stale (the daemon was killed, the pid reused by an
//! unrelated process) or forged. What proves a process is the daemon is
//! what only the daemon has: the `flock` on `daemon.lock` (held for its
//! whole life), or the listening end of the profile's `bridge.sock`, asked
//! for its peer credentials. Both survive a `cargo install` over the
//! running binary and neither needs `/proc`. `stop` and `status` act on
//! this answer and never on the PID file alone.

use std::path::Path;
use std::time::Duration;

use rustix::fd::AsFd;

use super::lock::{self, Holder};

/// How long the socket may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// This pid is the profile's daemon: it holds `daemon.lock`, or it
    /// listens on the profile's socket as our own uid.
    Daemon(u32),
    /// Nobody holds `daemon.lock`: no daemon runs for the profile.
    None,
    /// `daemon.lock` is held but the OS does not say by whom, and the
    /// socket gives no answer that names a pid.
    Unidentified,
}

/// The profile's daemon, proven (see the module docs).
pub async fn find(lock_file: &Path, socket: &Path) -> Found {
    match lock::holder(lock_file) {
        Holder::Pid(pid) => Found::Daemon(pid),
        Holder::Free => Found::None,
        Holder::Unknown => match socket_peer(socket).await {
            Some(pid) => Found::Daemon(pid),
            None => Found::Unidentified,
        },
    }
}

/// The pid listening on `socket`, when it runs as our uid (another user's
/// process proves nothing about our daemon).
pub async fn socket_peer(socket: &Path) -> Option<u32> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(socket))
        .await
        .ok()?
        .ok()?;
    let cred = crate::platform::peer_credentials(stream.as_fd()).ok()?;
    let me = rustix::process::getuid().as_raw();
    (cred.uid == me)
        .then_some(cred.pid)
        .flatten()
        .filter(|p| lock::valid_pid(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lock_holder_or_the_socket_listener_is_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let (lock_file, pid_file, socket) = (
            dir.path().join("daemon.lock"),
            dir.path().join("daemon.pid"),
            dir.path().join("bridge.sock"),
        );
        assert_eq!(find(&lock_file, &socket).await, Found::None);
        let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
        assert_eq!(
            socket_peer(&socket).await,
            Some(std::process::id()),
            "the listener's pid, from the peer credentials"
        );
        assert_eq!(
            find(&lock_file, &socket).await,
            Found::None,
            "a socket without the lock is not a daemon"
        );
        let _held = lock::acquire(&lock_file, &pid_file).unwrap();
        assert_eq!(
            find(&lock_file, &socket).await,
            Found::Daemon(std::process::id())
        );
        assert_eq!(socket_peer(&dir.path().join("none.sock")).await, None);
    }
}
