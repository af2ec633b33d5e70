//! What apply created for a profile. Pruning works only from this record,
//! so apply never removes something it did not make.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::paths::{AgentId, ProfileName, ProfilePaths};
use crate::service::Platform;

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub version: u32,
    /// The config file that manages this profile; another file never prunes it.
    pub config: PathBuf,
    /// Agents whose workspaces this config declared.
    #[serde(default)]
    pub agents: BTreeSet<String>,
    /// Optional files apply wrote and must remove when no longer wanted.
    #[serde(default)]
    pub files: BTreeSet<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub platform: String,
    pub unit: String,
    pub path: PathBuf,
    /// False when the file was written but the manager could not load it;
    /// the next apply tries again.
    pub loaded: bool,
    /// Set when apply took the unit over from another writer (the original
    /// daemon's `install-service`): what it was, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_from: Option<String>,
}

impl ServiceRecord {
    pub fn platform(&self) -> Platform {
        if self.platform == Platform::Launchd.as_str() {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }

    /// This profile's unit, on a known platform, in a unit directory (which
    /// may have moved with XDG_CONFIG_HOME: plan replaces a moved unit).
    fn check(&self, profile: &ProfileName) -> Result<(), String> {
        let platform = [Platform::Systemd, Platform::Launchd]
            .into_iter()
            .find(|p| p.as_str() == self.platform)
            .ok_or("unknown service platform")?;
        if self.unit != platform.unit_name(profile) {
            return Err(format!("not the unit of profile \"{profile}\""));
        }
        let expected = platform.unit_file_name(profile);
        let dir_ok = match platform {
            Platform::Systemd => self
                .path
                .parent()
                .is_some_and(|d| d.ends_with("systemd/user")),
            Platform::Launchd => self
                .path
                .parent()
                .is_some_and(|d| d.ends_with("Library/LaunchAgents")),
        };
        if !plain_absolute(&self.path)
            || self.path.file_name() != Some(expected.as_ref())
            || !dir_ok
        {
            return Err("not a unit file path apply writes".to_string());
        }
        Ok(())
    }
}

/// Absolute, without `.` or `..` components.
fn plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Inside `<agents root>/<valid agent id>/`.
fn in_agent_dir(path: &Path, agents_root: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(agents_root) else {
        return false;
    };
    let mut parts = rest.components();
    let agent_ok = parts
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .is_some_and(|id| AgentId::parse(id).is_ok());
    plain_absolute(path) && agent_ok && parts.next().is_some()
}

impl Inventory {
    pub fn new(config: &Path) -> Self {
        Self {
            version: VERSION,
            config: config.to_path_buf(),
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.files.is_empty() && self.service.is_none()
    }

    pub fn read(path: &Path) -> Result<Option<Self>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                format!(
                    "inventory {} is unreadable ({e}); move it aside to let apply rebuild it (nothing will be pruned until then)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read inventory {}: {e}", path.display())),
        }
    }

    /// Drop every entry that is not something apply manages for this
    /// profile, returning one warning per entry. The file is ours, but
    /// anyone with the user's account can edit it, and apply moves and
    /// removes what it names: an agent id must be one safe path segment, a
    /// file must lie in an agent's directory, a service record must name
    /// this profile's unit.
    pub fn keep_managed(
        &mut self,
        profile: &ProfileName,
        paths: &ProfilePaths,
        file: &Path,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut reject = |entry: String, why: &str| {
            warnings.push(format!(
                "{}: ignoring {entry}: {why}; it is never acted on (apply drops it from the record)",
                file.display()
            ));
        };
        self.agents.retain(|a| {
            let ok = AgentId::parse(a).is_ok();
            if !ok {
                reject(format!("agent {a:?}"), "not a valid agent id");
            }
            ok
        });
        self.files.retain(|f| {
            let ok = in_agent_dir(f, &paths.agents_root);
            if !ok {
                reject(
                    format!("file {:?}", f.display().to_string()),
                    &format!(
                        "not inside an agent directory of {}",
                        paths.agents_root.display()
                    ),
                );
            }
            ok
        });
        if let Some(s) = &self.service
            && let Err(why) = s.check(profile)
        {
            reject(
                format!("service {:?} at {:?}", s.unit, s.path.display().to_string()),
                &why,
            );
            self.service = None;
        }
        warnings
    }

    pub fn to_json(&self) -> String {
        let mut s = crate::fsutil::json_pretty("inventory.json", self);
        s.push('\n');
        s
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        fsutil::write_atomic(path, self.to_json().as_bytes(), 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Home;

    #[test]
    fn only_entries_apply_manages_are_kept() {
        let home = Home::for_tests(Path::new("/h"));
        let profile = ProfileName::default_profile();
        let paths = home.profile(&profile);
        let unit = Platform::Systemd.unit_path(&home, &profile);
        let mut inv = Inventory::new(Path::new("/h/c.toml"));
        inv.agents = ["agent_a", "../../victim", "a/b", ".archive"]
            .map(String::from)
            .into();
        let good_file = paths.agents_root.join("agent_a/.meta/agent_workspace_root");
        inv.files = [
            good_file.clone(),
            PathBuf::from("/h/precious.txt"),
            paths.agents_root.join("agent_a/../../../precious.txt"),
            paths.agents_root.join(".archive/x"),
            paths.agents_root.join("agent_a"),
        ]
        .into();
        inv.service = Some(ServiceRecord {
            platform: "systemd".into(),
            unit: "cloudagent-daemon.service".into(),
            path: unit.clone(),
            loaded: true,
            adopted_from: None,
        });
        let warnings = inv.keep_managed(&profile, &paths, Path::new("/h/inv.json"));
        assert_eq!(inv.agents, ["agent_a".to_string()].into());
        assert_eq!(inv.files, [good_file].into());
        assert!(inv.service.is_some());
        assert_eq!(warnings.len(), 7, "{warnings:#?}");
        assert!(
            warnings[0]
                .starts_with("/h/inv.json: ignoring agent \"../../victim\": not a valid agent id"),
            "{warnings:#?}"
        );

        let bad_services = [
            ("systemd", "ssh-agent.service", unit.clone()),
            (
                "systemd",
                "cloudagent-daemon.service",
                PathBuf::from("/h/precious.txt"),
            ),
            (
                "systemd",
                "cloudagent-daemon.service",
                unit.parent()
                    .unwrap()
                    .join("../user/cloudagent-daemon.service"),
            ),
            ("upstart", "cloudagent-daemon.service", unit.clone()),
            (
                "launchd",
                "chat.cloudagent.daemon",
                PathBuf::from("/h/Library/LaunchAgents/x.plist"),
            ),
        ];
        for (platform, name, path) in bad_services {
            inv.service = Some(ServiceRecord {
                platform: platform.into(),
                unit: name.into(),
                path,
                loaded: true,
                adopted_from: None,
            });
            let w = inv.keep_managed(&profile, &paths, Path::new("/h/inv.json"));
            assert!(
                inv.service.is_none() && w.len() == 1,
                "{platform} {name}: {w:?}"
            );
        }
        // A unit directory that moved with XDG_CONFIG_HOME is still ours.
        inv.service = Some(ServiceRecord {
            platform: "systemd".into(),
            unit: "cloudagent-daemon.service".into(),
            path: PathBuf::from("/elsewhere/systemd/user/cloudagent-daemon.service"),
            loaded: true,
            adopted_from: None,
        });
        assert!(
            inv.keep_managed(&profile, &paths, Path::new("/h/inv.json"))
                .is_empty()
        );
    }
}
