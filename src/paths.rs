//! Where things live on disk. The default profile keeps the original
//! daemon's paths byte-for-byte (PROTOCOL §6.1, §6.6) so an existing install
//! carries over; named profiles get their own directories.

use std::fmt;
use std::path::{Path, PathBuf};

/// A validated profile name: `default`, or `[a-z0-9][a-z0-9-]{0,30}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

pub const DEFAULT_PROFILE: &str = "default";

impl ProfileName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = {
            let b = raw.as_bytes();
            !b.is_empty()
                && b.len() <= 31
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && b[1..]
                    .iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        };
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(format!(
                "invalid profile name {raw:?}: must match [a-z0-9][a-z0-9-]{{0,30}} (e.g. \"fr\", \"prod\", \"staging-eu\")"
            ))
        }
    }

    pub fn default_profile() -> Self {
        Self(DEFAULT_PROFILE.to_string())
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_PROFILE
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated agent id: one safe path segment. The original used the id as
/// a path segment unchecked, so a server-sent `../x` escaped the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(String);

impl AgentId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw != "."
            && raw != ".."
            && !raw.starts_with('.')
            && raw
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(format!(
                "invalid agent id {raw:?}: must be 1-128 characters of A-Z a-z 0-9 _ - . and must not start with a dot"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The user's directories, read once from the environment.
#[derive(Debug, Clone)]
pub struct Home {
    pub home: PathBuf,
    pub config_home: PathBuf,
}

impl Home {
    pub fn from_env() -> Result<Self, String> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or("HOME is not set; cloudagent-daemon keeps its files under $HOME/.cloudagent")?;
        if !home.is_absolute() {
            return Err(format!(
                "HOME must be an absolute path, got {}",
                home.display()
            ));
        }
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"));
        Ok(Self { home, config_home })
    }

    pub fn for_tests(home: &Path) -> Self {
        Self {
            home: home.to_path_buf(),
            config_home: home.join(".config"),
        }
    }

    pub fn default_config_file(&self) -> PathBuf {
        self.config_home.join("cloudagent").join("cloudagent.toml")
    }

    pub fn cloudagent_root(&self) -> PathBuf {
        self.home.join(".cloudagent")
    }

    /// `~/.cloudagent/daemon/profiles`, where named profiles live.
    pub fn named_profiles_dir(&self) -> PathBuf {
        self.cloudagent_root().join("daemon").join("profiles")
    }

    pub fn profile(&self, name: &ProfileName) -> ProfilePaths {
        let root = self.cloudagent_root();
        let (base, agents_root) = if name.is_default() {
            (root.join("daemon"), root.join("agents"))
        } else {
            (
                self.named_profiles_dir().join(name.as_str()),
                root.join(format!("agents-{name}")),
            )
        };
        ProfilePaths { base, agents_root }
    }

    pub fn systemd_user_dir(&self) -> PathBuf {
        self.config_home.join("systemd").join("user")
    }

    pub fn launch_agents_dir(&self) -> PathBuf {
        self.home.join("Library").join("LaunchAgents")
    }
}

/// Paths of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePaths {
    /// `~/.cloudagent/daemon` or `~/.cloudagent/daemon/profiles/<name>`.
    pub base: PathBuf,
    /// Metadata root for agent workspaces: `~/.cloudagent/agents[-<name>]`.
    pub agents_root: PathBuf,
}

impl ProfilePaths {
    pub fn logs_dir(&self) -> PathBuf {
        self.base.join("logs")
    }
    pub fn state_file(&self) -> PathBuf {
        self.base.join("state.json")
    }
    pub fn legacy_config_file(&self) -> PathBuf {
        self.base.join("config.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.base.join("daemon.pid")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.base.join("daemon.lock")
    }
    pub fn socket(&self) -> PathBuf {
        self.base.join("bridge.sock")
    }
    /// This profile's own metrics socket (the original shared one).
    pub fn metrics_socket(&self) -> PathBuf {
        self.base.join("metrics.sock")
    }
    pub fn inventory_file(&self) -> PathBuf {
        self.base.join("inventory.json")
    }
    /// Agents the server assigned to this host, kept by the daemon so that
    /// apply never prunes them.
    pub fn assigned_agents_file(&self) -> PathBuf {
        self.base.join("assigned-agents.json")
    }
    /// Records of running wakes, for cleaning up after a daemon that was
    /// killed with its wakes' supervisors.
    pub fn wakes_dir(&self) -> PathBuf {
        self.base.join("wakes")
    }
    pub fn agent_dir(&self, id: &AgentId) -> PathBuf {
        self.agents_root.join(id.as_str())
    }
    /// Where removed agents' workspaces are moved; a dot-directory so that
    /// scans of the metadata root never mistake it for an agent.
    pub fn archive_dir(&self) -> PathBuf {
        self.agents_root.join(".archive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names() {
        for ok in ["default", "fr", "prod", "staging-eu", "0", "a-"] {
            assert!(ProfileName::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(32);
        for bad in ["", "Fr", "-x", "a_b", "a.b", long.as_str(), "ü"] {
            assert!(ProfileName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_ids() {
        for ok in ["agent_01HXX", "a", "a.b-c_d"] {
            assert!(AgentId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "ä"] {
            assert!(AgentId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_profile_keeps_original_paths() {
        let home = Home::for_tests(Path::new("/h"));
        let p = home.profile(&ProfileName::default_profile());
        assert_eq!(p.base, PathBuf::from("/h/.cloudagent/daemon"));
        assert_eq!(p.agents_root, PathBuf::from("/h/.cloudagent/agents"));
        let fr = home.profile(&ProfileName::parse("fr").unwrap());
        assert_eq!(fr.base, PathBuf::from("/h/.cloudagent/daemon/profiles/fr"));
        assert_eq!(fr.agents_root, PathBuf::from("/h/.cloudagent/agents-fr"));
        assert_eq!(
            fr.socket(),
            PathBuf::from("/h/.cloudagent/daemon/profiles/fr/bridge.sock")
        );
    }
}
