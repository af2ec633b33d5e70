//! Rows that need live figures. They come from the running daemon over
//! its socket (`status`): doctor never opens a second session to the
//! backend beside it. Only when no daemon runs does doctor check the
//! backend itself (`probe`).

use std::time::Duration;

use super::report::Row;
use crate::bridge::ipc;
use crate::protocol::ipc::Request;
use crate::runtime::shared::Connection;
use crate::runtime::status::StatusReport;

const NO_DAEMON: &str = "no daemon running (live figures come from it)";

pub async fn status(socket: &std::path::Path) -> Result<StatusReport, String> {
    let v = ipc::call(socket, &Request::Status, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// The rows a running daemon's status answers.
pub fn from_daemon(r: &StatusReport, key_home: &str) -> Vec<Row> {
    let mut rows = vec![backend(r, key_home)];
    let outbox = format!(
        "{} pending, {} queued, {} frames waiting",
        r.pending, r.queued, r.outbox
    );
    rows.push(if r.outbox_dropped > 0 {
        Row::warn(
            "outbox",
            format!(
                "{outbox}; {} progress frames shed while the backend was unreachable",
                r.outbox_dropped
            ),
            "see the backend row and the log",
        )
    } else {
        Row::ok("outbox", outbox)
    });
    rows.push(Row::ok(
        "wakes",
        format!(
            "{} running, agents: {}",
            r.running_wakes.len(),
            r.agents.len()
        ),
    ));
    rows.push(Row::ok("uptime", uptime(&r.started_at)));
    if let Some(e) = &r.config_error {
        rows.push(Row::alert(
            "reload",
            format!("the daemon could not load its config (the last good one stays in force): {e}"),
            "fix the file; the daemon reloads it on save",
        ));
    }
    if let Some(e) = &r.reconcile_error {
        rows.push(Row::warn(
            "reconcile",
            e.clone(),
            "see `cloudagent-daemon plan`; the daemon retries",
        ));
    }
    rows
}

/// The rows that need a daemon, when none runs.
pub fn without_daemon() -> Vec<Row> {
    ["outbox", "wakes", "uptime"]
        .into_iter()
        .map(|l| Row::unknown(l, NO_DAEMON))
        .collect()
}

fn backend(r: &StatusReport, key_home: &str) -> Row {
    let transport = r.transport.as_deref().unwrap_or("?");
    let why = r.last_error.clone().unwrap_or_default();
    match &r.connection {
        Connection::Connected { since } => Row::ok(
            "backend",
            format!(
                "{} connected since {since} ({transport}; from the daemon)",
                r.server
            ),
        ),
        Connection::AuthFailed => Row::alert(
            "backend",
            format!("{} rejected the machine API key", r.server),
            key_fix(key_home),
        ),
        Connection::Parked { why } => Row::alert(
            "backend",
            format!("not connecting: {why}"),
            "declare the profile again in cloudagent.toml",
        ),
        Connection::Disconnected { since } => Row::alert(
            "backend",
            format!("{} unreachable since {since}: {why}", r.server),
            "check the server URL, the network and any proxy; `cloudagent-daemon status` shows retries",
        ),
        Connection::Connecting => Row::warn(
            "backend",
            format!("{} connecting… {why}", r.server),
            "wait a few seconds and run doctor again",
        ),
    }
}

pub fn key_fix(key_home: &str) -> String {
    format!(
        "create a new machine key in the cloudagent UI (host machine settings) and put it in {key_home}"
    )
}

fn uptime(started_at: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(started_at) else {
        return format!("since {started_at}");
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}
