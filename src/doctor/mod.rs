//! `doctor`: a read-only report on one profile (README "Commands"): the
//! original's identity, health rows (OK/WARN/ALERT), agents and notes, plus
//! rows of our own (config, key, claude, bridge, modes, service unit,
//! backend). Each failing row says its fix. Live figures come from the
//! running daemon; only without one does doctor check the backend itself.

mod bridge;
mod live;
mod local;
mod probe;
pub mod report;
mod source;

use std::path::Path;

use serde::Deserialize;

use crate::paths::{Home, ProfileName};
use crate::runtime::running::{self, Found};
use crate::workspace::pending_spawn;
use report::{AgentLine, Identity, Report, Row};
use source::Source;

pub async fn collect(
    config_flag: Option<&Path>,
    profile: &ProfileName,
    home: &Home,
    socket: &Path,
) -> Report {
    let src = Source::load(config_flag, profile, home);
    let mut notes = src.notes.clone();
    let (mut identity, state_note) = identity(&src);
    notes.extend(state_note);
    let found = running::find(&src.paths.lock_file(), socket).await;
    let daemon_runs = found != Found::None;
    let live = if daemon_runs {
        Some(live::status(socket).await)
    } else {
        None
    };
    let mut health = vec![daemon_row(&src, found, live.as_ref())];
    health.push(src.config_row.clone());
    health.push(src.key_row.clone());
    health.push(local::claude(&src).await);
    let ids = source::agent_ids(&src);
    health.push(bridge::check(&src, &ids).await);
    health.push(local::dirs(&src));
    health.push(local::socket(socket, daemon_runs));
    health.push(local::service(&src));
    match &live {
        Some(Ok(r)) => {
            identity.host_id = r.host_id.clone().or(identity.host_id);
            identity.last_seq = Some(r.last_seq);
            health.extend(live::from_daemon(r, &src.key_home));
        }
        Some(Err(_)) => {
            health.push(Row::unknown(
                "backend",
                "the daemon did not answer on its socket",
            ));
            health.extend(live::without_daemon());
        }
        None => {
            health.push(own_probe(&src).await);
            health.extend(live::without_daemon());
        }
    }
    Report {
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        identity,
        health,
        agents: agents(&src, &ids),
        notes,
    }
}

fn daemon_row(
    src: &Source,
    found: Found,
    live: Option<&Result<crate::runtime::status::StatusReport, String>>,
) -> Row {
    let flag = crate::cli::profile_flag(&src.profile);
    match (found, live) {
        (Found::None, _) => Row::alert(
            "daemon",
            match crate::runtime::lock::read_pid(&src.paths.pid_file()) {
                Ok(Some(pid)) => format!("stale pid file (pid={pid})"),
                _ => "not running (no PID file)".into(),
            },
            format!(
                "`cloudagent-daemon start{flag}` (or declare [profiles.{}.service] and apply)",
                src.profile
            ),
        ),
        (_, Some(Err(e))) => Row::warn(
            "daemon",
            format!("running, but it does not answer on its socket: {e}"),
            format!("`cloudagent-daemon stop{flag}`, then start it again"),
        ),
        (Found::Daemon(pid), _) => Row::ok("daemon", format!("running pid={pid}")),
        (Found::Unidentified, _) => Row::ok("daemon", "running"),
    }
}

async fn own_probe(src: &Source) -> Row {
    match (&src.server_url, &src.key) {
        (Some(url), Some(key)) => probe::backend(url, key, src.insecure, &src.key_home).await,
        (None, _) => Row::unknown("backend", "not checked: no server configured"),
        (Some(_), None) => Row::unknown("backend", "not checked: no usable key"),
    }
}

#[derive(Deserialize)]
struct StateJson {
    #[serde(default)]
    last_seq: i64,
    #[serde(default)]
    processed_message_ids: Vec<serde_json::Value>,
    #[serde(default)]
    host_id: Option<String>,
}

/// The identity section, and a note when state.json does not parse.
fn identity(src: &Source) -> (Identity, Option<String>) {
    let state = src.paths.state_file();
    let mut id = Identity {
        profile: src.profile.to_string(),
        server_url: src.server_url.clone(),
        workspace: src.paths.agents_root.display().to_string(),
        state_json: state.display().to_string(),
        config: src.origin.clone(),
        ..Default::default()
    };
    let note = match read_bounded(&state, 64 << 20) {
        None => None,
        Some(bytes) => match serde_json::from_slice::<StateJson>(&bytes) {
            Ok(s) => {
                id.last_seq = Some(s.last_seq);
                id.processed_msgs = Some(s.processed_message_ids.len());
                id.host_id = s.host_id.filter(|h| !h.is_empty());
                None
            }
            Err(e) => Some(format!("state.json is corrupt: {e}")),
        },
    };
    (id, note)
}

fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[derive(Deserialize)]
struct LastSpawn {
    exit_code: Option<i64>,
    session_id: Option<String>,
    ts: Option<String>,
}

fn agents(src: &Source, ids: &[String]) -> Vec<AgentLine> {
    ids.iter()
        .filter_map(|id| Some((id, source::agent_dir(src, id)?)))
        .map(|(id, dir)| {
            let meta = dir.join(".meta");
            let last = read_bounded(&meta.join("last-spawn.json"), 1 << 20)
                .and_then(|b| serde_json::from_slice::<LastSpawn>(&b).ok());
            let pending = pending_spawn::unrun(&meta.join(pending_spawn::FILE))
                .map(|(u, _)| u.len())
                .unwrap_or(0);
            AgentLine {
                id: id.clone(),
                last_spawn: last.is_some(),
                rc: last.as_ref().and_then(|l| l.exit_code),
                sid: last.as_ref().and_then(|l| l.session_id.clone()),
                ts: last.and_then(|l| l.ts),
                pending,
            }
        })
        .collect()
}
