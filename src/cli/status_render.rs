//! The two renderings of a running daemon's [`StatusReport`]: `status`
//! (text for people) and `status --json` (the report serialised as it is,
//! plus `"running": true`). Both come from the one typed value, so they
//! cannot disagree.

use serde::Serialize;

use crate::protocol::Usage;
use crate::runtime::shared::Connection;
use crate::runtime::status::{AgentReport, StatusReport};

/// `status --json` of a running daemon.
#[derive(Serialize)]
struct Running<'a> {
    running: bool,
    #[serde(flatten)]
    report: &'a StatusReport,
}

pub fn json(r: &StatusReport) -> String {
    let out = serde_json::to_string_pretty(&Running {
        running: true,
        report: r,
    })
    .unwrap_or_default();
    crate::redact::secrets(&out).into_owned()
}

pub fn text(r: &StatusReport) -> String {
    let mut out = format!("● daemon running (pid={})\n", r.pid);
    let mut line = |k: &str, v: &str| out.push_str(&format!("  {k}: {v}\n"));
    line("profile", &r.profile);
    line("server", &r.server);
    line("host_id", r.host_id.as_deref().unwrap_or("—"));
    line("connection", &connection(&r.connection));
    if let Some(t) = &r.transport {
        line("transport", t);
    }
    if let Some(error) = &r.last_error {
        line("last error", error);
    }
    line("last_seq", &r.last_seq.to_string());
    config(&mut out, r);
    agents(&mut out, r);
    out.push_str(&format!(
        "  queued: {}  pending: {}  outbox: {}\n",
        r.queued, r.pending, r.outbox
    ));
    if r.outbox_dropped > 0 {
        out.push_str(&format!(
            "  outbox: {} progress frames shed while the backend was unreachable\n",
            r.outbox_dropped
        ));
    }
    out.push_str(&format!("  usage: {}\n", usage(&r.usage)));
    for text in r.refused.values() {
        out.push_str(&format!("  refused: {text}\n"));
    }
    crate::redact::secrets(&out).into_owned()
}

fn connection(c: &Connection) -> String {
    match c {
        Connection::Connected { since } => format!("connected since {since}"),
        Connection::Disconnected { since } => format!("disconnected since {since}"),
        Connection::Parked { why } => format!("parked: {why}"),
        other => other.label().to_string(),
    }
}

/// The configuration in force, the last reconcile and the unit's drift.
fn config(out: &mut String, r: &StatusReport) {
    if let Some(c) = &r.config_file {
        let mut facts = Vec::new();
        if let Some(h) = &r.config_hash {
            facts.push(format!("hash {h}"));
        }
        facts.push(format!("generation {}", r.config_generation));
        if let Some(at) = &r.config_loaded_at {
            facts.push(format!("loaded {at}"));
        }
        out.push_str(&format!(
            "  config: {} ({})\n",
            c.display(),
            facts.join(", ")
        ));
    }
    if let Some(e) = &r.config_error {
        out.push_str(&format!(
            "  config error (the last good configuration stays in force): {e}\n"
        ));
    }
    if let Some(rec) = &r.last_reconcile {
        out.push_str(&format!(
            "  last reconcile: {} ({}): {}\n",
            rec.at, rec.trigger, rec.summary
        ));
    }
    if let Some(e) = &r.reconcile_error {
        out.push_str(&format!("  reconcile error (retried): {e}\n"));
    }
    if !r.service_drift.is_empty() {
        out.push_str(&format!(
            "  service unit drift (the daemon never rewrites its own unit; `cloudagent-daemon apply` repairs it): {}\n",
            r.service_drift.join(", ")
        ));
    }
}

fn agents(out: &mut String, r: &StatusReport) {
    if r.agents.is_empty() {
        out.push_str("  agents: none\n");
        return;
    }
    out.push_str(&format!("  agents: {}\n", r.agents.len()));
    for id in &r.agents {
        let a = r.by_agent.get(id).cloned().unwrap_or_default();
        out.push_str(&format!("    {id}: {}\n", agent_line(id, &a, r)));
    }
}

fn agent_line(id: &str, a: &AgentReport, r: &StatusReport) -> String {
    let mut parts = Vec::new();
    match r.running_wakes.get(id) {
        Some(w) => parts.push(format!(
            "running message {} since {}{}",
            w.message_id,
            w.started_at,
            w.pid
                .map(|p| format!(" (claude pid {p})"))
                .unwrap_or_default()
        )),
        None => parts.push("idle".to_string()),
    }
    if a.queued > 0 {
        parts.push(format!("{} queued", a.queued));
    }
    if let Some(last) = &a.last_wake {
        parts.push(format!(
            "last wake {} (exit {}) at {}",
            last.status.as_str(),
            last.exit_code,
            last.finished_at
        ));
    }
    if a.finished > 0 {
        parts.push(format!("{} wakes, {}", a.finished, usage(&a.usage)));
    }
    parts.join("; ")
}

fn usage(u: &Usage) -> String {
    format!(
        "{} input + {} output tokens (cache {} read, {} created), ${:.4}, {} turns, {:.1} s",
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
        u.total_cost_usd,
        u.num_turns,
        u.duration_ms as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::protocol::{MessageId, WakeStatus};
    use crate::runtime::shared::{LastWake, Reconcile, RunningWake};

    /// A fixed report touching every part of both renderings.
    fn example() -> StatusReport {
        let usage = Usage {
            input_tokens: 3426,
            output_tokens: 58,
            cache_read_input_tokens: 100,
            cache_creation_input_tokens: 7,
            total_cost_usd: 0.01858,
            num_turns: 2,
            duration_ms: 178,
        };
        let last = LastWake {
            message_id: MessageId::string("m1"),
            status: WakeStatus::Idle,
            exit_code: 0,
            finished_at: "2026-12-06T05:00:01.000000+00:00".into(),
            usage: Some(usage),
        };
        let mut by_agent = BTreeMap::new();
        by_agent.insert(
            "agent_a".to_string(),
            AgentReport {
                running: None,
                queued: 0,
                finished: 1,
                last_wake: Some(last),
                usage,
            },
        );
        by_agent.insert(
            "agent_b".to_string(),
            AgentReport {
                running: Some(MessageId::parse(serde_json::json!(236)).unwrap()),
                queued: 2,
                ..AgentReport::default()
            },
        );
        let mut running_wakes = BTreeMap::new();
        running_wakes.insert(
            "agent_b".to_string(),
            RunningWake {
                message_id: MessageId::parse(serde_json::json!(236)).unwrap(),
                session_id: Some("sess_1".into()),
                started_at: "2026-12-06T05:00:02.000000+00:00".into(),
                pid: Some(4242),
                grant: None,
            },
        );
        StatusReport {
            pid: 1234,
            profile: "default".into(),
            server: "https://api.example.test".into(),
            config_file: Some("/home/u/.config/cloudagent/cloudagent.toml".into()),
            connection: Connection::Connected {
                since: "2026-12-06T04:59:00.000000+00:00".into(),
            },
            transport: Some("ws (auto)".into()),
            last_error: None,
            host_id: Some("host_1".into()),
            last_seq: 42,
            pending: 3,
            queued: 2,
            running_wakes,
            agents: vec!["agent_a".into(), "agent_b".into()],
            started_at: "2026-12-06T04:58:59.000000+00:00".into(),
            outbox: 1,
            outbox_dropped: 0,
            config_error: None,
            config_loaded_at: Some("2026-12-06T04:59:30.000000+00:00".into()),
            config_hash: Some("00c0ffee12345678".into()),
            config_generation: 3,
            reconcile_error: None,
            last_reconcile: Some(Reconcile {
                at: "2026-12-06T04:59:31.000000+00:00".into(),
                trigger: "config reload".into(),
                summary: "Plan: 1 to add, 0 to change, 0 to remove.".into(),
                error: None,
            }),
            service_drift: vec!["~ service \"default\"".into()],
            by_agent,
            usage,
            refused: BTreeMap::new(),
        }
    }

    #[test]
    fn text_rendering() {
        insta::assert_snapshot!("status_text", text(&example()));
    }

    #[test]
    fn json_rendering_is_the_report() {
        let r = example();
        let out = json(&r);
        insta::assert_snapshot!("status_json", out);
        // Read back whole: the JSON is the typed report, nothing added but
        // `running`.
        let back: StatusReport = serde_json::from_str(&out).unwrap();
        assert_eq!(back, r);
    }
}
