//! What one profile's daemon runs with, from whichever source the user
//! chose: `cloudagent.toml`, the original's `config.json` (written by
//! `login`), or one-shot `--server-url/--api-key` flags.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::desired::{DEFAULT_MAX_FRAME_MIB, DEFAULT_MAX_SERVER_AGENTS};
use crate::config::{
    Agent, Desired, PermissionMode, Secret, SecretRef, Transport, WorkspaceAccess, server_url,
};
use crate::paths::{AgentId, Home, ProfileName, ProfilePaths};

use crate::protocol::env::{
    CLAUDE_BINARY as CLAUDE_BINARY_ENV, PERMISSION_MODE as PERMISSION_MODE_ENV,
    SOCKET_PATH as SOCKET_PATH_ENV, USE_SYSTEM_PROXY as USE_SYSTEM_PROXY_ENV,
};

#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: ProfileName,
    pub paths: ProfilePaths,
    pub home: Home,
    /// This binary: the MCP bridge claude starts.
    pub exe: PathBuf,
    pub server_url: String,
    pub transport: Transport,
    pub insecure: bool,
    pub api_key: Secret,
    /// What the command line of `start` fixed for this run: kept over
    /// config reloads, which would otherwise put the file's values back.
    pub cli: CliOverrides,
    /// The file holding the key (watched: a rotated key reconnects).
    pub api_key_file: Option<PathBuf>,
    /// Set when the profile was removed from the config file: the daemon
    /// takes no work and stays disconnected until it comes back (its unit
    /// restarts it whatever its exit status, so exiting would loop).
    pub parked: Option<String>,
    /// Variables no child may see: every `api_key_env` this daemon has
    /// used, since a reload that renames it leaves the old variable (and
    /// the key) in the daemon's own environment.
    pub scrub_env: BTreeSet<String>,
    pub claude_binary: String,
    pub permission_mode: PermissionMode,
    pub max_concurrent_wakes: u32,
    pub wake_timeout: Duration,
    /// Between checks for drift of the profile's local resources.
    pub resync: Option<Duration>,
    pub workspace_root: Option<PathBuf>,
    /// Modes of the workspaces the daemon creates (the profile's
    /// `workspace_access`; private without a config file).
    pub workspace_access: WorkspaceAccess,
    /// When set, a workdir the server chooses must lie under one of these
    /// (the profile's `allowed_workdirs`; unset without a config file).
    pub allowed_workdirs: Option<Vec<PathBuf>>,
    /// Agents the server may create beyond the declared ones.
    pub max_server_agents: u32,
    /// The largest frame accepted from the backend, in MiB.
    pub max_frame_mib: u32,
    /// Agents declared in the config file (their identity wins over the
    /// server's `assign`).
    pub agents: BTreeMap<AgentId, Agent>,
    /// The config file this came from, when there is one (watched).
    pub config_file: Option<PathBuf>,
    /// The digest of the text these settings were loaded from: the watcher
    /// compares against it, so a change that lands before it starts is not
    /// lost.
    pub config_digest: Option<u64>,
    pub socket: PathBuf,
    pub use_system_proxy: bool,
    /// Where metrics are also served over TCP (the profile's
    /// `metrics_listen`), besides the profile's `metrics.sock`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `start`'s flags that override the config file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CliOverrides {
    pub insecure: bool,
    pub transport: Option<crate::config::Transport>,
}

impl Settings {
    /// Put the command line's overrides in force (again, after a reload).
    pub fn apply_cli(&mut self, cli: CliOverrides) {
        self.cli = cli;
        if cli.insecure {
            self.insecure = true;
        }
        if let Some(t) = cli.transport {
            self.transport = t;
        }
    }
}

/// The transport-security flags of one-shot `start`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneShotTls {
    /// `--insecure`: skip certificate verification.
    pub insecure: bool,
    /// `--allow-insecure-http`: `http://` to another machine.
    pub allow_insecure_http: bool,
}

/// The original's `config.json` (PROTOCOL §6.5).
#[derive(Debug, Deserialize)]
pub struct LegacyConfig {
    pub server_url: String,
    pub machine_api_key: String,
    #[serde(default)]
    pub host_id: Option<String>,
    #[serde(default = "default_mode")]
    pub claude_permission_mode: String,
}

fn default_mode() -> String {
    "default".to_string()
}

pub fn parse_permission_mode(s: &str) -> Result<PermissionMode, String> {
    Ok(match s {
        "default" => PermissionMode::Default,
        "acceptEdits" => PermissionMode::AcceptEdits,
        "bypassPermissions" => PermissionMode::BypassPermissions,
        "dontAsk" => PermissionMode::DontAsk,
        "plan" => PermissionMode::Plan,
        other => {
            return Err(format!(
                "must be one of default, acceptEdits, bypassPermissions, dontAsk, plan; got {other:?}"
            ));
        }
    })
}

impl Settings {
    /// The largest frame accepted from the backend, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        (self.max_frame_mib as usize) << 20
    }

    fn base(profile: ProfileName, home: Home, exe: PathBuf) -> Self {
        let paths = home.profile(&profile);
        let socket = std::env::var_os(SOCKET_PATH_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| paths.socket());
        let defaults = crate::config::DaemonSettings::default();
        Self {
            paths,
            home,
            exe,
            server_url: String::new(),
            transport: Transport::Auto,
            insecure: false,
            api_key: Secret::new(""),
            api_key_file: None,
            cli: CliOverrides::default(),
            parked: None,
            scrub_env: BTreeSet::new(),
            claude_binary: defaults.claude_binary,
            permission_mode: defaults.permission_mode,
            max_concurrent_wakes: defaults.max_concurrent_wakes,
            wake_timeout: defaults.wake_timeout,
            resync: defaults.resync,
            workspace_root: None,
            workspace_access: WorkspaceAccess::default(),
            allowed_workdirs: None,
            max_server_agents: DEFAULT_MAX_SERVER_AGENTS,
            max_frame_mib: DEFAULT_MAX_FRAME_MIB,
            agents: BTreeMap::new(),
            config_file: None,
            config_digest: None,
            socket,
            use_system_proxy: std::env::var(USE_SYSTEM_PROXY_ENV).is_ok_and(|v| v == "1"),
            metrics_listen: None,
            profile,
        }
    }

    /// From a validated config file. The key is resolved now: a daemon that
    /// cannot authenticate should say so before it connects.
    pub fn from_desired(
        desired: &Desired,
        profile: &ProfileName,
        home: Home,
        exe: PathBuf,
    ) -> Result<Self, String> {
        let p = desired.profile(profile).ok_or_else(|| {
            let known: Vec<String> = desired.profiles.keys().map(|k| k.to_string()).collect();
            format!(
                "profile {profile:?} is not in {}; profiles there: {}",
                desired.source.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
        let mut s = Self::base(profile.clone(), home, exe);
        s.server_url = p.server.url.clone();
        s.insecure = p.server.insecure;
        s.transport = p.server.transport;
        s.api_key = p
            .api_key
            .resolve()
            .map_err(|e| format!("profiles.{profile}: {e}"))?;
        match &p.api_key {
            SecretRef::File(file) => s.api_key_file = Some(file.clone()),
            SecretRef::Env(var) => {
                s.scrub_env.insert(var.clone());
            }
            SecretRef::Inline(_) => {}
        }
        s.claude_binary = desired.daemon.claude_binary.clone();
        s.permission_mode = p.permission_mode.unwrap_or(desired.daemon.permission_mode);
        s.max_concurrent_wakes = desired.daemon.max_concurrent_wakes;
        s.wake_timeout = desired.daemon.wake_timeout;
        s.resync = desired.daemon.resync;
        s.workspace_root = p.workspace_root.clone();
        s.workspace_access = p.workspace_access;
        s.allowed_workdirs = p.allowed_workdirs.clone();
        s.max_server_agents = p.max_server_agents;
        s.max_frame_mib = p.server.max_frame_mib;
        s.agents = p.agents.clone();
        s.metrics_listen = p.metrics_listen;
        s.config_file = Some(desired.source.clone());
        s.config_digest = Some(desired.digest);
        Ok(s)
    }

    /// From the original's `config.json`. `allow_insecure_http`: `start
    /// --allow-insecure-http` (the file has no such setting).
    pub fn from_legacy(
        path: &Path,
        profile: &ProfileName,
        home: Home,
        exe: PathBuf,
        allow_insecure_http: bool,
    ) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let legacy: LegacyConfig = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a valid config: {e}", path.display()))?;
        let mut s = Self::base(profile.clone(), home, exe);
        s.server_url = server_url::normalize(&legacy.server_url)
            .and_then(|url| {
                server_url::check_cleartext(
                    &url,
                    allow_insecure_http,
                    "pass --allow-insecure-http to start",
                )
                .map(|()| url)
            })
            .map_err(|e| format!("{}: server_url: {e}", path.display()))?;
        s.api_key = Secret::new(legacy.machine_api_key);
        s.permission_mode = parse_permission_mode(&legacy.claude_permission_mode)
            .map_err(|e| format!("{}: claude_permission_mode {e}", path.display()))?;
        Ok(s)
    }

    /// One-shot `--server-url URL --api-key KEY`.
    pub fn one_shot(
        url: &str,
        key: &str,
        tls: OneShotTls,
        profile: &ProfileName,
        home: Home,
        exe: PathBuf,
    ) -> Result<Self, String> {
        let mut s = Self::base(profile.clone(), home, exe);
        let normalized = server_url::normalize(url)?;
        server_url::check_cleartext(
            &normalized,
            tls.allow_insecure_http,
            "pass --allow-insecure-http",
        )
        .map_err(|e| format!("--server-url {normalized}: {e}"))?;
        s.server_url = normalized;
        s.api_key = Secret::new(key);
        s.insecure = tls.insecure;
        Ok(s)
    }

    /// The original's environment overrides (test hooks and the service
    /// unit's permission mode).
    pub fn apply_env_overrides(&mut self) -> Result<(), String> {
        if let Some(bin) = std::env::var_os(CLAUDE_BINARY_ENV).filter(|v| !v.is_empty()) {
            self.claude_binary = bin.to_string_lossy().into_owned();
        }
        if let Ok(mode) = std::env::var(PERMISSION_MODE_ENV) {
            self.permission_mode = parse_permission_mode(mode.trim())
                .map_err(|e| format!("invalid {PERMISSION_MODE_ENV} — {e}"))?;
        }
        Ok(())
    }
}

/// A digest of a file's content (None when unreadable), to tell whether it
/// changed since settings were loaded from it.
pub fn file_digest(path: &std::path::Path) -> Option<u64> {
    std::fs::read(path).ok().map(|b| crate::config::digest(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_permission_mode_wins_over_the_daemon_one() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::for_tests(dir.path());
        let key = dir.path().join("k");
        std::fs::write(&key, "sk_machine_x\n").unwrap();
        let text = format!(
            "[daemon]\npermission_mode = \"plan\"\n[servers.s]\nurl = \"https://a.b\"\n[profiles.default]\nserver = \"s\"\napi_key_file = \"{k}\"\npermission_mode = \"acceptEdits\"\n[profiles.fr]\nserver = \"s\"\napi_key_file = \"{k}\"\n",
            k = key.display()
        );
        let d = crate::config::parse(&text, dir.path().join("c.toml"), &home).unwrap();
        let mode = |p: &str| {
            let name = ProfileName::parse(p).unwrap();
            Settings::from_desired(&d, &name, home.clone(), "/bin/x".into())
                .unwrap()
                .permission_mode
        };
        assert_eq!(mode("default"), PermissionMode::AcceptEdits);
        assert_eq!(mode("fr"), PermissionMode::Plan);
    }
}
