//! `install-service` and `uninstall-service`: the profile's
//! `[profiles.P.service]` section (and, when given, its server, key,
//! permission mode and workspace root) in cloudagent.toml, then apply, which
//! writes and loads the systemd user unit or launchd agent. A key given
//! here goes to the profile's 0600 key file; the unit only names the
//! config file.

use std::path::{Path, PathBuf};

use clap::Args;

use super::edit::{self, DryRunArg, Outcome};
use super::login::{self, Server};
use super::profile::ProfileArg;
use crate::config::edit::set;
use crate::config::{PermissionMode, Secret, server_url};
use crate::fsutil::display_path;
use crate::paths::{Home, ProfileName};
use crate::service::Platform;

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Declare the profile's server too (needs --api-key).
    #[arg(long, value_name = "URL")]
    pub server_url: Option<String>,
    /// The machine API key (needs --server-url). Saved in the profile's
    /// 0600 key file, never in the unit. `login` asks for it without echo
    /// instead.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Skip TLS certificate verification for the profile's server
    /// (insecure = true in its section).
    #[arg(long)]
    pub insecure: bool,
    /// Allow an http:// --server-url to another machine.
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// claude's --permission-mode for this profile: default, acceptEdits,
    /// bypassPermissions, dontAsk or plan (permission_mode in the
    /// profile's section).
    #[arg(long, value_name = "MODE")]
    pub permission_mode: Option<String>,
    /// Host-level workspace root: agents without workdir run in
    /// <DIR>/<agent id>/workspace (workspace_root in the profile's section).
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workspace_root: Option<PathBuf>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

fn usage(msg: &str) -> u8 {
    eprintln!("Error: {msg}");
    2
}

/// The original's names for the platforms, in its messages.
fn os_name(p: Platform) -> &'static str {
    match p {
        Platform::Systemd => "linux",
        Platform::Launchd => "macos",
    }
}

fn parse_mode(raw: &str) -> Result<PermissionMode, String> {
    serde_json::from_value(serde_json::Value::String(raw.to_string())).map_err(|_| {
        format!("--permission-mode must be one of ['acceptEdits', 'bypassPermissions', 'default', 'dontAsk', 'plan'], got '{raw}'")
    })
}

/// The server and key given on the command line (both or neither).
fn given_server(args: &InstallArgs) -> Result<Option<(String, Secret)>, String> {
    match (&args.server_url, &args.api_key) {
        (None, None) => Ok(None),
        (Some(url), Some(key)) => {
            let url = server_url::normalize(url)?;
            server_url::check_cleartext(
                &url,
                args.allow_insecure_http,
                "pass --allow-insecure-http",
            )?;
            if !key.trim().starts_with("sk_machine_") {
                return Err("--api-key must start with sk_machine_".into());
            }
            Ok(Some((url, Secret::new(key.trim()))))
        }
        _ => Err("--server-url and --api-key must be used together".into()),
    }
}

pub fn install(config_flag: Option<&Path>, args: &InstallArgs) -> u8 {
    let (profile, home) = match super::status::profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let mode = match args.permission_mode.as_deref().map(parse_mode).transpose() {
        Ok(m) => m,
        Err(e) => return usage(&e),
    };
    let server = match given_server(args) {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    let platform = match Platform::detect() {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    let (file, key_file) = match edited(config_flag, &home, &profile, args, server.as_ref(), mode) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let unit = platform.unit_path(&home, &profile);
    if unit.exists() {
        println!(
            "(updating existing profile '{profile}' — {} will be replaced)",
            match platform {
                Platform::Systemd => "unit file",
                Platform::Launchd => "plist",
            }
        );
    }
    if let (Some(path), Some((_, key)), false) = (&key_file, &server, args.dry_run.dry_run)
        && let Err(c) = login::save_key(path, key, &home)
    {
        return c;
    }
    let outcome = edit::commit(&file, &home, &profile, args.dry_run.dry_run);
    if let Outcome::Applied(0) = outcome
        && !installed(&home, &profile, &unit)
    {
        eprintln!(
            "Error: the service unit was not installed: {} is not one cloudagent-daemon wrote (one the Python daemon installed?), so it was left alone. Remove it (the Python tool's `cloudagent-daemon uninstall-service{}`, or delete the file), then run install-service again.",
            display_path(&unit, &home.home),
            super::profile::flag(&profile)
        );
        return 1;
    }
    report_install(&outcome, platform, &home, &profile, &unit, mode);
    outcome.code()
}

/// Whether apply recorded `unit` as the profile's (it leaves a unit it did
/// not write alone, and says so only as a note).
fn installed(home: &Home, profile: &ProfileName, unit: &Path) -> bool {
    let file = home.profile(profile).inventory_file();
    matches!(
        crate::reconcile::inventory::Inventory::read(&file),
        Ok(Some(inv)) if inv.service.as_ref().is_some_and(|s| s.path == unit)
    )
}

/// The config file with the whole edit made and checked, and the key
/// file when a key was given.
fn edited(
    config_flag: Option<&Path>,
    home: &Home,
    profile: &ProfileName,
    args: &InstallArgs,
    server: Option<&(String, Secret)>,
    mode: Option<PermissionMode>,
) -> Result<(crate::config::edit::ConfigFile, Option<PathBuf>), u8> {
    let mut file = edit::open_or_fail(config_flag, home)?;
    let key_file = match server {
        Some((url, _)) => {
            let s = Server {
                url,
                insecure: args.insecure,
                allow_insecure_http: args.allow_insecure_http,
            };
            Some(login::declare_profile(&mut file, home, profile, &s).map_err(|e| usage(&e))?)
        }
        None => {
            edit::require_profile(&file, home, profile)?;
            None
        }
    };
    edit_profile(&mut file, home, profile, args, mode).map_err(|e| {
        eprintln!("Error: {e}");
        1u8
    })?;
    edit::check(&file, home)?;
    Ok((file, key_file))
}

/// The service section, and the profile keys given on the command line.
fn edit_profile(
    file: &mut crate::config::edit::ConfigFile,
    home: &Home,
    profile: &ProfileName,
    args: &InstallArgs,
    mode: Option<PermissionMode>,
) -> Result<(), String> {
    if args.insecure && args.server_url.is_none() {
        let server = file
            .get_table(&["profiles", profile.as_str()])
            .and_then(|t| t.get("server")?.as_str().map(String::from))
            .ok_or_else(|| format!("profiles.{profile}.server is not set"))?;
        set(file.table(&["servers", &server])?, "insecure", true);
    }
    let t = file.table(&["profiles", profile.as_str()])?;
    if let Some(m) = mode {
        set(t, "permission_mode", m.as_str());
    }
    if let Some(w) = &args.workspace_root {
        let abs = if w.is_absolute() {
            w.clone()
        } else {
            std::env::current_dir()
                .map(|d| d.join(w))
                .unwrap_or_else(|_| w.clone())
        };
        set(t, "workspace_root", display_path(&abs, &home.home));
    }
    let s = file.table(&["profiles", profile.as_str(), "service"])?;
    if s.get("enable").is_some() {
        set(s, "enable", true);
    }
    Ok(())
}

fn report_install(
    outcome: &Outcome,
    platform: Platform,
    home: &Home,
    profile: &ProfileName,
    unit: &Path,
    mode: Option<PermissionMode>,
) {
    match outcome {
        Outcome::Applied(0) => {
            println!(
                "✓ Installed {} service unit: {}",
                os_name(platform),
                display_path(unit, &home.home)
            );
            if !profile.is_default() {
                println!("  profile: {profile}");
            }
            if let Some(m) = mode.filter(|m| *m != PermissionMode::Default) {
                println!("  permission mode: {}", m.as_str());
            }
            println!("Daemon will auto-restart on crash and start at login.");
            if platform == Platform::Systemd
                && let Some(note) = crate::service::systemd::linger_note()
            {
                println!("{note}");
            }
        }
        Outcome::Applied(_) if platform == Platform::Systemd => {
            eprintln!("{}", crate::service::systemd::NO_USER_SESSION);
        }
        _ => {}
    }
}

pub fn uninstall(config_flag: Option<&Path>, args: &UninstallArgs) -> u8 {
    let (profile, home) = match super::status::profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let platform = match Platform::detect() {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    let mut file = match edit::open_or_fail(config_flag, &home) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let removed = file.remove_table(&["profiles", profile.as_str(), "service"]);
    if !removed {
        let unit = platform.unit_path(&home, &profile);
        if std::fs::symlink_metadata(&unit).is_ok() {
            eprintln!(
                "({} service for profile '{profile}' is not declared in {}: {} was not written from it and is left alone)",
                os_name(platform),
                display_path(&file.path, &home.home),
                display_path(&unit, &home.home)
            );
        } else {
            eprintln!(
                "({} service for profile '{profile}' was not installed)",
                os_name(platform)
            );
        }
        return 1;
    }
    let outcome = edit::commit(&file, &home, &profile, args.dry_run.dry_run);
    if let Outcome::Applied(0) = outcome {
        println!(
            "✓ Uninstalled {} service (profile='{profile}')",
            os_name(platform)
        );
    }
    outcome.code()
}
