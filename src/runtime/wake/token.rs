//! The token that binds a bridge's tool calls to the wake that started it
//! (SECURITY.md, "The bridge socket"). The daemon writes a fresh token to
//! `<agent>/.meta/claude-token.txt` (0600) before starting claude and removes
//! it when the wake ends; the MCP config points the bridge at that file
//! (`--token-file`), the bridge sends the token with every call, and the
//! daemon serves a call only when it matches the agent's running wake.

use std::fmt;
use std::io;
use std::path::Path;

use crate::fsutil;

/// An unguessable per-wake secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WakeToken(String);

impl WakeToken {
    /// 244 bits from the OS's random source (two v4 UUIDs).
    pub fn generate() -> Self {
        Self(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Whether `presented` is this token, in time independent of where
    /// they differ (a same-uid peer could otherwise guess byte by byte).
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub fn write(&self, path: &Path) -> io::Result<()> {
        fsutil::write_replace(path, self.0.as_bytes(), 0o600)
    }

    /// Remove the token file; a missing file is fine.
    pub fn remove(path: &Path) {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

impl fmt::Debug for WakeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WakeToken(***)")
    }
}

/// The token a bridge found in its `--token-file`, if any. Bounded: a
/// token file is 64 bytes; anything longer is not ours.
pub fn read_presented(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut text)
        .ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_match_only_themselves_and_never_print() {
        let (a, b) = (WakeToken::generate(), WakeToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 64);
        assert!(a.matches(&a.0.clone()));
        assert!(!a.matches(&b.0));
        assert!(!a.matches(""));
        assert!(!a.matches(&a.0[..63]));
        assert_eq!(format!("{a:?}"), "WakeToken(***)");
    }

    #[test]
    fn written_0600_read_back_trimmed_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claude-token.txt");
        let t = WakeToken::generate();
        t.write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(t.matches(&read_presented(&path).unwrap()));
        WakeToken::remove(&path);
        assert!(read_presented(&path).is_none());
        WakeToken::remove(&path);
        std::fs::write(&path, "x".repeat(10_000)).unwrap();
        assert_eq!(read_presented(&path).unwrap().len(), 256);
    }
}
