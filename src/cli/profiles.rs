//! `list-profiles` (PROTOCOL §7.2 of the original, its format kept): every
//! profile declared in cloudagent.toml or installed by the original daemon
//! (a `config.json`), with its server, host id and whether its daemon runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::config;
use crate::paths::{Home, ProfileName};
use crate::runtime::lock::{PidFileError, read_pid};
use crate::runtime::running::{self, Found};
use crate::runtime::settings::LegacyConfig;

#[derive(Debug, Args)]
pub struct ListProfilesArgs {
    /// Print the profiles as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where a profile is known from, and its server there.
struct Known {
    source: &'static str,
    server: Result<String, String>,
    legacy_host: Option<String>,
}

pub fn run(config_flag: Option<&Path>, args: &ListProfilesArgs) -> u8 {
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let mut known = legacy_profiles(&home);
    let path = config::resolve_path(config_flag, &home);
    if path.exists() {
        match config::load(&path, &home) {
            Ok(d) => {
                for (name, p) in &d.profiles {
                    let legacy_host = known.remove(name).and_then(|k| k.legacy_host);
                    let k = Known {
                        source: "cloudagent.toml",
                        server: Ok(p.server.url.clone()),
                        legacy_host,
                    };
                    known.insert(name.clone(), k);
                }
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    let rt = match crate::runtime::current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    // `default` first, then by name, as the original lists them.
    let mut order: Vec<_> = known.iter().collect();
    order.sort_by_key(|(name, _)| (!name.is_default(), name.as_str().to_string()));
    let rows: Vec<Value> = order
        .into_iter()
        .map(|(name, k)| rt.block_on(row(&home, name, k)))
        .collect();
    if args.json {
        println!("{}", Value::Array(rows));
    } else if rows.is_empty() {
        println!("No profiles installed. Run `cloudagent-daemon login ...` first.");
    } else {
        for r in &rows {
            print!("{}", text(r));
        }
    }
    0
}

/// The original's layout: `● name`, then server, host_id and status.
fn text(r: &Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
    format!(
        "● {}\n    server:  {}\n    host_id: {}\n    status:  {}\n",
        s("profile"),
        s("server"),
        s("host_id"),
        s("status")
    )
}

async fn row(home: &Home, name: &ProfileName, k: &Known) -> Value {
    let paths = home.profile(name);
    let socket = super::status::socket_for(home, name);
    let (status, pid, running) = match running::find(&paths.lock_file(), &socket).await {
        Found::Daemon(pid) => (format!("running pid={pid}"), Some(pid), true),
        Found::Unidentified => ("running".to_string(), None, true),
        Found::None => match read_pid(&paths.pid_file()) {
            Ok(None) => ("—".to_string(), None, false),
            Ok(Some(pid)) => (format!("stopped pid={pid}"), Some(pid), false),
            Err(PidFileError::OutOfRange { .. }) | Err(_) => ("stale-pid".to_string(), None, false),
        },
    };
    let live = if running {
        live_host(&socket).await
    } else {
        None
    };
    let host_id = live
        .or_else(|| state_host(&paths.state_file()))
        .or_else(|| k.legacy_host.clone());
    let server = match &k.server {
        Ok(s) => s.clone(),
        Err(e) => format!("<unreadable: {e}>"),
    };
    json!({
        "profile": name.as_str(),
        "source": k.source,
        "server": server,
        "host_id": host_id.unwrap_or_else(|| "?".into()),
        "status": status,
        "running": running,
        "pid": pid,
    })
}

/// The host id the running daemon reports.
async fn live_host(socket: &Path) -> Option<String> {
    let req = crate::protocol::ipc::Request::Status;
    let v = crate::bridge::ipc::call(socket, &req, Duration::from_secs(3))
        .await
        .ok()?;
    v.get("host_id")?.as_str().map(String::from)
}

/// The host id the daemon last recorded in `state.json`.
fn state_host(state: &Path) -> Option<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(state).ok()?).ok()?;
    v.get("host_id")?
        .as_str()
        .filter(|h| !h.is_empty())
        .map(String::from)
}

/// Profiles the original daemon installed (PROTOCOL §6.6): `default` if
/// its config.json exists, then named ones under `daemon/profiles/`.
fn legacy_profiles(home: &Home) -> BTreeMap<ProfileName, Known> {
    let mut names = vec![ProfileName::default_profile()];
    if let Ok(entries) = std::fs::read_dir(home.named_profiles_dir()) {
        names.extend(
            entries
                .flatten()
                .filter_map(|e| ProfileName::parse(&e.file_name().to_string_lossy()).ok())
                .filter(|n| !n.is_default()),
        );
    }
    names
        .into_iter()
        .filter_map(|n| {
            let file: PathBuf = home.profile(&n).legacy_config_file();
            if !file.exists() {
                return None;
            }
            let parsed = std::fs::read(&file)
                .map_err(|e| e.kind().to_string())
                .and_then(|b| {
                    serde_json::from_slice::<LegacyConfig>(&b).map_err(|_| "invalid JSON".into())
                });
            let k = Known {
                source: "config.json",
                server: parsed
                    .as_ref()
                    .map(|c| c.server_url.clone())
                    .map_err(Clone::clone),
                legacy_host: parsed.ok().and_then(|c| c.host_id),
            };
            Some((n, k))
        })
        .collect()
}
