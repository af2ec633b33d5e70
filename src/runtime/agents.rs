//! Workspaces of agents the server binds to this host (`assign`, or a
//! `deliver` for an agent without a workspace). Declared agents belong to
//! the config file: for them the file's identity and workdir win.

use std::path::{Path, PathBuf};

use super::settings::Settings;
use super::shared::Shared;
use crate::config::Agent;
use crate::fsutil;
use crate::paths::AgentId;
use crate::protocol::Assign;
use crate::protocol::frames::DeliverPayload;
use crate::reconcile::{
    self,
    target::{AgentSpec, agent_entries},
};
use crate::workspace::assigned;
use crate::workspace::workdir::{Refusal, WorkdirPolicy};
use crate::workspace::{AgentLayout, Identity};

/// The checks for a directory the backend (or a file the original left)
/// asks an agent to run in.
fn policy(settings: &Settings) -> WorkdirPolicy<'_> {
    WorkdirPolicy {
        home: &settings.home.home,
        own: settings.home.cloudagent_root(),
        allowed: settings.allowed_workdirs.as_deref(),
    }
}

/// The cwd claude runs in for an agent (PROTOCOL §6.3): the declared
/// `workdir`, else a checked override left in `.meta/agent_workspace_root`,
/// else the default.
pub fn cwd(shared: &Shared, settings: &Settings, id: &AgentId) -> PathBuf {
    cwd_and_owner(shared, settings, id).0
}

/// The cwd, and whether it is ours (true) or a workdir the file declares or
/// the server chose (false: never chmod'ed).
fn cwd_and_owner(shared: &Shared, settings: &Settings, id: &AgentId) -> (PathBuf, bool) {
    let layout = AgentLayout::new(&settings.paths, id);
    if let Some(agent) = settings.agents.get(id)
        && let Some(w) = &agent.workdir
    {
        return (w.clone(), false);
    }
    if let Ok(text) = std::fs::read_to_string(layout.cwd_override())
        && !text.trim().is_empty()
    {
        match policy(settings).check(&text) {
            Ok(path) => return (path, false),
            Err(why) => refuse(
                shared,
                id,
                &layout.cwd_override().display().to_string(),
                &text,
                why,
            ),
        }
    }
    (default_cwd(settings, id), true)
}

fn default_cwd(settings: &Settings, id: &AgentId) -> PathBuf {
    match &settings.workspace_root {
        Some(root) => root.join(id.as_str()).join("workspace"),
        None => AgentLayout::new(&settings.paths, id).default_cwd(),
    }
}

/// Log once and show in `status` that a directory was not used.
fn refuse(shared: &Shared, id: &AgentId, source: &str, raw: &str, why: Refusal) {
    let text = format!(
        "working directory {:?} from {source} refused: {why}; {id} runs in its default workspace",
        raw.trim()
    );
    shared.note_refusal(id, text);
}

/// Identity on disk, or the default staff identity.
fn read_identity(layout: &AgentLayout, id: &AgentId) -> Identity {
    Identity::read(&layout.identity()).unwrap_or_else(|| Identity::default_staff(id.as_str()))
}

/// Materialise a workspace for `assign`.
pub fn on_assign(shared: &Shared, settings: &Settings, a: &Assign) -> Result<(), String> {
    if let Some(agent) = settings.agents.get(&a.agent_id) {
        // Declared in the config file: apply owns its workspace.
        assigned::record(&settings.paths.assigned_agents_file(), &a.agent_id, true);
        return ensure_declared(shared, settings, agent).map(|_| ());
    }
    check_cap(shared, settings, &a.agent_id)?;
    assigned::record(&settings.paths.assigned_agents_file(), &a.agent_id, true);
    let identity = Identity {
        agent_id: a.agent_id.to_string(),
        agent_name: a.agent_name.clone(),
        is_chief: a.is_chief,
        role: a.role.clone(),
        workspace_slug: a.workspace_slug.clone(),
        reports_to: a.reports_to.clone(),
    };
    let over = match a.workspace_root.as_deref() {
        None => None,
        Some(raw) => match policy(settings).check(raw) {
            Ok(path) => {
                shared.clear_refusal(&a.agent_id);
                Some(path)
            }
            Err(why) => {
                refuse(shared, &a.agent_id, "the server's assign", raw, why);
                None
            }
        },
    };
    ensure(
        shared,
        settings,
        &a.agent_id,
        &identity,
        over.as_deref(),
        true,
    )
    .map(|_| ())
}

/// A new workspace for an agent the file does not declare counts against
/// the profile's `max_server_agents`: the backend cannot fill the disk
/// with workspaces.
fn check_cap(shared: &Shared, settings: &Settings, id: &AgentId) -> Result<(), String> {
    if AgentLayout::new(&settings.paths, id).dir.is_dir() {
        return Ok(());
    }
    let existing = server_agent_count(settings);
    if existing >= settings.max_server_agents as usize {
        let text = format!(
            "not creating a workspace for {id}: the profile already has {existing} agents the server created (max_server_agents = {}; raise it in the profile's section of the config file)",
            settings.max_server_agents
        );
        shared.note_refusal(id, text.clone());
        return Err(text);
    }
    Ok(())
}

/// Live workspaces under the agents root that the file does not declare.
fn server_agent_count(settings: &Settings) -> usize {
    let Ok(entries) = std::fs::read_dir(&settings.paths.agents_root) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| AgentId::parse(e.file_name().to_str()?).ok())
        .filter(|id| !settings.agents.contains_key(id))
        .filter(|id| {
            !AgentLayout::new(&settings.paths, id)
                .archived_marker()
                .exists()
        })
        .count()
}

pub fn on_unassign(settings: &Settings, id: &AgentId) {
    assigned::record(&settings.paths.assigned_agents_file(), id, false);
}

/// Before a wake: make sure the workspace exists (a deliver may arrive for
/// an agent the server never assigned, PROTOCOL §4.1 step 1). Returns the
/// agent's identity and claude's cwd, each worked out once.
pub fn ensure_for_wake(
    shared: &Shared,
    settings: &Settings,
    id: &AgentId,
    payload: &DeliverPayload,
) -> Result<(Identity, PathBuf), String> {
    let layout = AgentLayout::new(&settings.paths, id);
    if let Some(agent) = settings.agents.get(id) {
        return ensure_declared(shared, settings, agent);
    }
    if layout.dir.is_dir() && layout.identity().is_file() {
        // Existing workspace: only its cwd has to exist.
        let cwd = cwd(shared, settings, id);
        fsutil::create_dir_all(&cwd, settings.workspace_access.dir_mode())
            .map_err(|e| e.to_string())?;
        return Ok((read_identity(&layout, id), cwd));
    }
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    let identity = Identity {
        agent_id: id.to_string(),
        agent_name: or(&payload.agent_name, id.as_str()),
        is_chief: false,
        role: or(&payload.role, "staff"),
        workspace_slug: or(&payload.workspace_slug, "default"),
        reports_to: "(unset)".to_string(),
    };
    check_cap(shared, settings, id)?;
    let cwd = ensure(shared, settings, id, &identity, None, false)?;
    Ok((identity, cwd))
}

/// Bring a declared agent's workspace in line; its identity comes from the
/// config file.
fn ensure_declared(
    shared: &Shared,
    settings: &Settings,
    agent: &Agent,
) -> Result<(Identity, PathBuf), String> {
    let identity = Identity::from_agent(agent);
    let cwd = ensure(
        shared,
        settings,
        &agent.id,
        &identity,
        agent.workdir.as_deref(),
        false,
    )?;
    Ok((identity, cwd))
}

fn ensure(
    shared: &Shared,
    settings: &Settings,
    id: &AgentId,
    identity: &Identity,
    over: Option<&Path>,
    clear_override: bool,
) -> Result<PathBuf, String> {
    let layout = AgentLayout::new(&settings.paths, id);
    if clear_override && over.is_none() {
        // assign without workspace_root clears a previous override (§1.4).
        match std::fs::remove_file(layout.cwd_override()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
            _ => {}
        }
    }
    let (cwd, cwd_is_ours) = match over {
        Some(w) => (w.to_path_buf(), false),
        None => cwd_and_owner(shared, settings, id),
    };
    let entries = agent_entries(&AgentSpec {
        layout: &layout,
        id,
        identity,
        cwd: &cwd,
        cwd_is_ours,
        cwd_override: over,
        exe: &settings.exe,
        profile: &settings.profile,
        access: settings.workspace_access,
    });
    reconcile::converge(&entries)?;
    Ok(cwd)
}
