//! What users read: Terraform-style plan text (one line per change with its
//! symbol, indented operations and diffs, a summary line) and `--json`.
//! Paths under the home directory are shown as `~/…`, so output is the same
//! on every machine.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::plan::{Action, Op, Plan, Summary};
use crate::config::Problem;
use crate::fsutil::display_path;

pub fn text(plan: &Plan, warnings: &[Problem], home: &Path) -> String {
    let mut out = String::new();
    for w in warnings {
        let _ = writeln!(out, "Warning: {w}\n");
    }
    messages(&mut out, "Warning", &plan.warnings, home);
    messages(&mut out, "Note", &plan.notes, home);
    messages(&mut out, "Error", &plan.errors, home);
    server_agents_text(&mut out, plan);
    if !plan.has_changes() {
        out.push_str("No changes.");
        if plan.errors.is_empty() {
            out.push_str(" The machine matches the configuration.");
        }
        out.push('\n');
        return out;
    }
    out.push_str("cloudagent-daemon will perform the following actions:\n\n");
    for c in &plan.changes {
        let _ = writeln!(out, "  {} {}", c.action.symbol(), c.id);
        for op in &c.ops {
            op_text(&mut out, op, home);
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary_line(plan.summary()));
    out
}

/// One line per message, `<kind>: <resource>: <text>`, then a blank line.
fn messages(out: &mut String, kind: &str, list: &[super::plan::Message], home: &Path) {
    for m in list {
        let _ = writeln!(
            out,
            "{kind}: {}: {}",
            m.resource,
            tilde_all(&m.message, home)
        );
    }
    if !list.is_empty() {
        out.push('\n');
    }
}

/// The server's agents the file does not declare, each with the TOML that
/// adopts it (a comment block: plan changes nothing about them).
fn server_agents_text(out: &mut String, plan: &Plan) {
    if plan.server_agents.is_empty() {
        return;
    }
    out.push_str("# managed by the server, not declared\n");
    for a in &plan.server_agents {
        let _ = writeln!(
            out,
            "#   {}/{}{}{} — to adopt it, add to the config file:",
            a.profile,
            a.agent_id,
            a.name
                .as_deref()
                .map(|n| format!(" ({n:?})"))
                .unwrap_or_default(),
            if a.chief { ", chief" } else { "" },
        );
        for line in a.adopt.lines() {
            let _ = writeln!(out, "#     {line}");
        }
    }
    out.push('\n');
}

pub fn summary_line(s: Summary) -> String {
    format!(
        "Plan: {} to add, {} to change, {} to remove.",
        s.add, s.change, s.remove
    )
}

fn tilde_all(message: &str, home: &Path) -> String {
    let h = home.display().to_string();
    if h.is_empty() || h == "/" {
        return message.to_string();
    }
    message.replace(&format!("{h}/"), "~/")
}

fn op_text(out: &mut String, op: &Op, home: &Path) {
    let p = |path: &Path| display_path(path, home);
    match op {
        Op::MkDir { path, mode } => {
            let _ = writeln!(out, "      + dir  {} ({mode:04o})", p(path));
        }
        Op::Chmod { path, from, to } => {
            let _ = writeln!(out, "      ~ mode {} {from:04o} -> {to:04o}", p(path));
        }
        Op::Write {
            path,
            mode,
            create,
            create_only,
            diff,
            sensitive_change,
            ..
        } => {
            let symbol = if *create { "+" } else { "~" };
            let note = if *create_only {
                ", written once, then owned by the agent"
            } else {
                ""
            };
            let _ = writeln!(out, "      {symbol} file {} ({mode:04o}{note})", p(path));
            if *sensitive_change {
                let _ = writeln!(out, "          (sensitive value changed)");
            }
            for line in diff.hunks().lines() {
                let _ = writeln!(out, "          {line}");
            }
        }
        Op::RemoveFile { path } => {
            let _ = writeln!(out, "      - file {}", p(path));
        }
        Op::Archive {
            path,
            archive_dir,
            agent,
        } => {
            let _ = writeln!(
                out,
                "      - archive {} -> {}/{agent}-<timestamp> (data kept)",
                p(path),
                p(archive_dir)
            );
        }
        Op::Activate { platform, unit, .. } => {
            let how = match *platform {
                "launchd" => "launchctl bootstrap",
                _ => "systemctl --user daemon-reload, enable, restart",
            };
            let _ = writeln!(out, "      ~ load {platform} unit {unit} ({how})");
        }
        Op::Adopt { path, from } => {
            let _ = writeln!(
                out,
                "      ~ adopt {} (written by {from}; replaced by this daemon's unit, key not shown)",
                p(path)
            );
        }
        Op::Deactivate { platform, unit, .. } => {
            let how = match *platform {
                "launchd" => "launchctl bootout",
                _ => "systemctl --user disable --now",
            };
            let _ = writeln!(out, "      - unload {platform} unit {unit} ({how})");
        }
    }
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: u32,
    changes: &'a [super::plan::Change],
    notes: &'a [super::plan::Message],
    errors: &'a [super::plan::Message],
    warnings: Vec<String>,
    server_agents: &'a [super::plan::ServerAgent],
    summary: Summary,
}

pub fn json(plan: &Plan, warnings: &[Problem]) -> String {
    let doc = JsonPlan {
        format_version: 1,
        changes: &plan.changes,
        notes: &plan.notes,
        errors: &plan.errors,
        warnings: warnings
            .iter()
            .map(|w| w.to_string())
            .chain(
                plan.warnings
                    .iter()
                    .map(|w| format!("{}: {}", w.resource, w.message)),
            )
            .collect(),
        server_agents: &plan.server_agents,
        summary: plan.summary(),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// Past tense for apply's progress lines.
pub fn done_verb(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Remove => "removed",
        Action::Replace => "replaced",
    }
}
