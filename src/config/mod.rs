//! The declarative config: `cloudagent.toml` → `RawConfig` (serde) →
//! `Desired` (validated).

pub mod desired;
pub mod error;
pub mod locate;
pub mod raw;
pub mod secret;

use std::path::{Path, PathBuf};

pub use desired::{Agent, DaemonSettings, Desired, Profile, Server, ServiceSettings};
pub use error::{ConfigError, Problem};
pub use raw::{PermissionMode, RawConfig, Transport};
pub use secret::{Secret, SecretRef};

use crate::paths::Home;
use error::Locator;

/// Environment variable naming the config file (`-f` wins over it).
pub const CONFIG_ENV: &str = "CLOUDAGENT_CONFIG";

/// `-f PATH` > `$CLOUDAGENT_CONFIG` > `$XDG_CONFIG_HOME/cloudagent/cloudagent.toml`.
/// Relative paths are made absolute against the current directory but
/// symlinks are kept, so a watcher follows a nix profile's symlink swap.
pub fn resolve_path(flag: Option<&Path>, home: &Home) -> PathBuf {
    let chosen = flag
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| home.default_config_file());
    if chosen.is_absolute() {
        chosen
    } else {
        std::env::current_dir()
            .map(|d| d.join(&chosen))
            .unwrap_or(chosen)
    }
}

pub fn load(path: &Path, home: &Home) -> Result<Desired, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path.to_path_buf(), home)
}

pub fn parse(text: &str, path: PathBuf, home: &Home) -> Result<Desired, ConfigError> {
    let loc = Locator::new(path.clone(), text);
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        ConfigError::Invalid(vec![loc.at_offset(offset, clean_toml_message(e.message()))])
    })?;
    desired::validate(raw, path, home, &loc).map_err(ConfigError::Invalid)
}

/// toml's messages are one line each but some carry trailing newlines or
/// are misleading for bare words; keep them short and add the usual fix.
fn clean_toml_message(msg: &str) -> String {
    let msg = msg.trim();
    if msg.starts_with("invalid float")
        || msg.starts_with("invalid integer")
        || msg.contains("string values must be quoted")
    {
        format!("{msg} (text values must be quoted, e.g. key = \"value\")")
    } else {
        msg.to_string()
    }
}

/// The JSON Schema of `cloudagent.toml`, generated from the raw types.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(RawConfig);
    let mut out = serde_json::to_string_pretty(&schema).unwrap_or_default();
    out.push('\n');
    out
}
