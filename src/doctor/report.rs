//! The doctor's report: one typed value, printed as the original's text
//! layout (docs/PROTOCOL.md "doctor") or serialised for `--json`.

use std::fmt::Write;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "ALERT")]
    Alert,
    /// Nothing to judge (no live figures without a daemon).
    #[serde(rename = "—")]
    Unknown,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Alert => "ALERT",
            Status::Unknown => "—",
        }
    }
}

/// One health row: what was checked, how it stands, and for a fault the
/// command or edit that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub label: &'static str,
    pub status: Status,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Row {
    pub fn ok(label: &'static str, value: impl Into<String>) -> Self {
        Self {
            label,
            status: Status::Ok,
            value: value.into(),
            fix: None,
        }
    }
    pub fn unknown(label: &'static str, value: impl Into<String>) -> Self {
        Self {
            status: Status::Unknown,
            ..Self::ok(label, value)
        }
    }
    pub fn warn(label: &'static str, value: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Self::ok(label, value)
        }
    }
    pub fn alert(label: &'static str, value: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Alert,
            fix: Some(fix.into()),
            ..Self::ok(label, value)
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Identity {
    pub profile: String,
    pub server_url: Option<String>,
    pub host_id: Option<String>,
    pub workspace: String,
    pub state_json: String,
    pub last_seq: Option<i64>,
    pub processed_msgs: Option<usize>,
    /// Where the profile's settings come from.
    pub config: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentLine {
    pub id: String,
    /// `.meta/last-spawn.json` was readable.
    pub last_spawn: bool,
    pub rc: Option<i64>,
    pub sid: Option<String>,
    pub ts: Option<String>,
    /// Messages the original daemon acknowledged but never ran
    /// (`.meta/pending-spawn.jsonl`), not yet replayed.
    pub pending: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub identity: Identity,
    pub health: Vec<Row>,
    pub agents: Vec<AgentLine>,
    pub notes: Vec<String>,
}

impl Report {
    /// Exit 1 when any row is ALERT (as the original), else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.health.iter().any(|r| r.status == Status::Alert))
    }

    pub fn text(&self) -> String {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
        let rule = "=".repeat(60);
        let mut out = format!(
            "{rule}\ncloudagent-daemon doctor\n{}\n{rule}\n\n",
            self.generated_at
        );
        let i = &self.identity;
        out.push_str("--- identity ---\n");
        let _ = writeln!(out, "  profile:       {}", i.profile);
        let _ = writeln!(out, "  config:        {}", dash(&i.config));
        let _ = writeln!(out, "  server_url:    {}", dash(&i.server_url));
        let _ = writeln!(out, "  host_id:       {}", dash(&i.host_id));
        let _ = writeln!(out, "  workspace:     {}", i.workspace);
        let _ = writeln!(out, "  state.json:    {}", i.state_json);
        if let Some(n) = i.last_seq {
            let _ = writeln!(out, "  last_seq:      {n}");
        }
        if let Some(n) = i.processed_msgs {
            let _ = writeln!(out, "  processed_msgs:{n}");
        }
        out.push_str("\n--- health ---\n");
        for r in &self.health {
            let _ = writeln!(
                out,
                "  {:<10} [{:^5}] {}",
                r.label,
                r.status.label(),
                r.value
            );
            if let Some(fix) = &r.fix {
                let _ = writeln!(out, "  {:<10}  fix:  {fix}", "");
            }
        }
        out.push_str("\n--- agents ---\n");
        if self.agents.is_empty() {
            out.push_str("  (none)\n");
        }
        for a in &self.agents {
            out.push_str(&agent_line(a));
        }
        if !self.notes.is_empty() {
            out.push_str("\n--- notes ---\n");
            for n in &self.notes {
                let _ = writeln!(out, "  * {n}");
            }
        }
        crate::redact::secrets(&out).into_owned()
    }
}

fn agent_line(a: &AgentLine) -> String {
    let pending = if a.pending > 0 {
        format!(" pending={}", a.pending)
    } else {
        String::new()
    };
    if !a.last_spawn {
        return format!("  {}: (no last-spawn){pending}\n", a.id);
    }
    let rc = a.rc.map(|r| r.to_string()).unwrap_or_else(|| "—".into());
    let sid = a.sid.clone().unwrap_or_else(|| "—".into());
    format!("  {}: rc={rc} sid={sid}{pending}\n", a.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_render_in_the_original_layout_and_alert_decides_the_exit() {
        let mut r = Report {
            generated_at: "2026-01-01T00:00:00Z".into(),
            identity: Identity {
                profile: "default".into(),
                ..Default::default()
            },
            health: vec![Row::ok("daemon", "running pid=7")],
            agents: vec![],
            notes: vec![],
        };
        assert_eq!(r.exit_code(), 0);
        assert!(
            r.text().contains("  daemon     [ OK  ] running pid=7\n"),
            "{}",
            r.text()
        );
        r.health.push(Row::alert("key", "missing", "create it"));
        assert_eq!(r.exit_code(), 1);
        assert!(r.text().contains("[ALERT] missing\n"));
        assert!(r.text().contains("fix:  create it\n"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["health"][1]["status"], "ALERT");
    }
}
