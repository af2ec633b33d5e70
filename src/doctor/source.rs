//! Where the profile's settings come from (`cloudagent.toml`, else the
//! original's `config.json`, as `start` chooses), and the `config` and
//! `key` rows. The key's value is read to check it, never shown.

use std::path::{Path, PathBuf};

use super::report::Row;
use crate::config::{self, Desired, Secret, SecretRef};
use crate::fsutil;
use crate::paths::{Home, ProfileName, ProfilePaths};
use crate::runtime::settings::Settings;

/// What the other checks need from the settings.
pub struct Source {
    pub profile: ProfileName,
    pub home: Home,
    pub paths: ProfilePaths,
    /// `cloudagent.toml` when it declares the profile.
    pub desired: Option<Desired>,
    pub server_url: Option<String>,
    pub insecure: bool,
    pub key: Option<Secret>,
    /// Where a rejected key is to be replaced.
    pub key_home: String,
    pub claude_binary: String,
    pub config_row: Row,
    pub key_row: Row,
    pub notes: Vec<String>,
    /// Human words for where the settings came from.
    pub origin: Option<String>,
}

impl Source {
    pub fn load(config_flag: Option<&Path>, profile: &ProfileName, home: &Home) -> Self {
        let path = config::resolve_path(config_flag, home);
        let paths = home.profile(profile);
        let legacy = paths.legacy_config_file();
        let mut s = Self {
            profile: profile.clone(),
            home: home.clone(),
            paths,
            desired: None,
            server_url: None,
            insecure: false,
            key: None,
            key_home: "the profile's key file".into(),
            claude_binary: "claude".into(),
            config_row: Row::ok("config", ""),
            key_row: Row::unknown("key", "no configuration, no key"),
            notes: Vec::new(),
            origin: None,
        };
        let explicit = config_flag.is_some()
            || std::env::var_os(config::CONFIG_ENV).is_some_and(|v| !v.is_empty());
        if explicit || path.exists() {
            match config::load(&path, home) {
                Err(e) => {
                    s.config_row = Row::alert(
                        "config",
                        format!(
                            "{} is not valid: {}",
                            path.display(),
                            first_line(&e.to_string())
                        ),
                        format!(
                            "fix the file (`cloudagent-daemon plan -f {}` shows every problem with its line)",
                            path.display()
                        ),
                    );
                    return s.with_env_overrides();
                }
                Ok(d) if d.profile(profile).is_some() || explicit || !legacy.exists() => {
                    s.take_desired(d, &path);
                    return s.with_env_overrides();
                }
                Ok(_) => {}
            }
        }
        if legacy.exists() {
            s.take_legacy(&legacy);
        } else {
            s.config_row = Row::alert(
                "config",
                format!("no configuration for profile '{profile}'"),
                format!(
                    "declare [profiles.{profile}] in {} (README, examples/), or run `cloudagent-daemon login`",
                    path.display()
                ),
            );
            s.notes
                .push("daemon not configured (run `cloudagent-daemon login`)".into());
        }
        s.with_env_overrides()
    }

    fn with_env_overrides(mut self) -> Self {
        if let Some(bin) =
            std::env::var_os(crate::protocol::env::CLAUDE_BINARY).filter(|v| !v.is_empty())
        {
            self.claude_binary = bin.to_string_lossy().into_owned();
        }
        self
    }

    fn take_desired(&mut self, d: Desired, path: &Path) {
        self.origin = Some(format!("{} (cloudagent.toml)", path.display()));
        self.claude_binary = d.daemon.claude_binary.clone();
        let Some(p) = d.profile(&self.profile) else {
            let profile = &self.profile;
            self.config_row = Row::alert(
                "config",
                format!("{} does not declare profile '{profile}'", path.display()),
                format!("add [profiles.{profile}] to it, or pass --profile"),
            );
            self.desired = Some(d);
            return;
        };
        self.config_row = Row::ok("config", format!("valid: {}", path.display()));
        self.server_url = Some(p.server.url.clone());
        self.insecure = p.server.insecure;
        self.key_row = key_row(&p.api_key, path);
        self.key = p.api_key.resolve().ok();
        self.key_home = match &p.api_key {
            SecretRef::File(f) => f.display().to_string(),
            SecretRef::Env(v) => format!("${v}"),
            SecretRef::Inline(_) => path.display().to_string(),
        };
        self.desired = Some(d);
    }

    fn take_legacy(&mut self, legacy: &Path) {
        self.origin = Some(format!(
            "{} (the original daemon's config.json)",
            legacy.display()
        ));
        let exe = std::env::current_exe().unwrap_or_default();
        match Settings::from_legacy(legacy, &self.profile, self.home.clone(), exe, true) {
            Err(e) => {
                self.config_row = Row::alert(
                    "config",
                    first_line(&e),
                    "run `cloudagent-daemon login` again, or declare the profile in cloudagent.toml",
                );
            }
            Ok(settings) => {
                self.config_row = Row::ok(
                    "config",
                    format!("valid: {} (the original's login)", legacy.display()),
                );
                self.server_url = Some(settings.server_url.clone());
                self.key_row = private_file_row(legacy, "machine_api_key in");
                self.key = Some(settings.api_key);
                self.key_home = legacy.display().to_string();
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// The key is present and only its owner can read it.
fn key_row(key: &SecretRef, config: &Path) -> Row {
    match key {
        SecretRef::File(file) => match key.resolve() {
            Err(e) => Row::alert(
                "key",
                format!("api_key_file {}: {e}", file.display()),
                format!(
                    "write the machine key (sk_machine_…) to {} with mode 0600",
                    file.display()
                ),
            ),
            Ok(secret) if !secret.expose().starts_with("sk_machine_") => Row::warn(
                "key",
                format!("{} does not hold an sk_machine_ key", file.display()),
                "put the machine key from the cloudagent UI (host machine settings) in it",
            ),
            Ok(_) => private_file_row(file, "api_key_file"),
        },
        SecretRef::Env(var) => match key.resolve() {
            Ok(_) => Row::ok("key", format!("from ${var}")),
            Err(e) => Row::alert(
                "key",
                e.to_string(),
                format!("set {var} in the daemon's environment, or use api_key_file"),
            ),
        },
        SecretRef::Inline(_) => {
            let mut row = private_file_row(config, "inline in");
            if row.fix.is_none() {
                row = Row::warn(
                    "key",
                    format!("inline in {}", config.display()),
                    "move it to a 0600 file and name that file with api_key_file",
                );
            }
            row
        }
    }
}

/// OK when `file` is readable by its owner only, ALERT otherwise.
fn private_file_row(file: &Path, what: &str) -> Row {
    match std::fs::metadata(file) {
        Err(e) => Row::alert(
            "key",
            format!("{what} {}: {e}", file.display()),
            "create it with mode 0600",
        ),
        Ok(m) if fsutil::mode_of(&m) & 0o077 != 0 => Row::alert(
            "key",
            format!(
                "{what} {} is mode {:04o}: other users can read the key",
                file.display(),
                fsutil::mode_of(&m)
            ),
            format!("chmod 600 {}", file.display()),
        ),
        Ok(m) => Row::ok(
            "key",
            format!(
                "{what} {} (mode {:04o})",
                file.display(),
                fsutil::mode_of(&m)
            ),
        ),
    }
}

/// The agent ids the file declares for this profile, then the other
/// workspaces under the agents root (server-assigned or left by the
/// original), sorted.
pub fn agent_ids(src: &Source) -> Vec<String> {
    let mut ids: Vec<String> = src
        .desired
        .as_ref()
        .and_then(|d| d.profile(&src.profile))
        .map(|p| p.agents.keys().map(|a| a.to_string()).collect())
        .unwrap_or_default();
    let mut found: Vec<String> = std::fs::read_dir(&src.paths.agents_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| crate::paths::AgentId::parse(n).is_ok())
        .filter(|n| !ids.contains(n))
        .collect();
    found.sort();
    ids.extend(found);
    ids
}

/// `<agents root>/<id>`, for an id that is a path segment.
pub fn agent_dir(src: &Source, id: &str) -> Option<PathBuf> {
    crate::paths::AgentId::parse(id)
        .ok()
        .map(|a| src.paths.agent_dir(&a))
}
