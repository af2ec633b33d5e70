//! `import`: an install of the original Python daemon (each profile's
//! `config.json`, its `claude_permission_mode`, service units holding
//! `--api-key`) turned into cloudagent.toml plus 0600 key files, then the
//! plan. Nothing else is touched: workspaces, `state.json` and the units
//! stay where they are until `apply` (README, "Coming from the Python
//! daemon").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use super::edit::{self, DryRunArg, Outcome};
use super::login::{self, Server};
use crate::config::edit::{ConfigFile, set};
use crate::config::{PermissionMode, Secret, server_url};
use crate::fsutil::display_path;
use crate::paths::{Home, ProfileName};
use crate::runtime::settings::LegacyConfig;
use crate::service::Platform;
use crate::service::legacy::{self, LegacyUnit};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Also import a profile whose server is http:// to another machine
    /// (allow_insecure_http = true; the key then crosses the network
    /// unencrypted, as it did with the original).
    #[arg(long)]
    pub allow_insecure_http: bool,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

/// One profile of the original install.
#[derive(Default)]
struct Found {
    config: Option<(PathBuf, Result<LegacyConfig, String>)>,
    unit: Option<(PathBuf, LegacyUnit)>,
}

/// What to write for one profile.
struct Import {
    url: String,
    key: Secret,
    insecure: bool,
    mode: Option<PermissionMode>,
    workspace_root: Option<String>,
    service: bool,
}

pub fn run(config_flag: Option<&Path>, args: &ImportArgs) -> u8 {
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let platform = match Platform::detect() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e}");
            return 2;
        }
    };
    let mut file = match edit::open_or_fail(config_flag, &home) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let found = discover(&home, platform);
    if found.is_empty() {
        println!(
            "Nothing to import: no config.json under {} and no service unit of the original daemon.",
            display_path(&home.cloudagent_root().join("daemon"), &home.home)
        );
        return 0;
    }
    let (keys, failed) = declare_all(&mut file, &home, &found, args.allow_insecure_http);
    if let Err(c) = edit::check(&file, &home) {
        return c;
    }
    if !args.dry_run.dry_run {
        for (path, key) in &keys {
            if let Err(e) = write_key(path, key, &home) {
                eprintln!("Error: {e}");
                return 1;
            }
        }
    }
    finish(&file, &home, args.dry_run.dry_run, failed)
}

/// Declare every profile the file does not have yet. Returns the key
/// files to write and whether a profile could not be imported.
fn declare_all(
    file: &mut ConfigFile,
    home: &Home,
    found: &BTreeMap<ProfileName, Found>,
    allow_http: bool,
) -> (Vec<(PathBuf, Secret)>, bool) {
    let mut failed = false;
    let mut keys = Vec::new();
    for (profile, f) in found {
        if file.has_table(&["profiles", profile.as_str()]) {
            println!(
                "profile '{profile}': already declared in {}; left as it is.",
                display_path(&file.path, &home.home)
            );
            continue;
        }
        let imported = settings(f, allow_http)
            .and_then(|i| declare(file, home, profile, &i).map(|k| (k, i.key)));
        match imported {
            Ok(key) => keys.push(key),
            Err(e) => {
                eprintln!("Error: profile '{profile}': {e}");
                failed = true;
            }
        }
    }
    (keys, failed)
}

/// Write the file (or show it, or the snippet) and print the whole plan.
fn finish(file: &ConfigFile, home: &Home, dry_run: bool, failed: bool) -> u8 {
    let plan = |d: &crate::config::Desired, ctx: &crate::reconcile::Context| {
        crate::reconcile::plan_for(d, ctx).1
    };
    match edit::write(file, home, dry_run, plan) {
        Ok((desired, ctx)) => {
            let (_, p) = crate::reconcile::plan_for(&desired, &ctx);
            print!(
                "{}",
                crate::reconcile::render::text(&p, &desired.warnings, &home.home)
            );
            if p.has_changes() {
                println!("Run `cloudagent-daemon apply` to make it so.");
            }
            u8::from(failed || !p.errors.is_empty())
        }
        Err(Outcome::DryRun) => u8::from(failed),
        Err(o) => o.code(),
    }
}

/// The original's profiles: every `config.json` (docs/PROTOCOL.md, "Files
/// on disk") and
/// every unit of this platform's service manager with its name.
fn discover(home: &Home, platform: Platform) -> BTreeMap<ProfileName, Found> {
    let mut names = vec![ProfileName::default_profile()];
    for dir in [
        home.named_profiles_dir(),
        platform
            .unit_path(home, &ProfileName::default_profile())
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let candidate = unit_profile(&name, platform).unwrap_or(name);
            if let Ok(p) = ProfileName::parse(&candidate)
                && !names.contains(&p)
            {
                names.push(p);
            }
        }
    }
    let mut out = BTreeMap::new();
    for name in names {
        let mut f = Found::default();
        let cfg = home.profile(&name).legacy_config_file();
        if cfg.exists() {
            let parsed = std::fs::read(&cfg)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            f.config = Some((cfg, parsed));
        }
        let unit = platform.unit_path(home, &name);
        let ours = matches!(
            crate::reconcile::inventory::Inventory::read(&home.profile(&name).inventory_file()),
            Ok(Some(inv)) if inv.service.as_ref().is_some_and(|s| s.path == unit)
        );
        if let (false, Ok(text)) = (ours, std::fs::read_to_string(&unit)) {
            f.unit = Some((unit, legacy::parse(&text, platform)));
        }
        if f.config.is_some() || f.unit.is_some() {
            out.insert(name, f);
        }
    }
    out
}

/// The profile named by a unit file name (`cloudagent-daemon-fr.service`,
/// `chat.cloudagent.daemon.fr.plist`; the default profile's has none).
fn unit_profile(file_name: &str, platform: Platform) -> Option<String> {
    match platform {
        Platform::Systemd => file_name
            .strip_prefix("cloudagent-daemon-")?
            .strip_suffix(".service")
            .map(String::from),
        Platform::Launchd => file_name
            .strip_prefix("chat.cloudagent.daemon.")?
            .strip_suffix(".plist")
            .map(String::from),
    }
}

/// The unit's flags win over config.json, as they did when the original
/// ran it.
fn settings(f: &Found, allow_http: bool) -> Result<Import, String> {
    let cfg = match &f.config {
        Some((path, Err(e))) => {
            return Err(format!("cannot read {}: {e}", path.display()));
        }
        Some((_, Ok(c))) => Some(c),
        None => None,
    };
    let unit = f.unit.as_ref().map(|(_, u)| u);
    let url = unit
        .and_then(|u| u.server_url.clone())
        .or_else(|| cfg.map(|c| c.server_url.clone()))
        .ok_or("no server URL (neither config.json nor the unit has one)")?;
    let key = unit
        .and_then(|u| u.api_key.clone())
        .or_else(|| cfg.map(|c| c.machine_api_key.clone()))
        .ok_or("no machine key (neither config.json nor the unit has one)")?;
    if !key.trim().starts_with("sk_machine_") {
        return Err("the machine key does not start with sk_machine_".into());
    }
    let url = server_url::normalize(&url)?;
    if !allow_http {
        server_url::check_cleartext(&url, false, "run import --allow-insecure-http")?;
    }
    let mode_text = unit
        .and_then(|u| u.permission_mode.clone())
        .or_else(|| cfg.map(|c| c.claude_permission_mode.clone()));
    let mode = match mode_text {
        None => None,
        Some(m) => Some(
            serde_json::from_value::<PermissionMode>(serde_json::Value::String(m.clone()))
                .map_err(|_| format!("unknown permission mode {m:?}"))?,
        ),
    };
    Ok(Import {
        url,
        key: Secret::new(key.trim()),
        insecure: unit.is_some_and(|u| u.insecure),
        mode: mode.filter(|m| *m != PermissionMode::Default),
        workspace_root: unit.and_then(|u| u.workspace_root.clone()),
        service: unit.is_some(),
    })
}

/// Declare the profile in the file; returns its key file.
fn declare(
    file: &mut ConfigFile,
    home: &Home,
    profile: &ProfileName,
    i: &Import,
) -> Result<PathBuf, String> {
    let server = Server {
        url: &i.url,
        insecure: i.insecure,
        allow_insecure_http: server_url::check_cleartext(&i.url, false, "").is_err(),
    };
    let key_file = login::declare_profile(file, home, profile, &server)?;
    let t = file.table(&["profiles", profile.as_str()])?;
    if let Some(m) = i.mode {
        set(t, "permission_mode", m.as_str());
    }
    if let Some(w) = &i.workspace_root {
        let p = crate::fsutil::expand_tilde(w, &home.home);
        if p.is_absolute() {
            set(t, "workspace_root", display_path(&p, &home.home));
        }
    }
    if i.service {
        file.table(&["profiles", profile.as_str(), "service"])?;
    }
    Ok(key_file)
}

/// The key file, 0600; an existing one holding another key is not
/// overwritten.
fn write_key(path: &Path, key: &Secret, home: &Home) -> Result<(), String> {
    let shown = display_path(path, &home.home);
    if let Ok(old) = std::fs::read_to_string(path) {
        if old.trim() == key.expose() {
            return Ok(());
        }
        return Err(format!(
            "{shown} already holds another key; move it away and run import again"
        ));
    }
    login::write_key(path, key).map_err(|e| format!("cannot write {shown}: {e}"))?;
    println!("Key saved in {shown} (mode 0600).");
    Ok(())
}
