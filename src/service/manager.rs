//! Loading and unloading units through the service manager's CLI
//! (`systemctl --user`, `launchctl`). Commands are looked up on PATH so that
//! tests can record them with a fake.

use std::path::Path;
use std::process::Command;

use thiserror::Error;

use super::Platform;

#[derive(Debug, Error)]
pub enum ManagerError {
    #[error("`{command}` could not be run: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
}

/// What apply needs from a service manager.
pub trait ServiceManager {
    /// Load (or reload) and start a unit whose file was just written.
    fn activate(&self, unit: &str, path: &Path) -> Result<(), ManagerError>;
    /// Stop and unload a unit before its file is removed.
    fn deactivate(&self, unit: &str, path: &Path) -> Result<(), ManagerError>;
    /// Tell the manager a unit file is gone.
    fn forget(&self, unit: &str) -> Result<(), ManagerError>;
}

/// The real managers, driven through their command line tools.
pub struct CliManager {
    pub platform: Platform,
}

impl ServiceManager for CliManager {
    fn activate(&self, unit: &str, path: &Path) -> Result<(), ManagerError> {
        match self.platform {
            Platform::Systemd => {
                run("systemctl", &["--user", "daemon-reload"])?;
                run("systemctl", &["--user", "enable", unit])?;
                run("systemctl", &["--user", "restart", unit])
            }
            Platform::Launchd => {
                let domain = gui_domain();
                // bootout fails when the agent is not loaded yet: expected.
                let _ = run("launchctl", &["bootout", &format!("{domain}/{unit}")]);
                run(
                    "launchctl",
                    &["bootstrap", &domain, &path.display().to_string()],
                )
            }
        }
    }

    fn deactivate(&self, unit: &str, _path: &Path) -> Result<(), ManagerError> {
        match self.platform {
            Platform::Systemd => run("systemctl", &["--user", "disable", "--now", unit]),
            Platform::Launchd => run(
                "launchctl",
                &["bootout", &format!("{}/{unit}", gui_domain())],
            ),
        }
    }

    fn forget(&self, _unit: &str) -> Result<(), ManagerError> {
        match self.platform {
            Platform::Systemd => run("systemctl", &["--user", "daemon-reload"]),
            Platform::Launchd => Ok(()),
        }
    }
}

fn gui_domain() -> String {
    format!("gui/{}", rustix::process::getuid().as_raw())
}

fn run(program: &str, args: &[&str]) -> Result<(), ManagerError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| ManagerError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if output.is_empty() {
        output = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(ManagerError::Failed {
        command,
        status: out.status.to_string(),
        output,
    })
}

/// What the service manager says about a unit, for `doctor`: systemd's
/// `is-active` word (`active`, `inactive`, `failed`, …), or for launchd
/// whether the agent is loaded and its `state`. Never changes anything.
pub fn unit_state(platform: Platform, unit: &str) -> Result<String, ManagerError> {
    let (program, args): (&str, Vec<String>) = match platform {
        Platform::Systemd => (
            "systemctl",
            vec!["--user".into(), "is-active".into(), unit.into()],
        ),
        Platform::Launchd => (
            "launchctl",
            vec!["print".into(), format!("{}/{unit}", gui_domain())],
        ),
    };
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(&args)
        .output()
        .map_err(|source| ManagerError::Spawn {
            command: command.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(match platform {
        // is-active exits non-zero for anything but active; its word is
        // the answer either way.
        Platform::Systemd => text.lines().next().unwrap_or("unknown").trim().to_string(),
        Platform::Launchd if !out.status.success() => "not loaded".to_string(),
        Platform::Launchd => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("state = "))
            .map(|s| format!("loaded, {s}"))
            .unwrap_or_else(|| "loaded".to_string()),
    })
}
