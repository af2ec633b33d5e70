//! The lifeline between the daemon and a wake's supervisor: a Unix socket
//! pair, one end kept by the daemon (close-on-exec, so no other child holds
//! it), the other inherited by the supervisor alone. It ties a wake's
//! processes to the daemon with plain POSIX, on Linux and macOS alike: when
//! the daemon dies, however it dies, the kernel closes its end and the
//! supervisor reads end-of-file (README.md, "claude's processes").
//!
//! Daemon → supervisor: nothing while all is well; [`KILL`] asks for
//! claude's process group to be killed at once; end of file means the
//! daemon is gone.
//! Supervisor → daemon: one line once claude is started, `started <pid>`,
//! or `failed <reason>` when it could not be.

use crate::runtime::lock::valid_pid;

/// The daemon's last word before giving up on a wake: SIGKILL the group.
pub const KILL: u8 = b'K';

/// Longest report line the daemon reads.
pub const MAX_LINE: usize = 1024;

/// What the supervisor says once it has tried to start claude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// claude runs with this pid, which is also its process group id.
    Started(u32),
    /// claude could not be started, and why.
    Failed(String),
}

impl Report {
    pub fn line(&self) -> String {
        match self {
            Self::Started(pid) => format!("started {pid}\n"),
            Self::Failed(reason) => format!("failed {}\n", reason.replace(['\n', '\r'], " ")),
        }
    }

    /// Parse one line (without its newline). The supervisor is our own
    /// program, but the line crosses a process boundary: checked anyway.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(line)
            .map_err(|_| "the wake supervisor's report is not UTF-8".to_string())?;
        match text.split_once(' ') {
            Some(("started", pid)) => parse_pid(pid)
                .map(Self::Started)
                .ok_or_else(|| format!("the wake supervisor reported an invalid pid {pid:?}")),
            Some(("failed", reason)) => Ok(Self::Failed(reason.to_string())),
            _ => Err(format!(
                "the wake supervisor's report is not understood: {text:?}"
            )),
        }
    }
}

/// A pid that may be signalled (see [`valid_pid`]).
pub fn parse_pid(text: &str) -> Option<u32> {
    text.parse::<u32>().ok().filter(|p| valid_pid(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_bad_ones_are_refused() {
        for r in [Report::Started(4242), Report::Failed("no such file".into())] {
            let line = r.line();
            assert!(line.ends_with('\n'));
            assert_eq!(Report::parse(line.trim_end().as_bytes()), Ok(r));
        }
        assert_eq!(
            Report::Failed("a\nb".into()).line(),
            "failed a b\n",
            "one line whatever the reason says"
        );
        for bad in [
            "started 0",
            "started 1",
            "started -5",
            "started 2147483648",
            "started x",
            "started",
            "hello 12",
            "",
        ] {
            assert!(Report::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(Report::parse(b"started \xff").is_err());
        assert_eq!(parse_pid("2147483647"), Some(i32::MAX as u32));
    }
}
