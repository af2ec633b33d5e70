//! What apply created for a profile. Pruning works only from this record,
//! so apply never removes something it did not make.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
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
}

impl ServiceRecord {
    pub fn platform(&self) -> Platform {
        if self.platform == Platform::Launchd.as_str() {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }
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

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        fsutil::write_atomic(path, self.to_json().as_bytes(), 0o600)
    }
}
