//! Workspaces of agents the server binds to this host (`assign`, or a
//! `deliver` for an agent without a workspace). Declared agents belong to
//! the config file: for them the file's identity and workdir win.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::settings::Settings;
use crate::config::Agent;
use crate::fsutil;
use crate::paths::AgentId;
use crate::protocol::Assign;
use crate::protocol::frames::DeliverPayload;
use crate::reconcile::{
    self,
    target::{AgentSpec, agent_entries},
};
use crate::workspace::{AgentLayout, Identity};

pub fn read_assigned(path: &Path) -> BTreeSet<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn record_assigned(settings: &Settings, id: &AgentId, assigned: bool) {
    let path = settings.paths.assigned_agents_file();
    let mut set = read_assigned(&path);
    let changed = if assigned {
        set.insert(id.to_string())
    } else {
        set.remove(id.as_str())
    };
    if changed {
        let mut text = serde_json::to_string_pretty(&set).unwrap_or_default();
        text.push('\n');
        if let Err(e) = fsutil::write_atomic(&path, text.as_bytes(), 0o600) {
            tracing::warn!("cannot record assigned agents in {}: {e}", path.display());
        }
    }
}

/// The cwd claude runs in for an agent (PROTOCOL §6.3).
pub fn cwd(settings: &Settings, id: &AgentId) -> PathBuf {
    cwd_and_owner(settings, id).0
}

/// The cwd, and whether it is ours (true) or a workdir the file declares or
/// the server chose (false: never chmod'ed).
fn cwd_and_owner(settings: &Settings, id: &AgentId) -> (PathBuf, bool) {
    let layout = AgentLayout::new(&settings.paths, id);
    if let Some(agent) = settings.agents.get(id)
        && let Some(w) = &agent.workdir
    {
        return (w.clone(), false);
    }
    if let Ok(text) = std::fs::read_to_string(layout.cwd_override()) {
        let text = text.trim();
        if !text.is_empty() {
            return (fsutil::expand_tilde(text, &settings.home.home), false);
        }
    }
    let ours = match &settings.workspace_root {
        Some(root) => root.join(id.as_str()).join("workspace"),
        None => layout.default_cwd(),
    };
    (ours, true)
}

/// Identity on disk, or the default staff identity.
fn read_identity(layout: &AgentLayout, id: &AgentId) -> Identity {
    std::fs::read(layout.identity())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| Identity::default_staff(id.as_str()))
}

/// Materialise a workspace for `assign`.
pub fn on_assign(settings: &Settings, a: &Assign) -> Result<(), String> {
    record_assigned(settings, &a.agent_id, true);
    if let Some(agent) = settings.agents.get(&a.agent_id) {
        // Declared in the config file: apply owns its workspace.
        return ensure_declared(settings, agent).map(|_| ());
    }
    let identity = Identity {
        agent_id: a.agent_id.to_string(),
        agent_name: a.agent_name.clone(),
        is_chief: a.is_chief,
        role: a.role.clone(),
        workspace_slug: a.workspace_slug.clone(),
        reports_to: a.reports_to.clone(),
    };
    let over = a
        .workspace_root
        .as_deref()
        .map(|w| fsutil::expand_tilde(w, &settings.home.home));
    ensure(settings, &a.agent_id, &identity, over.as_deref(), true).map(|_| ())
}

pub fn on_unassign(settings: &Settings, id: &AgentId) {
    record_assigned(settings, id, false);
}

/// Before a wake: make sure the workspace exists (a deliver may arrive for
/// an agent the server never assigned, PROTOCOL §4.1 step 1). Returns the
/// agent's identity and claude's cwd, each worked out once.
pub fn ensure_for_wake(
    settings: &Settings,
    id: &AgentId,
    payload: &DeliverPayload,
) -> Result<(Identity, PathBuf), String> {
    let layout = AgentLayout::new(&settings.paths, id);
    if let Some(agent) = settings.agents.get(id) {
        return ensure_declared(settings, agent);
    }
    if layout.dir.is_dir() && layout.identity().is_file() {
        // Existing workspace: only its cwd has to exist.
        let cwd = cwd(settings, id);
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
    let cwd = ensure(settings, id, &identity, None, false)?;
    Ok((identity, cwd))
}

/// Bring a declared agent's workspace in line; its identity comes from the
/// config file.
fn ensure_declared(settings: &Settings, agent: &Agent) -> Result<(Identity, PathBuf), String> {
    let identity = Identity::from_agent(agent);
    let cwd = ensure(
        settings,
        &agent.id,
        &identity,
        agent.workdir.as_deref(),
        false,
    )?;
    Ok((identity, cwd))
}

fn ensure(
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
        None => cwd_and_owner(settings, id),
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
