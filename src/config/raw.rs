//! `RawConfig`: exactly what `cloudagent.toml` says, as serde reads it.
//! Validation and defaults happen in `desired.rs`; the JSON Schema committed
//! at `schema/cloudagent.schema.json` is generated from these types, so the
//! doc comments here are what editors show for each key.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// cloudagent-daemon configuration: servers, profiles, agents and service
/// settings. `plan` shows how the machine differs from this file; `apply`
/// makes it match.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cloudagent.toml")]
pub struct RawConfig {
    /// Settings shared by every profile's daemon.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// Backend servers, keyed by a name that profiles refer to.
    #[serde(default)]
    pub servers: BTreeMap<String, RawServer>,
    /// Profiles, keyed by profile name (`default` or `[a-z0-9][a-z0-9-]{0,30}`).
    /// Each profile is one daemon process with its own state, socket,
    /// workspaces and service unit; `default` keeps the original daemon's
    /// paths (`~/.cloudagent/daemon`, `~/.cloudagent/agents`).
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": "^(default|[a-z0-9][a-z0-9-]{0,30})$" }))]
    pub profiles: BTreeMap<String, RawProfile>,
}

/// Settings shared by every profile's daemon.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// The Claude Code CLI to run for each message: a name looked up on PATH
    /// or an absolute path. Default: `claude`.
    pub claude_binary: Option<String>,
    /// Passed to claude as `--permission-mode` (omitted for `default`).
    /// Default: `default`.
    pub permission_mode: Option<PermissionMode>,
    /// How many claude processes may run at once across all agents of a
    /// profile (each agent still runs one at a time). Default: half the CPUs,
    /// at least 1 and at most 8.
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrent_wakes: Option<u32>,
    /// Seconds a single claude run may take before it is stopped
    /// (SIGINT, then SIGTERM, then SIGKILL). Default: 5400 (90 minutes);
    /// at most 604800 (a week).
    #[schemars(range(min = 1, max = 604800))]
    pub wake_timeout_sec: Option<u64>,
    /// Log verbosity of the daemon. Default: `info`.
    pub log_level: Option<LogLevel>,
    /// Seconds between the running daemon's checks that its profile's
    /// directories and agents still match the file (drift such as a deleted
    /// workspace is repaired and logged). Default: 300, jittered ±10%;
    /// 0 turns it off.
    #[schemars(range(min = 0, max = 86400))]
    pub resync_sec: Option<u64>,
}

/// claude's `--permission-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PermissionMode {
    /// claude's own default: in non-interactive runs, tools that are not
    /// allowed explicitly are denied.
    #[serde(rename = "default")]
    Default,
    /// Also allow file edits without asking.
    #[serde(rename = "acceptEdits")]
    AcceptEdits,
    /// Allow every tool (claude refuses this mode when run as root).
    #[serde(rename = "bypassPermissions")]
    BypassPermissions,
    /// Deny every tool that is not allowed explicitly.
    #[serde(rename = "dontAsk")]
    DontAsk,
    /// Planning only: no edits.
    #[serde(rename = "plan")]
    Plan,
}

impl PermissionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::AcceptEdits => "acceptEdits",
            Self::BypassPermissions => "bypassPermissions",
            Self::DontAsk => "dontAsk",
            Self::Plan => "plan",
        }
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Normal operation (default).
    Info,
    /// Every frame and process event.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// A cloudagent backend.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Base URL of the backend, `https://…`, or `http://…` to this machine
    /// (anything else needs `allow_insecure_http`). A trailing `/` or `/v1`
    /// is removed.
    pub url: String,
    /// How the daemon talks to the backend: `ws` (one WebSocket,
    /// `/v1/daemon/ws`), `sse` (an event stream plus one POST per frame, the
    /// original daemon's default) or `auto` (WebSocket, falling back to SSE
    /// when the server or a proxy refuses the upgrade). Default: `auto`.
    pub transport: Option<Transport>,
    /// Skip TLS certificate verification. Only for self-signed development
    /// servers. Default: false.
    pub insecure: Option<bool>,
    /// Allow an `http://` URL to a host other than this machine. The
    /// machine key then crosses the network unencrypted, so this is refused
    /// unless set; loopback (`localhost`, `127.0.0.0/8`, `::1`) needs no
    /// opt-in. Default: false.
    pub allow_insecure_http: Option<bool>,
    /// The largest frame the daemon accepts from this backend, in MiB; a
    /// larger one is refused rather than buffered. Default: 16.
    #[schemars(range(min = 1, max = 1024))]
    pub max_frame_mib: Option<u32>,
}

/// Transport between daemon and backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One WebSocket carrying JSON frames both ways.
    Ws,
    /// Server-sent events in (`/v1/daemon/stream`), one HTTP POST per
    /// frame out.
    Sse,
    /// WebSocket; SSE when the upgrade is refused with anything but 401,
    /// or cut.
    Auto,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
            Self::Auto => "auto",
        }
    }

    /// `--transport`'s value (case-insensitive).
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "ws" => Ok(Self::Ws),
            "sse" => Ok(Self::Sse),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "--transport must be 'ws', 'sse' or 'auto' (got '{other}')"
            )),
        }
    }
}

/// One daemon process: which server it connects to, with which key, and
/// which agents it hosts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Name of an entry in `[servers]`.
    pub server: String,
    /// File holding the machine API key (`sk_machine_…`), e.g.
    /// `~/.config/cloudagent/prod.key`. Recommended: the key stays out of
    /// this file, which can then live in git or a read-only store.
    pub api_key_file: Option<String>,
    /// Name of an environment variable holding the machine API key. A
    /// service unit gets the value embedded (the unit is then mode 0600).
    pub api_key_env: Option<String>,
    /// The machine API key itself. Works, but `plan` warns: prefer
    /// `api_key_file` or `api_key_env`.
    pub api_key: Option<String>,
    /// Host-level workspace root: an agent without `workdir` runs claude in
    /// `<workspace_root>/<agent id>/workspace`. Absolute or `~/…`.
    pub workspace_root: Option<String>,
    /// Who else on this machine may read the agents' workspaces (their
    /// directories, `notes/`, `claude/`, `workspace/`, `MEMORY.md`):
    /// `private` (0700 directories, 0600 files) or `shared` (0755/0644).
    /// apply repairs drift on the directories it manages; a `workdir` you
    /// declare is created with this mode but never changed. Default:
    /// `private`.
    pub workspace_access: Option<WorkspaceAccess>,
    /// Directories under which a workdir chosen by the server (an
    /// `assign`'s `workspace_root`) must lie, e.g. `["~/code"]`. Absolute or
    /// `~/…`. Unset: any directory; `[]`: none. Workdirs declared in this
    /// file are not limited.
    pub allowed_workdirs: Option<Vec<String>>,
    /// How many agents the server may create on this host beyond those
    /// declared in this file (by `assign`, or a message for an agent without
    /// a workspace). Default: 200.
    #[schemars(range(min = 0, max = 10000))]
    pub max_server_agents: Option<u32>,
    /// Also serve this profile's metrics (Prometheus/OpenMetrics text, as
    /// on its `metrics.sock`) over TCP at this address, e.g.
    /// `"127.0.0.1:9464"`. Give a loopback address unless other machines
    /// should scrape it (there is no authentication). Two profiles cannot
    /// share a port.
    pub metrics_listen: Option<String>,
    /// claude's `--permission-mode` for this profile's daemon, over
    /// `[daemon] permission_mode` (the original daemon's per-profile
    /// `claude_permission_mode`; `install-service --permission-mode` sets
    /// it). Default: the `[daemon]` value.
    pub permission_mode: Option<PermissionMode>,
    /// Run this profile's daemon as a user service (systemd user unit on
    /// Linux, launchd agent on macOS). Remove the section to uninstall.
    pub service: Option<RawService>,
    /// Agents hosted by this profile, keyed by agent id (as the backend
    /// knows it, e.g. `agent_01HXX`).
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$" }))]
    pub agents: BTreeMap<String, RawAgent>,
}

/// Permissions of agent workspaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceAccess {
    /// Only this user: directories 0700, files 0600.
    #[default]
    Private,
    /// Readable by every user of the machine: directories 0755, files 0644.
    Shared,
}

impl WorkspaceAccess {
    pub fn dir_mode(self) -> u32 {
        match self {
            Self::Private => 0o700,
            Self::Shared => 0o755,
        }
    }

    pub fn file_mode(self) -> u32 {
        match self {
            Self::Private => 0o600,
            Self::Shared => 0o644,
        }
    }
}

/// The profile's service unit.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Install, enable and start the unit. `false` removes it like deleting
    /// the section does. Default: true.
    pub enable: Option<bool>,
    /// Seconds the service manager waits before restarting the daemon after
    /// it exits (systemd `RestartSec`, launchd `ThrottleInterval`). Default: 5.
    #[schemars(range(min = 1, max = 3600))]
    pub restart_sec: Option<u32>,
}

/// An agent hosted on this machine. Its workspace is created under the
/// profile's agents directory; removing the agent from the file archives the
/// workspace (moved aside with a timestamp, never deleted).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Display name, used in the agent's identity and MEMORY.md. Default:
    /// the agent id.
    pub name: Option<String>,
    /// Role in the agent's identity. Default: `staff`.
    pub role: Option<String>,
    /// A chief gets the chief-only tools (delegate_to_staff, close_task,
    /// request_user_approval, set_company_status). Default: false.
    pub chief: Option<bool>,
    /// Whom the agent reports to. Default: `self` for a chief, else `(unset)`.
    pub reports_to: Option<String>,
    /// Workspace slug in the agent's identity. Default: `default`.
    pub workspace_slug: Option<String>,
    /// Directory claude runs in for this agent (created if missing, never
    /// removed). Absolute or `~/…`. Default: see the profile's
    /// `workspace_root`, else the agent's own `workspace/` directory.
    pub workdir: Option<String>,
    /// Extra text appended to claude's system prompt for every message to
    /// this agent.
    pub append_system_prompt: Option<String>,
}
