//! `Desired`: the validated config, with defaults applied, `~` resolved and
//! secrets kept as references. Everything downstream (plan, apply, the
//! daemon) works from this, never from the raw file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Locator, Problem};
use super::raw::{
    LogLevel, PermissionMode, RawAgent, RawConfig, RawProfile, Transport, WorkspaceAccess,
};
use super::secret::{Secret, SecretRef, valid_env_name};
use super::{locate, server_url};
use crate::fsutil::expand_tilde;
use crate::paths::{AgentId, Home, ProfileName};

#[derive(Debug, Clone)]
pub struct Desired {
    /// The config file as the user named it (absolute, symlinks not resolved,
    /// so a nix symlink swap is followed).
    pub source: PathBuf,
    /// A digest of the text this was parsed from ([`super::digest`]): a
    /// running daemon tells by it whether its file changed since.
    pub digest: u64,
    pub daemon: DaemonSettings,
    pub profiles: BTreeMap<ProfileName, Profile>,
    /// Accepted but worth telling the user (e.g. an inline API key).
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    pub claude_binary: String,
    pub permission_mode: PermissionMode,
    pub max_concurrent_wakes: u32,
    pub wake_timeout: Duration,
    pub log_level: LogLevel,
    /// None: the periodic resync is off.
    pub resync: Option<Duration>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            claude_binary: "claude".to_string(),
            permission_mode: PermissionMode::Default,
            max_concurrent_wakes: default_concurrency(),
            wake_timeout: Duration::from_secs(90 * 60),
            log_level: LogLevel::Info,
            resync: Some(Duration::from_secs(300)),
        }
    }
}

/// The original's rule: half the CPUs, rounded up, at most 8.
fn default_concurrency() -> u32 {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    cpus.div_ceil(2).clamp(1, 8) as u32
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// Normalised: no trailing `/` or `/v1`.
    pub url: String,
    pub transport: Transport,
    pub insecure: bool,
    /// `http://` to a host other than this machine was opted into.
    pub allow_insecure_http: bool,
    /// The largest frame accepted from the backend.
    pub max_frame_mib: u32,
}

pub const DEFAULT_MAX_FRAME_MIB: u32 = 16;
const MAX_FRAME_MIB_RANGE: (u32, u32) = (1, 1024);
pub const DEFAULT_MAX_SERVER_AGENTS: u32 = 200;
const MAX_SERVER_AGENTS_RANGE: (u32, u32) = (0, 10_000);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: ProfileName,
    pub server: Server,
    pub api_key: SecretRef,
    pub workspace_root: Option<PathBuf>,
    pub workspace_access: WorkspaceAccess,
    /// When set, a workdir the server chooses must lie under one of these.
    pub allowed_workdirs: Option<Vec<PathBuf>>,
    /// Agents the server may create beyond the declared ones.
    pub max_server_agents: u32,
    /// Where the profile's metrics are also served over TCP.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Over `[daemon] permission_mode` when set.
    pub permission_mode: Option<PermissionMode>,
    /// Present when the profile's service unit should be installed.
    pub service: Option<ServiceSettings>,
    pub agents: BTreeMap<AgentId, Agent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    pub restart_sec: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub role: String,
    pub chief: bool,
    pub reports_to: String,
    pub workspace_slug: String,
    pub workdir: Option<PathBuf>,
    pub append_system_prompt: Option<String>,
}

pub fn validate(
    raw: RawConfig,
    source: PathBuf,
    home: &Home,
    loc: &Locator,
) -> Result<Desired, Vec<Problem>> {
    let mut v = Validator {
        loc,
        home,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let daemon = v.daemon(&raw);
    let servers = v.servers(&raw);
    let mut profiles = BTreeMap::new();
    for (name, rp) in &raw.profiles {
        if let Some(p) = v.profile(name, rp, &servers) {
            profiles.insert(p.name.clone(), p);
        }
    }
    v.distinct_metrics_ports(&profiles);
    if v.problems.is_empty() {
        Ok(Desired {
            source,
            daemon,
            profiles,
            warnings: v.warnings,
            digest: 0,
        })
    } else {
        Err(v.problems)
    }
}

struct Validator<'a, 'text> {
    loc: &'a Locator<'text>,
    home: &'a Home,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

impl Validator<'_, '_> {
    fn error(&mut self, at: &[&str], message: impl Into<String>) {
        let p = self.loc.at_path(&path(at), message);
        self.problems.push(p);
    }

    fn daemon(&mut self, raw: &RawConfig) -> DaemonSettings {
        let d = &raw.daemon;
        let defaults = DaemonSettings::default();
        if let Some(n) = d.max_concurrent_wakes
            && !(1..=super::MAX_CONCURRENT_WAKES).contains(&n)
        {
            self.error(
                &["daemon", "max_concurrent_wakes"],
                format!("must be between 1 and {}", super::MAX_CONCURRENT_WAKES),
            );
        }
        if let Some(n) = d.wake_timeout_sec
            && !(1..=super::MAX_WAKE_TIMEOUT_SEC).contains(&n)
        {
            self.error(
                &["daemon", "wake_timeout_sec"],
                format!(
                    "must be between 1 and {} seconds (a week)",
                    super::MAX_WAKE_TIMEOUT_SEC
                ),
            );
        }
        if let Some(n) = d.resync_sec
            && n > 86400
        {
            self.error(
                &["daemon", "resync_sec"],
                "must be between 0 (off) and 86400 seconds (a day)",
            );
        }
        let claude_binary = match &d.claude_binary {
            Some(b) if b.trim().is_empty() => {
                self.error(
                    &["daemon", "claude_binary"],
                    "must not be empty; use a name on PATH (e.g. \"claude\") or an absolute path",
                );
                defaults.claude_binary.clone()
            }
            Some(b) if b.contains('/') && !b.starts_with('/') && !b.starts_with("~/") => {
                self.error(&["daemon", "claude_binary"], "must be a name looked up on PATH or an absolute path (or ~/…), not a relative path");
                defaults.claude_binary.clone()
            }
            Some(b) => expand_tilde(b, &self.home.home).display().to_string(),
            None => defaults.claude_binary.clone(),
        };
        DaemonSettings {
            claude_binary,
            permission_mode: d.permission_mode.unwrap_or(defaults.permission_mode),
            max_concurrent_wakes: d
                .max_concurrent_wakes
                .unwrap_or(defaults.max_concurrent_wakes),
            wake_timeout: d
                .wake_timeout_sec
                .map(Duration::from_secs)
                .unwrap_or(defaults.wake_timeout),
            log_level: d.log_level.unwrap_or(defaults.log_level),
            resync: match d.resync_sec {
                None => defaults.resync,
                Some(0) => None,
                Some(n) => Some(Duration::from_secs(n)),
            },
        }
    }

    fn servers(&mut self, raw: &RawConfig) -> BTreeMap<String, Server> {
        let mut out = BTreeMap::new();
        for (name, s) in &raw.servers {
            let allow_insecure_http = s.allow_insecure_http.unwrap_or(false);
            let max_frame_mib = self.in_range(
                &["servers", name, "max_frame_mib"],
                s.max_frame_mib,
                DEFAULT_MAX_FRAME_MIB,
                MAX_FRAME_MIB_RANGE,
            );
            let checked = server_url::normalize(&s.url).and_then(|url| {
                let opt_in = format!(
                    "set allow_insecure_http = true in [servers.{}]",
                    locate::dotted(std::slice::from_ref(name))
                );
                server_url::check_cleartext(&url, allow_insecure_http, &opt_in)
                    .map(|()| url)
                    .map_err(|e| format!("server {name:?}: {e}"))
            });
            match checked {
                Ok(url) => {
                    out.insert(
                        name.clone(),
                        Server {
                            name: name.clone(),
                            url,
                            transport: s.transport.unwrap_or(Transport::Auto),
                            insecure: s.insecure.unwrap_or(false),
                            allow_insecure_http,
                            max_frame_mib,
                        },
                    );
                }
                Err(e) => self.error(&["servers", name, "url"], e),
            }
        }
        out
    }

    /// An absolute path, or `~/…`; anything else is ambiguous for a file
    /// that may be generated or live in a store.
    fn abs_path(&mut self, at: &[&str], raw: &str) -> Option<PathBuf> {
        let p = expand_tilde(raw.trim(), &self.home.home);
        if raw.trim().is_empty() {
            self.error(at, "must not be empty");
            None
        } else if !p.is_absolute() {
            self.error(
                at,
                format!("must be an absolute path or start with ~/, got {raw:?}"),
            );
            None
        } else {
            Some(p)
        }
    }

    fn profile(
        &mut self,
        name: &str,
        rp: &RawProfile,
        servers: &BTreeMap<String, Server>,
    ) -> Option<Profile> {
        let before = self.problems.len();
        let pname = match ProfileName::parse(name) {
            Ok(n) => Some(n),
            Err(e) => {
                self.error(&["profiles", name], e);
                None
            }
        };
        let server = match servers.get(&rp.server) {
            Some(s) => Some(s.clone()),
            None => {
                let known: Vec<&str> = servers.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none (add a [servers.<name>] table with a url)".to_string()
                } else {
                    known.join(", ")
                };
                self.error(
                    &["profiles", name, "server"],
                    format!("unknown server {:?}; known: {known}", rp.server),
                );
                None
            }
        };
        let api_key = self.api_key(name, rp);
        let workspace_root = rp
            .workspace_root
            .as_deref()
            .and_then(|w| self.abs_path(&["profiles", name, "workspace_root"], w));
        let allowed_workdirs = rp
            .allowed_workdirs
            .as_ref()
            .map(|dirs| self.allowed_workdirs(name, dirs));
        let max_server_agents = self.in_range(
            &["profiles", name, "max_server_agents"],
            rp.max_server_agents,
            DEFAULT_MAX_SERVER_AGENTS,
            MAX_SERVER_AGENTS_RANGE,
        );
        let metrics_listen = rp
            .metrics_listen
            .as_deref()
            .and_then(|a| self.listen_address(name, a));
        let service = rp
            .service
            .as_ref()
            .filter(|s| s.enable.unwrap_or(true))
            .map(|s| ServiceSettings {
                restart_sec: s.restart_sec.unwrap_or(5),
            });
        if let Some(0) = rp.service.as_ref().and_then(|s| s.restart_sec) {
            self.error(
                &["profiles", name, "service", "restart_sec"],
                "must be at least 1",
            );
        }
        let mut agents = BTreeMap::new();
        for (id, ra) in &rp.agents {
            if let Some(a) = self.agent(name, id, ra) {
                agents.insert(a.id.clone(), a);
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Profile {
            name: pname?,
            server: server?,
            api_key: api_key?,
            workspace_root,
            workspace_access: rp.workspace_access.unwrap_or_default(),
            allowed_workdirs,
            max_server_agents,
            metrics_listen,
            permission_mode: rp.permission_mode,
            service,
            agents,
        })
    }

    /// `metrics_listen`: an `IP:PORT` with a port other than 0.
    fn listen_address(&mut self, profile: &str, raw: &str) -> Option<std::net::SocketAddr> {
        let at = ["profiles", profile, "metrics_listen"];
        match raw.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() != 0 => {
                if !a.ip().is_loopback() {
                    let w = self.loc.at_path(
                        &path(&at),
                        format!("{a} is reachable from other machines, and metrics have no authentication"),
                    );
                    self.warnings.push(w);
                }
                Some(a)
            }
            Ok(_) => {
                self.error(&at, "needs a port other than 0");
                None
            }
            Err(_) => {
                self.error(
                    &at,
                    format!("{raw:?} is not an IP:PORT address, e.g. \"127.0.0.1:9464\""),
                );
                None
            }
        }
    }

    /// Two profiles' `metrics_listen` on one port: the second daemon could
    /// not bind it (whatever the addresses, `0.0.0.0` overlaps them all).
    fn distinct_metrics_ports(&mut self, profiles: &BTreeMap<ProfileName, Profile>) {
        let mut seen: BTreeMap<u16, &ProfileName> = BTreeMap::new();
        for p in profiles.values() {
            let Some(addr) = p.metrics_listen else {
                continue;
            };
            if let Some(first) = seen.insert(addr.port(), &p.name) {
                self.error(
                    &["profiles", p.name.as_str(), "metrics_listen"],
                    format!(
                        "port {} is already profile \"{first}\"'s metrics_listen; two profiles cannot share a port",
                        addr.port()
                    ),
                );
            }
        }
    }

    /// A number within `(min, max)`, or its default when absent.
    fn in_range(
        &mut self,
        at: &[&str],
        value: Option<u32>,
        default: u32,
        range: (u32, u32),
    ) -> u32 {
        let (min, max) = range;
        match value {
            None => default,
            Some(v) if (min..=max).contains(&v) => v,
            Some(v) => {
                self.error(at, format!("must be between {min} and {max}, got {v}"));
                default
            }
        }
    }

    /// Each entry absolute after `~` expansion; the entry is named by its
    /// position (the location points at the list).
    fn allowed_workdirs(&mut self, profile: &str, dirs: &[String]) -> Vec<PathBuf> {
        let at = ["profiles", profile, "allowed_workdirs"];
        let mut out = Vec::with_capacity(dirs.len());
        for (i, raw) in dirs.iter().enumerate() {
            let p = expand_tilde(raw.trim(), &self.home.home);
            if raw.trim().is_empty() || !p.is_absolute() {
                self.error(
                    &at,
                    format!(
                        "entry {} must be an absolute path or start with ~/, got {raw:?}",
                        i + 1
                    ),
                );
            } else {
                out.push(p);
            }
        }
        out
    }

    /// `api_key_file` is checked like any path, but its value is never
    /// quoted: users paste the key itself here.
    fn key_file_path(&mut self, name: &str, raw: &str) -> Option<PathBuf> {
        let at = ["profiles", name, "api_key_file"];
        let p = expand_tilde(raw.trim(), &self.home.home);
        if raw.trim().is_empty() {
            self.error(&at, "must not be empty");
            None
        } else if !p.is_absolute() {
            self.error(
                &at,
                "must be the path of the file holding the key, absolute or starting with ~/ (value not shown)",
            );
            None
        } else {
            Some(p)
        }
    }

    fn api_key(&mut self, name: &str, rp: &RawProfile) -> Option<SecretRef> {
        let given = [
            rp.api_key_file.is_some(),
            rp.api_key_env.is_some(),
            rp.api_key.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if given == 0 {
            self.error(
                &["profiles", name],
                "no API key: set api_key_file (recommended), api_key_env, or api_key",
            );
            return None;
        }
        if given > 1 {
            self.error(
                &["profiles", name],
                "set only one of api_key_file, api_key_env and api_key",
            );
            return None;
        }
        if let Some(f) = &rp.api_key_file {
            return self.key_file_path(name, f).map(SecretRef::File);
        }
        if let Some(var) = &rp.api_key_env {
            if !valid_env_name(var) || var.to_ascii_lowercase().starts_with("sk_") {
                // Never echo the value: users sometimes paste the key here.
                self.error(
                    &["profiles", name, "api_key_env"],
                    "must be the NAME of an environment variable (letters, digits, _), not the key itself",
                );
                return None;
            }
            return Some(SecretRef::Env(var.clone()));
        }
        let key = rp.api_key.as_deref().unwrap_or_default();
        if !key.starts_with("sk_machine_") {
            self.error(
                &["profiles", name, "api_key"],
                "must start with sk_machine_",
            );
            return None;
        }
        self.warnings.push(self.loc.at_path(
            &path(&["profiles", name, "api_key"]),
            "the API key is written inline; move it to api_key_file or api_key_env so this file can be shared or committed",
        ));
        Some(SecretRef::Inline(Secret::new(key)))
    }

    fn agent(&mut self, profile: &str, id: &str, ra: &RawAgent) -> Option<Agent> {
        let agent_id = match AgentId::parse(id) {
            Ok(a) => a,
            Err(e) => {
                self.error(&["profiles", profile, "agents", id], e);
                return None;
            }
        };
        let workdir = match ra.workdir.as_deref() {
            Some(w) => Some(self.abs_path(&["profiles", profile, "agents", id, "workdir"], w)?),
            None => None,
        };
        let chief = ra.chief.unwrap_or(false);
        Some(Agent {
            name: ra.name.clone().unwrap_or_else(|| id.to_string()),
            role: ra.role.clone().unwrap_or_else(|| "staff".to_string()),
            chief,
            reports_to: ra
                .reports_to
                .clone()
                .unwrap_or_else(|| if chief { "self" } else { "(unset)" }.to_string()),
            workspace_slug: ra
                .workspace_slug
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            workdir,
            append_system_prompt: ra
                .append_system_prompt
                .clone()
                .filter(|s| !s.trim().is_empty()),
            id: agent_id,
        })
    }
}

impl Desired {
    pub fn profile(&self, name: &ProfileName) -> Option<&Profile> {
        self.profiles.get(name)
    }
}

impl Profile {
    /// Where claude runs for an agent (PROTOCOL §6.3): the agent's `workdir`,
    /// else `<workspace_root>/<id>/workspace`, else the workspace's own
    /// `workspace/` directory.
    pub fn agent_cwd(&self, agent: &Agent, agent_dir: &Path) -> PathBuf {
        if let Some(w) = &agent.workdir {
            w.clone()
        } else if let Some(root) = &self.workspace_root {
            root.join(agent.id.as_str()).join("workspace")
        } else {
            agent_dir.join("workspace")
        }
    }
}
