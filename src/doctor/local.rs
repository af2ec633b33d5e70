//! Rows about this machine: claude, directory and socket modes, and the
//! service unit against the model (the same plan `apply` computes).

use std::path::Path;

use super::report::Row;
use super::source::Source;
use crate::fsutil;
use crate::reconcile::{self, Context, model::Kind, plan::Action};
use crate::runtime::wake::command::resolve_binary;
use crate::service::Platform;

/// claude found where the daemon looks (the configured name on PATH, or
/// its absolute path) and its `--version`.
pub async fn claude(src: &Source) -> Row {
    let path_env = std::env::var_os("PATH");
    let Some(bin) = resolve_binary(&src.claude_binary, path_env.as_deref()) else {
        return Row::alert(
            "claude",
            format!("{:?} not found on PATH", src.claude_binary),
            "install Claude Code (https://claude.com/claude-code), or set [daemon] claude_binary to its absolute path",
        );
    };
    let env: Vec<_> = std::env::vars_os().collect();
    let version = crate::runtime::detect::capture_version(
        &bin,
        &["--version"],
        &env,
        std::time::Duration::from_secs(5),
    )
    .await;
    Row::ok("claude", format!("{} ({version})", bin.display()))
}

/// The profile directory and its logs are private (0700).
pub fn dirs(src: &Source) -> Row {
    let mut faults = Vec::new();
    let mut fixes = Vec::new();
    for dir in [src.paths.base.clone(), src.paths.logs_dir()] {
        match std::fs::symlink_metadata(&dir) {
            Err(_) => {}
            Ok(m) if fsutil::mode_of(&m) & 0o077 != 0 => {
                faults.push(format!(
                    "{} is mode {:04o}",
                    dir.display(),
                    fsutil::mode_of(&m)
                ));
                fixes.push(format!("chmod 700 {}", dir.display()));
            }
            Ok(_) => {}
        }
    }
    if faults.is_empty() {
        if src.paths.base.exists() {
            Row::ok(
                "dirs",
                format!("{} and logs/ are 0700", src.paths.base.display()),
            )
        } else {
            Row::warn(
                "dirs",
                format!("{} does not exist yet", src.paths.base.display()),
                "`cloudagent-daemon apply` (or `start`) creates it",
            )
        }
    } else {
        Row::alert(
            "dirs",
            format!(
                "{} (other users can read the daemon's state)",
                faults.join(", ")
            ),
            format!("{} (apply also restores it)", fixes.join("; ")),
        )
    }
}

/// The bridge socket, when it exists, is 0600.
pub fn socket(socket: &Path, daemon_runs: bool) -> Row {
    match std::fs::symlink_metadata(socket) {
        Err(_) if daemon_runs => Row::alert(
            "socket",
            format!("{} is missing while the daemon runs", socket.display()),
            "restart the daemon (`cloudagent-daemon stop`, then start it)",
        ),
        Err(_) => Row::unknown("socket", "no socket: no daemon running"),
        Ok(m) if fsutil::mode_of(&m) & 0o077 != 0 => Row::alert(
            "socket",
            format!(
                "{} is mode {:04o}: other users may connect",
                socket.display(),
                fsutil::mode_of(&m)
            ),
            format!(
                "chmod 600 {} (the daemon creates it 0600; restart it to recreate)",
                socket.display()
            ),
        ),
        Ok(_) => Row::ok("socket", format!("{} (0600)", socket.display())),
    }
}

/// The service unit against the model: what `plan` would change about
/// it, and what stands in its way.
pub fn service(src: &Source) -> Row {
    let Some(desired) = &src.desired else {
        return Row::unknown("service", "no cloudagent.toml: no unit to compare");
    };
    let platform = match Platform::detect() {
        Ok(p) => p,
        Err(e) => return Row::unknown("service", e),
    };
    let exe = std::env::current_exe().unwrap_or_default();
    let ctx = Context {
        home: src.home.clone(),
        exe,
        platform,
    };
    let (_, plan) = reconcile::plan_for(desired, &ctx);
    let unit = platform.unit_path(&src.home, &src.profile);
    let resource = reconcile::model::ResourceId::service(&src.profile).to_string();
    let mine = |m: &&reconcile::plan::Message| m.resource == resource;
    if let Some(e) = plan.errors.iter().find(mine) {
        return Row::alert("service", e.message.clone(), "see `cloudagent-daemon plan`");
    }
    let change = plan
        .changes
        .iter()
        .find(|c| c.kind == Kind::Service && c.profile == src.profile.as_str());
    let declared = desired
        .profile(&src.profile)
        .is_some_and(|p| p.service.is_some());
    match (change, declared) {
        (Some(c), _) => Row::warn(
            "service",
            format!(
                "{} differs from the model (apply would {} it)",
                unit.display(),
                match c.action {
                    Action::Create => "create",
                    Action::Update => "update",
                    Action::Remove => "remove",
                    Action::Replace => "replace",
                }
            ),
            "`cloudagent-daemon plan` shows the difference, `cloudagent-daemon apply` fixes it",
        ),
        (None, true) => live_state(platform, &src.profile, &unit),
        (None, false) => Row::ok(
            "service",
            format!(
                "none declared ([profiles.{}.service] installs one)",
                src.profile
            ),
        ),
    }
}

/// The unit file matches the model; is the unit running?
fn live_state(platform: Platform, profile: &crate::paths::ProfileName, unit: &Path) -> Row {
    let name = platform.unit_name(profile);
    match crate::service::manager::unit_state(platform, &name) {
        Ok(state) if state == "active" || state.starts_with("loaded, running") => Row::ok(
            "service",
            format!("{} matches the model; {name}: {state}", unit.display()),
        ),
        Ok(state) => Row::warn(
            "service",
            format!(
                "{} matches the model, but {name} is {state}",
                unit.display()
            ),
            match platform {
                Platform::Systemd => format!(
                    "systemctl --user restart {name} (and `journalctl --user -u {name}` for why it stopped)"
                ),
                Platform::Launchd => format!("launchctl kickstart -k gui/$(id -u)/{name}"),
            },
        ),
        Err(e) => Row::ok(
            "service",
            format!("{} matches the model (state unknown: {e})", unit.display()),
        ),
    }
}
