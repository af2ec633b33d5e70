//! Per-profile service units: what they contain (systemd user unit or
//! launchd agent) and how they are loaded (through the service manager's
//! command line tool, so tests can put a fake `systemctl` on PATH).

pub mod launchd;
pub mod legacy;
pub mod manager;
pub mod systemd;

use std::path::{Path, PathBuf};

use crate::config::Secret;
use crate::paths::{Home, ProfileName};

pub use manager::{ManagerError, ServiceManager};

/// Environment variable that picks the service platform, for testing the
/// launchd code path on Linux (values `systemd`, `launchd`).
pub const PLATFORM_ENV: &str = "CLOUDAGENT_SERVICE_PLATFORM";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Systemd,
    Launchd,
}

impl Platform {
    pub fn detect() -> Result<Self, String> {
        match std::env::var(PLATFORM_ENV).ok().as_deref() {
            Some("systemd") => Ok(Self::Systemd),
            Some("launchd") => Ok(Self::Launchd),
            Some(other) => Err(format!(
                "{PLATFORM_ENV} must be \"systemd\" or \"launchd\", got {other:?}"
            )),
            None if cfg!(target_os = "macos") => Ok(Self::Launchd),
            None => Ok(Self::Systemd),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Systemd => "systemd",
            Self::Launchd => "launchd",
        }
    }

    /// Unit name as the manager knows it.
    pub fn unit_name(self, profile: &ProfileName) -> String {
        match (self, profile.is_default()) {
            (Self::Systemd, true) => "cloudagent-daemon.service".to_string(),
            (Self::Systemd, false) => format!("cloudagent-daemon-{profile}.service"),
            (Self::Launchd, true) => "chat.cloudagent.daemon".to_string(),
            (Self::Launchd, false) => format!("chat.cloudagent.daemon.{profile}"),
        }
    }

    pub fn unit_path(self, home: &Home, profile: &ProfileName) -> PathBuf {
        let dir = match self {
            Self::Systemd => home.systemd_user_dir(),
            Self::Launchd => home.launch_agents_dir(),
        };
        dir.join(self.unit_file_name(profile))
    }

    /// The unit's file name in its directory.
    pub fn unit_file_name(self, profile: &ProfileName) -> String {
        let name = self.unit_name(profile);
        match self {
            Self::Systemd => name,
            Self::Launchd => format!("{name}.plist"),
        }
    }
}

/// Everything a unit file says.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub profile: ProfileName,
    /// Absolute path of the cloudagent-daemon binary.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Plain environment (PATH, profile).
    pub env: Vec<(String, String)>,
    /// An API key the unit has to carry (api_key_env): makes the file 0600.
    pub secret_env: Option<(String, Secret)>,
    pub restart_sec: u32,
    pub working_dir: PathBuf,
    /// launchd's stdout/stderr files go here.
    pub log_dir: PathBuf,
}

impl UnitSpec {
    pub fn render(&self, platform: Platform) -> String {
        match platform {
            Platform::Systemd => systemd::render(self),
            Platform::Launchd => launchd::render(self),
        }
    }

    /// 0600 when the unit carries a secret, else 0644.
    pub fn mode(&self) -> u32 {
        if self.secret_env.is_some() {
            0o600
        } else {
            0o644
        }
    }
}

/// PATH for the daemon under a service manager, which does not see the
/// login shell's PATH: the usual user bin directories, the directories of
/// the daemon and of claude when they are given by absolute path, then the
/// system ones.
pub fn service_path(
    home: &Home,
    program: &Path,
    claude_binary: &str,
    platform: Platform,
) -> String {
    let mut dirs: Vec<String> = Vec::new();
    let mut push = |d: String| {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    push(home.home.join(".local/bin").display().to_string());
    push(home.home.join("bin").display().to_string());
    for p in [
        Some(program),
        Some(Path::new(claude_binary)).filter(|p| p.is_absolute()),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(parent) = p.parent() {
            push(parent.display().to_string());
        }
    }
    push("/usr/local/bin".to_string());
    if platform == Platform::Launchd {
        push("/opt/homebrew/bin".to_string());
    }
    push("/usr/bin".to_string());
    push("/bin".to_string());
    dirs.join(":")
}

/// Names of environment variables in a unit that are safe to show; any other
/// variable's value is masked in plan output (it may be an API key, and an
/// old unit on disk may carry a key the config no longer names).
pub fn is_public_env(name: &str) -> bool {
    matches!(name, "PATH" | "CLOUDAGENT_DAEMON_PROFILE" | "HOME" | "LANG")
}

/// Mask secret environment values in a rendered unit for display, and
/// the value of an `--api-key` argument (the original daemon's units carry
/// the key on the command line), and anything shaped like a machine key.
pub fn redact(text: &str, platform: Platform) -> String {
    let masked = match platform {
        Platform::Systemd => systemd::redact(text),
        Platform::Launchd => launchd::redact(text),
    };
    crate::redact::secrets(&masked).into_owned()
}

/// Whether a unit file was written by the original (Python) daemon's
/// `install-service` (docs/PROTOCOL.md "Coming from the original daemon"):
/// it runs `…/cloudagent-daemon start` without our `--config`, and carries
/// what only the original writes: `PYTHONUNBUFFERED`, or the key inline as
/// `--api-key`. apply replaces such a unit (adoption) instead of leaving it
/// as managed elsewhere.
pub fn written_by_original(text: &str, platform: Platform) -> bool {
    let args = match platform {
        Platform::Systemd => systemd::exec_start_words(text),
        Platform::Launchd => launchd::program_arguments(text),
    };
    let runs_start = args.first().is_some_and(|p| {
        Path::new(p).file_name() == Some(std::ffi::OsStr::new("cloudagent-daemon"))
    }) && args.get(1).map(String::as_str) == Some("start");
    let ours = args
        .iter()
        .any(|a| a == "--config" || a.starts_with("--config="));
    let python = text.contains("PYTHONUNBUFFERED");
    let inline_key = args
        .iter()
        .any(|a| a == "--api-key" || a.starts_with("--api-key="));
    runs_start && !ours && (python || inline_key)
}
