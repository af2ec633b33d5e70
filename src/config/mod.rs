//! The declarative config: `cloudagent.toml` → `RawConfig` (serde) →
//! `Desired` (validated).

pub mod desired;
pub mod edit;
pub mod error;
pub mod locate;
pub mod mask;
pub mod raw;
pub mod secret;
pub mod server_url;

use std::path::{Path, PathBuf};

pub use desired::{Agent, DaemonSettings, Desired, Profile, Server, ServiceSettings};
pub use error::{ConfigError, Problem};
pub use raw::{PermissionMode, RawConfig, Transport, WorkspaceAccess};
pub use secret::{Secret, SecretRef};

use crate::paths::Home;
use error::Locator;

/// Environment variable naming the config file (`-f` wins over it).
pub const CONFIG_ENV: &str = "CLOUDAGENT_CONFIG";

/// Longest `wake_timeout_sec` accepted: a week. Longer values are surely
/// mistakes, and bounded durations keep deadline arithmetic exact.
pub const MAX_WAKE_TIMEOUT_SEC: u64 = 7 * 24 * 3600;
/// Most `max_concurrent_wakes` accepted.
pub const MAX_CONCURRENT_WAKES: u32 = 256;

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
    let mut desired = desired::validate(raw, path, home, &loc).map_err(ConfigError::Invalid)?;
    desired.digest = digest(text.as_bytes());
    Ok(desired)
}

/// A digest of a config file's bytes, to tell whether it changed.
pub fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
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
    let mut value = schema.to_value();
    strip_null(&mut value);
    // Readers look for these first.
    if let serde_json::Value::Object(map) = &mut value {
        let mut ordered = serde_json::Map::new();
        for key in ["$schema", "title", "description"] {
            if let Some(v) = map.remove(key) {
                ordered.insert(key.to_string(), v);
            }
        }
        ordered.append(map);
        value = serde_json::Value::Object(ordered);
    }
    let mut out = crate::fsutil::json_pretty("the JSON schema", &value);
    out.push('\n');
    out
}

/// TOML has no null: an optional key is simply absent. schemars describes
/// `Option<T>` as "T or null"; keep only T.
fn strip_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(map) = v else {
        if let Value::Array(items) = v {
            items.iter_mut().for_each(strip_null);
        }
        return;
    };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            map.insert("type".to_string(), only);
        }
    }
    if let Some(Value::Array(branches)) = map.get("anyOf") {
        let rest: Vec<Value> = branches
            .iter()
            .filter(|b| b.get("type").is_none_or(|t| t != "null"))
            .cloned()
            .collect();
        if rest.len() == 1
            && let Value::Object(inner) = &rest[0]
        {
            map.remove("anyOf");
            for (k, val) in inner {
                map.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
    }
    // serde(default) on a struct field makes schemars print the all-empty
    // default object, which says nothing to a reader.
    if map.get("default").is_some_and(|d| {
        d.as_object()
            .is_some_and(|o| o.values().all(Value::is_null))
    }) {
        map.remove("default");
    }
    for (_, child) in map.iter_mut() {
        strip_null(child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_is_current() {
        let committed = include_str!("../../schema/cloudagent.schema.json");
        assert!(
            committed == schema_json(),
            "schema/cloudagent.schema.json is stale: run `cargo run -- schema > schema/cloudagent.schema.json` and commit it"
        );
    }

    #[test]
    fn every_key_has_a_description() {
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        let mut missing = Vec::new();
        let mut objects = vec![("root".to_string(), &schema)];
        if let Some(defs) = schema["$defs"].as_object() {
            objects.extend(defs.iter().map(|(k, v)| (k.clone(), v)));
        }
        for (name, obj) in objects {
            for (key, prop) in obj["properties"].as_object().into_iter().flatten() {
                if prop["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(format!("{name}.{key}"));
                }
            }
            for (i, variant) in obj["oneOf"].as_array().into_iter().flatten().enumerate() {
                if variant["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(format!("{name} variant {i}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys without a description: {missing:?}"
        );
    }
}
