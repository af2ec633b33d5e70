//! `agent register`, `agent unregister`, `agent list`: the agents of a
//! profile as declared in cloudagent.toml, beside those the server
//! assigned (which belong to the server and are never edited here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::edit::{self, DryRunArg, Outcome};
use super::profile::ProfileArg;
use crate::config::edit::{ConfigFile, set};
use crate::config::{self, Desired};
use crate::fsutil::display_path;
use crate::paths::{AgentId, Home, ProfileName};
use crate::workspace::{AgentLayout, Identity};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Declare an agent in the profile's section of cloudagent.toml and
    /// create its workspace. The agent must exist in cloudagent with
    /// runtime=local_daemon on this host. Given options change an agent
    /// already declared; others are left as they are.
    Register(RegisterArgs),
    /// Remove an agent from cloudagent.toml; its workspace is archived
    /// (moved to <agents>/.archive/, data intact). Agents the server
    /// assigned are the server's: unassign them in cloudagent instead.
    Unregister(UnregisterArgs),
    /// The profile's agents: those declared in cloudagent.toml and those the
    /// server assigned, side by side.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The agent's id as the backend knows it, e.g. agent_01HXX.
    #[arg(long, value_name = "ID")]
    pub agent_id: String,
    /// Display name (default: the id).
    #[arg(long)]
    pub name: Option<String>,
    /// The agent is a chief (gets the chief-only MCP tools).
    #[arg(long)]
    pub chief: bool,
    /// Role in the agent's identity (default: staff).
    #[arg(long)]
    pub role: Option<String>,
    /// Whom the agent reports to (default: self for a chief, else (unset)).
    #[arg(long)]
    pub reports_to: Option<String>,
    /// Workspace slug in the agent's identity (default: default).
    #[arg(long)]
    pub workspace_slug: Option<String>,
    /// Directory claude runs in for this agent (created if missing, never
    /// removed).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

#[derive(Debug, Args)]
pub struct UnregisterArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The agent's id.
    #[arg(long, value_name = "ID")]
    pub agent_id: String,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_flag: Option<&Path>, cmd: &AgentCommand) -> u8 {
    match cmd {
        AgentCommand::Register(a) => register(config_flag, a),
        AgentCommand::Unregister(a) => unregister(config_flag, a),
        AgentCommand::List(a) => list(config_flag, a),
    }
}

/// Profile, home, agent id and the open file; the exit code on failure.
fn prepare(
    config_flag: Option<&Path>,
    profile: &ProfileArg,
    agent_id: &str,
) -> Result<(ProfileName, Home, AgentId, ConfigFile), u8> {
    let (profile, home) = super::status::profile_and_home(profile)?;
    let id = AgentId::parse(agent_id).map_err(|e| {
        eprintln!("Error: --agent-id: {e}");
        2u8
    })?;
    let file = edit::open_or_fail(config_flag, &home)?;
    edit::require_profile(&file, &home, &profile)?;
    Ok((profile, home, id, file))
}

fn register(config_flag: Option<&Path>, args: &RegisterArgs) -> u8 {
    let (profile, home, id, mut file) = match prepare(config_flag, &args.profile, &args.agent_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let workdir = args.workdir.as_ref().map(|w| {
        let abs = if w.is_absolute() {
            w.clone()
        } else {
            std::env::current_dir()
                .map(|d| d.join(w))
                .unwrap_or_else(|_| w.clone())
        };
        display_path(&abs, &home.home)
    });
    let table = match file.table(&["profiles", profile.as_str(), "agents", id.as_str()]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let fields = [
        ("name", args.name.clone()),
        ("role", args.role.clone()),
        ("reports_to", args.reports_to.clone()),
        ("workspace_slug", args.workspace_slug.clone()),
        ("workdir", workdir),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            set(table, key, v);
        }
    }
    if args.chief {
        set(table, "chief", true);
    }
    let outcome = edit::commit(&file, &home, &profile, args.dry_run.dry_run);
    if let Outcome::Applied(0) = outcome {
        let dir = home.profile(&profile).agent_dir(&id);
        println!(
            "✓ Registered {id} at {}{}",
            display_path(&dir, &home.home),
            profile_note(&profile)
        );
    }
    outcome.code()
}

fn profile_note(p: &ProfileName) -> String {
    if p.is_default() {
        String::new()
    } else {
        format!(" (profile='{p}')")
    }
}

fn unregister(config_flag: Option<&Path>, args: &UnregisterArgs) -> u8 {
    let (profile, home, id, mut file) = match prepare(config_flag, &args.profile, &args.agent_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if !file.remove_table(&["profiles", profile.as_str(), "agents", id.as_str()]) {
        let assigned =
            crate::workspace::assigned::read(&home.profile(&profile).assigned_agents_file());
        let shown = display_path(&file.path, &home.home);
        if assigned.contains(id.as_str()) {
            eprintln!(
                "Error: agent {id} was assigned to this host by the server and is not declared in {shown}: it belongs to the server, so it is not unregistered here. Unassign it in cloudagent (the daemon then archives its workspace), or declare it in the file to manage it yourself."
            );
        } else {
            eprintln!("Error: agent {id} is not declared in profile '{profile}' of {shown}.");
        }
        return 1;
    }
    let outcome = edit::commit(&file, &home, &profile, args.dry_run.dry_run);
    if let Outcome::Applied(0) = outcome {
        println!("✓ Archived {id}{}", profile_note(&profile));
    }
    outcome.code()
}

/// One row of `agent list`.
struct Row {
    id: String,
    name: String,
    chief: bool,
    source: &'static str,
    workspace: PathBuf,
}

fn list(config_flag: Option<&Path>, args: &ListArgs) -> u8 {
    let (profile, home) = match super::status::profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let path = config::resolve_path(config_flag, &home);
    let desired: Option<Desired> = if path.exists() {
        match config::load(&path, &home) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("Error: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    let rows = rows(desired.as_ref(), &home, &profile);
    if args.json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"agent_id": r.id, "name": r.name, "chief": r.chief, "source": r.source,
                       "workspace": r.workspace.display().to_string(), "workspace_exists": r.workspace.is_dir()})
            })
            .collect();
        println!("{}", json!({"profile": profile.as_str(), "agents": items}));
        return 0;
    }
    if rows.is_empty() {
        let f = super::profile::flag(&profile);
        println!(
            "No agents in profile '{profile}'. Add one with `cloudagent-daemon agent register{f} --agent-id ID`."
        );
        return 0;
    }
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            if r.chief {
                format!("{} (chief)", r.name)
            } else {
                r.name.clone()
            }
        })
        .collect();
    let w = rows
        .iter()
        .map(|r| r.id.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    let n = names
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    println!("Agents of profile '{profile}':");
    println!(
        "  {:w$}  {:n$}  {:8}  WORKSPACE",
        "AGENT ID", "NAME", "SOURCE"
    );
    for (r, name) in rows.iter().zip(names) {
        let missing = if r.workspace.is_dir() {
            ""
        } else {
            " (not created yet)"
        };
        println!(
            "  {:w$}  {:n$}  {:8}  {}{missing}",
            r.id,
            name,
            r.source,
            display_path(&r.workspace, &home.home)
        );
    }
    0
}

/// Declared agents (source `declared`), then the server's (source
/// `server`) that the file does not declare, each sorted by id.
fn rows(desired: Option<&Desired>, home: &Home, profile: &ProfileName) -> Vec<Row> {
    let paths = home.profile(profile);
    let mut out: BTreeMap<(u8, String), Row> = BTreeMap::new();
    if let Some(p) = desired.and_then(|d| d.profile(profile)) {
        for a in p.agents.values() {
            out.insert(
                (0, a.id.to_string()),
                Row {
                    id: a.id.to_string(),
                    name: a.name.clone(),
                    chief: a.chief,
                    source: "declared",
                    workspace: paths.agent_dir(&a.id),
                },
            );
        }
    }
    for id in crate::workspace::assigned::read(&paths.assigned_agents_file()) {
        if out.contains_key(&(0, id.clone())) {
            continue;
        }
        let dir = paths.agents_root.join(&id);
        let identity = Identity::read(&AgentLayout { dir: dir.clone() }.identity())
            .unwrap_or_else(|| Identity::default_staff(&id));
        out.insert(
            (1, id.clone()),
            Row {
                id,
                name: identity.agent_name,
                chief: identity.is_chief,
                source: "server",
                workspace: dir,
            },
        );
    }
    out.into_values().collect()
}
