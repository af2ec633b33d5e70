//! `plan = diff(target, observed)`: a pure function. It decides every
//! change, renders file diffs, and says how each change moves the
//! inventory, so apply only executes.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::file_diff::FileDiff;
use super::inventory::{Inventory, ServiceRecord};
use super::model::{DirMode, Display, Entry, Kind, ResourceId, Seen, UnitTarget, Want};
use super::observe::Observed;
use super::target::{AgentTarget, ProfileTarget, ServiceWant, Target};
use crate::paths::{ProfileName, ProfilePaths};
use crate::service;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Remove,
    Replace,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Remove => "-",
            Action::Replace => "-/+",
        }
    }
}

/// One step of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    MkDir {
        path: PathBuf,
        mode: u32,
    },
    Chmod {
        path: PathBuf,
        from: u32,
        to: u32,
    },
    Write {
        path: PathBuf,
        mode: u32,
        create: bool,
        /// Written once, then owned by someone else (MEMORY.md).
        create_only: bool,
        /// Unified diff, secrets masked.
        diff: FileDiff,
        /// Only secret values differ, so the diff shows nothing.
        sensitive_change: bool,
        #[serde(skip)]
        content: String,
    },
    RemoveFile {
        path: PathBuf,
    },
    /// Move an agent's workspace aside (timestamp chosen at apply time).
    Archive {
        path: PathBuf,
        archive_dir: PathBuf,
        agent: String,
    },
    Activate {
        platform: &'static str,
        unit: String,
        path: PathBuf,
    },
    /// A unit another program wrote is taken over (the ops that follow
    /// replace it); nothing to do by itself.
    Adopt {
        path: PathBuf,
        from: String,
    },
    Deactivate {
        platform: &'static str,
        unit: String,
        path: PathBuf,
    },
}

/// How a successful change moves its profile's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    ForgetAgent(String),
    ForgetFile(PathBuf),
    Service(Option<ServiceRecord>),
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub profile: String,
    pub name: String,
    pub action: Action,
    pub ops: Vec<Op>,
    #[serde(skip)]
    pub id: ResourceId,
    #[serde(skip)]
    pub effects: Vec<Effect>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub resource: String,
    pub message: String,
}

/// The inventory a profile will have once every change succeeds; apply
/// starts from `base` and applies the effects of the changes that did.
#[derive(Debug, Clone)]
pub struct InventoryPlan {
    pub path: PathBuf,
    pub old: Option<Inventory>,
    pub base: Inventory,
    /// The file holds entries that were ignored: write it even when the
    /// rest is unchanged, so they go.
    pub rewrite: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub notes: Vec<Message>,
    /// Worth the user's attention but not in the way (an inventory entry
    /// ignored as not ours).
    pub warnings: Vec<Message>,
    pub errors: Vec<Message>,
    /// Agents the server assigned to this host that the file does not
    /// declare: shown, never changed (they are the server's).
    pub server_agents: Vec<ServerAgent>,
    #[serde(skip)]
    pub inventories: BTreeMap<ProfileName, InventoryPlan>,
}

/// An agent the server manages on this machine, with the TOML that would
/// adopt it into the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerAgent {
    pub profile: String,
    pub agent_id: String,
    pub name: Option<String>,
    pub chief: bool,
    pub adopt: String,
}

/// The server's agents of `profile` that `declared` lacks.
fn server_agents(
    profile: &ProfileName,
    observed: &super::observe::ObservedProfile,
    declared: &BTreeMap<String, super::target::AgentTarget>,
) -> Vec<ServerAgent> {
    observed
        .assigned
        .iter()
        .filter(|id| !declared.contains_key(*id))
        .map(|id| {
            let identity = observed.assigned_identities.get(id);
            let name = identity.map(|i| i.agent_name.clone());
            let chief = identity.is_some_and(|i| i.is_chief);
            ServerAgent {
                profile: profile.to_string(),
                agent_id: id.clone(),
                adopt: adopt_snippet(profile, id, name.as_deref(), chief),
                name,
                chief,
            }
        })
        .collect()
}

fn adopt_snippet(profile: &ProfileName, id: &str, name: Option<&str>, chief: bool) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let key = if id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        id.to_string()
    } else {
        quote(id)
    };
    let mut out = format!("[profiles.{profile}.agents.{key}]\n");
    if let Some(n) = name {
        out.push_str(&format!("name = {}\n", quote(n)));
    }
    if chief {
        out.push_str("chief = true\n");
    }
    out
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Remove => s.remove += 1,
                Action::Replace => {
                    s.add += 1;
                    s.remove += 1;
                }
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
}

pub fn plan(target: &Target, observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    for (name, op) in &observed.profiles {
        plan.warnings.extend(op.rejected.iter().map(|w| Message {
            resource: ResourceId::profile(name).to_string(),
            message: w.clone(),
        }));
        let rewrite = !op.rejected.is_empty();
        let old = match &op.inventory {
            Ok(inv) => inv.clone(),
            Err(e) => {
                plan.errors.push(Message {
                    resource: ResourceId::profile(name).to_string(),
                    message: e.clone(),
                });
                if let Some(pt) = target.profiles.get(name) {
                    // Without a readable inventory nothing is pruned, but the
                    // declared resources can still be brought in line.
                    let mut ignored = Inventory::new(&target.config);
                    plan_profile(&mut plan, observed, pt, None, &mut ignored);
                }
                continue;
            }
        };
        if let Some(pt) = target.profiles.get(name) {
            plan.server_agents
                .extend(server_agents(name, op, &pt.agents));
        }
        match target.profiles.get(name) {
            Some(pt) => {
                let mut base = Inventory::new(&target.config);
                if let Some(inv) = &old
                    && inv.config != target.config
                {
                    plan.notes.push(Message {
                        resource: ResourceId::profile(name).to_string(),
                        message: format!(
                            "was managed by {}; {} manages it from now on",
                            inv.config.display(),
                            target.config.display()
                        ),
                    });
                }
                plan_profile(&mut plan, observed, pt, old.as_ref(), &mut base);
                plan.inventories.insert(
                    name.clone(),
                    InventoryPlan {
                        path: op.paths.inventory_file(),
                        old,
                        base,
                        rewrite,
                    },
                );
            }
            None => {
                let Some(inv) = old else { continue };
                if inv.config != target.config {
                    if !inv.is_empty() {
                        plan.notes.push(Message {
                            resource: ResourceId::profile(name).to_string(),
                            message: format!(
                                "not in this file; it is managed by {}, so it is left alone",
                                inv.config.display()
                            ),
                        });
                    }
                    continue;
                }
                let mut base = Inventory::new(&target.config);
                prune_profile(&mut plan, observed, name, &op.paths, &inv, &mut base);
                plan.inventories.insert(
                    name.clone(),
                    InventoryPlan {
                        path: op.paths.inventory_file(),
                        old: Some(inv),
                        base,
                        rewrite,
                    },
                );
            }
        }
    }
    plan
}

fn plan_profile(
    plan: &mut Plan,
    observed: &Observed,
    pt: &ProfileTarget,
    old: Option<&Inventory>,
    base: &mut Inventory,
) {
    // The profile's own directories.
    let id = ResourceId::profile(&pt.name);
    let created = matches!(observed.seen(&pt.paths.base), Seen::Missing);
    match entries_ops(&pt.dirs, observed) {
        Ok(ops) => push_change(plan, id, created, ops, vec![]),
        Err(e) => plan.errors.push(Message {
            resource: id.to_string(),
            message: e,
        }),
    }

    for (agent, at) in &pt.agents {
        base.agents.insert(agent.clone());
        plan_agent(plan, observed, &pt.name, agent, at, old, base);
    }
    plan_undeclared_mcp(plan, observed, pt);

    // What this file no longer declares.
    if let Some(inv) = old {
        for agent in inv.agents.iter().filter(|a| !pt.agents.contains_key(*a)) {
            archive_agent(plan, observed, &pt.name, &pt.paths, agent, base);
        }
        // A set, by bytes: a list made this quadratic in the agents.
        let declared_files: HashSet<&OsStr> = pt
            .agents
            .values()
            .map(|a| a.cwd_override.as_os_str())
            .collect();
        for f in inv
            .files
            .iter()
            .filter(|f| !declared_files.contains(f.as_os_str()))
        {
            prune_file(plan, observed, &pt.name, &pt.paths, inv, f, base);
        }
    }
    plan_service(
        plan,
        observed,
        &pt.name,
        &pt.service,
        old.and_then(|i| i.service.as_ref()),
        base,
    );
}

/// Workspaces the file does not declare keep their data and place; only
/// their MCP config is brought in line, so claude starts this binary by
/// absolute path (the original's names a bare `cloudagent-daemon`, which
/// may resolve to the old daemon on claude's PATH). Not recorded in the
/// inventory: apply never prunes them.
fn plan_undeclared_mcp(plan: &mut Plan, observed: &Observed, pt: &ProfileTarget) {
    let Some(op) = observed.profiles.get(&pt.name) else {
        return;
    };
    for id in &op.undeclared {
        let entry = super::target::undeclared_mcp_entry(pt, id);
        if matches!(observed.seen(&entry.path), Seen::Missing) {
            // Not ours to create: the daemon writes one when it runs the agent.
            continue;
        }
        let rid = ResourceId::agent(&pt.name, id.as_str());
        match entries_ops(std::slice::from_ref(&entry), observed) {
            Ok(ops) => push_change(plan, rid, false, ops, vec![]),
            Err(e) => plan.errors.push(Message {
                resource: rid.to_string(),
                message: e,
            }),
        }
    }
}

fn prune_profile(
    plan: &mut Plan,
    observed: &Observed,
    name: &ProfileName,
    paths: &ProfilePaths,
    inv: &Inventory,
    base: &mut Inventory,
) {
    for agent in &inv.agents {
        archive_agent(plan, observed, name, paths, agent, base);
    }
    for f in &inv.files {
        prune_file(plan, observed, name, paths, inv, f, base);
    }
    plan_service(
        plan,
        observed,
        name,
        &ServiceWant::None,
        inv.service.as_ref(),
        base,
    );
}

fn push_change(plan: &mut Plan, id: ResourceId, created: bool, ops: Vec<Op>, effects: Vec<Effect>) {
    if ops.is_empty() {
        return;
    }
    let action = if created {
        Action::Create
    } else {
        Action::Update
    };
    push(plan, id, action, ops, effects);
}

fn push(plan: &mut Plan, id: ResourceId, action: Action, ops: Vec<Op>, effects: Vec<Effect>) {
    plan.changes.push(Change {
        kind: id.kind,
        profile: id.profile.to_string(),
        name: id.name.clone(),
        action,
        ops,
        id,
        effects,
    });
}

fn plan_agent(
    plan: &mut Plan,
    observed: &Observed,
    profile: &ProfileName,
    agent: &str,
    at: &AgentTarget,
    old: Option<&Inventory>,
    base: &mut Inventory,
) {
    let id = ResourceId::agent(profile, agent);
    let created = matches!(observed.seen(&at.dir), Seen::Missing);
    let mut ops = match entries_ops(&at.entries, observed) {
        Ok(ops) => ops,
        Err(e) => {
            plan.errors.push(Message {
                resource: id.to_string(),
                message: e,
            });
            return;
        }
    };
    let mut effects = vec![];
    if at.wants_cwd_override {
        base.files.insert(at.cwd_override.clone());
    } else if old.is_some_and(|inv| inv.files.contains(&at.cwd_override))
        && let Seen::File { .. } = observed.seen(&at.cwd_override)
    {
        // `workdir` was removed: drop the override file apply wrote.
        base.files.insert(at.cwd_override.clone());
        ops.push(Op::RemoveFile {
            path: at.cwd_override.clone(),
        });
        effects.push(Effect::ForgetFile(at.cwd_override.clone()));
    }
    push_change(plan, id, created, ops, effects);
}

fn archive_agent(
    plan: &mut Plan,
    observed: &Observed,
    profile: &ProfileName,
    paths: &ProfilePaths,
    agent: &str,
    base: &mut Inventory,
) {
    let id = ResourceId::agent(profile, agent);
    let dir = paths.agents_root.join(agent);
    if observed
        .profiles
        .get(profile)
        .is_some_and(|p| p.assigned.contains(agent))
    {
        // The backend binds it to this host: the server's, not the file's.
        plan.notes.push(Message {
            resource: id.to_string(),
            message:
                "no longer declared, but the server assigns it to this host; its workspace stays"
                    .to_string(),
        });
        return;
    }
    match observed.seen(&dir) {
        Seen::Dir { .. } => {
            base.agents.insert(agent.to_string());
            push(
                plan,
                id,
                Action::Remove,
                vec![Op::Archive {
                    path: dir,
                    archive_dir: paths.archive_dir(),
                    agent: agent.to_string(),
                }],
                vec![Effect::ForgetAgent(agent.to_string())],
            );
        }
        Seen::Missing => plan.notes.push(Message {
            resource: id.to_string(),
            message: "no longer declared and its workspace is already gone; forgetting it"
                .to_string(),
        }),
        other => {
            base.agents.insert(agent.to_string());
            plan.errors.push(Message {
                resource: id.to_string(),
                message: format!(
                    "{} is {}, not a workspace directory; not archiving it",
                    dir.display(),
                    other.describe()
                ),
            });
        }
    }
}

/// A recorded optional file whose agent is no longer declared: it moves
/// with an archived workspace; otherwise it is removed.
fn prune_file(
    plan: &mut Plan,
    observed: &Observed,
    profile: &ProfileName,
    paths: &ProfilePaths,
    inv: &Inventory,
    f: &Path,
    base: &mut Inventory,
) {
    let in_archived_agent = inv
        .agents
        .iter()
        .any(|a| f.starts_with(paths.agents_root.join(a)));
    if in_archived_agent {
        return;
    }
    if let Seen::File { .. } = observed.seen(f) {
        base.files.insert(f.to_path_buf());
        push(
            plan,
            ResourceId::profile(profile),
            Action::Update,
            vec![Op::RemoveFile {
                path: f.to_path_buf(),
            }],
            vec![Effect::ForgetFile(f.to_path_buf())],
        );
    }
}

pub fn apply_effect(inv: &mut Inventory, effect: &Effect) {
    match effect {
        Effect::ForgetAgent(a) => {
            inv.agents.remove(a);
        }
        Effect::ForgetFile(f) => {
            inv.files.remove(f);
        }
        Effect::Service(s) => inv.service = s.clone(),
    }
}

fn record(u: &UnitTarget, loaded: bool) -> ServiceRecord {
    ServiceRecord {
        platform: u.platform.as_str().to_string(),
        unit: u.name.clone(),
        path: u.path.clone(),
        loaded,
        adopted_from: None,
    }
}

fn plan_service(
    plan: &mut Plan,
    observed: &Observed,
    profile: &ProfileName,
    want: &ServiceWant,
    old: Option<&ServiceRecord>,
    base: &mut Inventory,
) {
    let id = ResourceId::service(profile);
    base.service = old.cloned();
    let unit = match want {
        ServiceWant::Unmanaged => return,
        ServiceWant::Error(e) => {
            plan.errors.push(Message {
                resource: id.to_string(),
                message: e.clone(),
            });
            return;
        }
        ServiceWant::None => {
            if let Some(old) = old {
                remove_unit(plan, observed, id, old, base);
            }
            return;
        }
        ServiceWant::Unit(u) => u,
    };
    let mut ops = Vec::new();
    let mut action = Action::Create;
    if let Some(old) = old.filter(|o| o.path != unit.path) {
        // The unit moved (other platform or config directory): replace it.
        if let Seen::File { .. } = observed.seen(&old.path) {
            ops.push(deactivate_op(old));
            ops.push(Op::RemoveFile {
                path: old.path.clone(),
            });
            action = Action::Replace;
        }
    }
    let ours = old.is_some_and(|o| o.path == unit.path);
    match observed.seen(&unit.path) {
        Seen::Missing => {
            ops.push(write_op(
                &unit.path,
                None,
                &unit.content,
                unit.mode,
                false,
                Display::Unit(unit.platform),
            ));
            ops.push(activate_op(unit));
        }
        Seen::Symlink { target, .. } => {
            plan.notes.push(Message {
                resource: id.to_string(),
                message: format!(
                    "{} is managed elsewhere (a symlink to {}); leaving it alone",
                    unit.path.display(),
                    target.display()
                ),
            });
            if ours {
                base.service = None;
            }
            return;
        }
        Seen::File { mode, content } => {
            let same = content.as_deref() == Some(unit.content.as_bytes());
            if !ours {
                if same {
                    // Exactly what we would write: adopt it.
                    base.service = Some(record(unit, true));
                } else if service::written_by_original(
                    &String::from_utf8_lossy(content.as_deref().unwrap_or_default()),
                    unit.platform,
                ) {
                    adopt_original(plan, id, unit, content.as_deref().unwrap_or_default());
                } else {
                    plan.notes.push(Message {
                        resource: id.to_string(),
                        message: format!(
                            "{} exists but was not written by cloudagent-daemon apply, so it is managed elsewhere and left alone (remove it, e.g. with the old daemon's uninstall-service, to let apply manage it)",
                            unit.path.display()
                        ),
                    });
                }
                return;
            }
            action = if action == Action::Replace {
                Action::Replace
            } else {
                Action::Update
            };
            let old_text = content.as_deref().map(String::from_utf8_lossy);
            if !same {
                ops.push(write_op(
                    &unit.path,
                    old_text.as_deref(),
                    &unit.content,
                    unit.mode,
                    false,
                    Display::Unit(unit.platform),
                ));
                ops.push(activate_op(unit));
            } else {
                if *mode != unit.mode {
                    ops.push(Op::Chmod {
                        path: unit.path.clone(),
                        from: *mode,
                        to: unit.mode,
                    });
                }
                if old.is_some_and(|o| !o.loaded) {
                    ops.push(activate_op(unit));
                }
            }
        }
        other => {
            plan.errors.push(Message {
                resource: id.to_string(),
                message: format!(
                    "{} is {}, not a unit file; move it away",
                    unit.path.display(),
                    other.describe()
                ),
            });
            return;
        }
    }
    if ops.is_empty() {
        return;
    }
    let activates = ops.iter().any(|o| matches!(o, Op::Activate { .. }));
    let loaded_already = old.is_some_and(|o| o.loaded && o.path == unit.path);
    let mut r = record(unit, activates || loaded_already);
    r.adopted_from = old
        .filter(|o| o.path == unit.path)
        .and_then(|o| o.adopted_from.clone());
    let effect = Effect::Service(Some(r));
    push(plan, id, action, ops, vec![effect]);
}

/// Replace a unit the original daemon wrote with ours, and record it as
/// ours (adoption): loading ours restarts the service on this daemon. The
/// old text is shown with its key masked.
fn adopt_original(plan: &mut Plan, id: ResourceId, unit: &UnitTarget, old: &[u8]) {
    let old_text = String::from_utf8_lossy(old);
    plan.notes.push(Message {
        resource: id.to_string(),
        message: format!(
            "adopting {}: it was written by the original cloudagent-daemon's install-service; apply replaces it with this daemon's unit and manages it from now on (a key it held inline is not carried over: the key comes from the config file)",
            unit.path.display()
        ),
    });
    let ops = vec![
        Op::Adopt {
            path: unit.path.clone(),
            from: "the original cloudagent-daemon".into(),
        },
        write_op(
            &unit.path,
            Some(&old_text),
            &unit.content,
            unit.mode,
            false,
            Display::Unit(unit.platform),
        ),
        activate_op(unit),
    ];
    let mut r = record(unit, true);
    r.adopted_from = Some("the original cloudagent-daemon's install-service".into());
    push(
        plan,
        id,
        Action::Update,
        ops,
        vec![Effect::Service(Some(r))],
    );
}

fn remove_unit(
    plan: &mut Plan,
    observed: &Observed,
    id: ResourceId,
    old: &ServiceRecord,
    base: &mut Inventory,
) {
    match observed.seen(&old.path) {
        Seen::File { .. } => push(
            plan,
            id,
            Action::Remove,
            vec![
                deactivate_op(old),
                Op::RemoveFile {
                    path: old.path.clone(),
                },
            ],
            vec![Effect::Service(None)],
        ),
        Seen::Missing => base.service = None,
        Seen::Symlink { target, .. } => {
            plan.notes.push(Message {
                resource: id.to_string(),
                message: format!(
                    "{} is now managed elsewhere (a symlink to {}); leaving it alone",
                    old.path.display(),
                    target.display()
                ),
            });
            base.service = None;
        }
        other => plan.errors.push(Message {
            resource: id.to_string(),
            message: format!(
                "{} is {}, not a unit file; not removing it",
                old.path.display(),
                other.describe()
            ),
        }),
    }
}

fn activate_op(u: &UnitTarget) -> Op {
    Op::Activate {
        platform: u.platform.as_str(),
        unit: u.name.clone(),
        path: u.path.clone(),
    }
}

fn deactivate_op(r: &ServiceRecord) -> Op {
    Op::Deactivate {
        platform: r.platform().as_str(),
        unit: r.unit.clone(),
        path: r.path.clone(),
    }
}

/// Operations that bring a list of entries in line, in order.
pub(crate) fn entries_ops(entries: &[Entry], observed: &Observed) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for e in entries {
        let seen = observed.seen(&e.path);
        match (&e.want, seen) {
            (Want::Dir { mode }, Seen::Missing) => ops.push(Op::MkDir {
                path: e.path.clone(),
                mode: mode.bits(),
            }),
            (
                Want::Dir {
                    mode: DirMode::Exact(want),
                },
                Seen::Dir { mode },
            ) if want != mode => ops.push(Op::Chmod {
                path: e.path.clone(),
                from: *mode,
                to: *want,
            }),
            (Want::Dir { .. }, Seen::Dir { .. })
            | (Want::Dir { .. }, Seen::Symlink { to_dir: true, .. }) => {}
            (Want::Dir { .. }, other) => {
                return Err(format!(
                    "{} should be a directory but is {}; move it away and run apply again",
                    e.path.display(),
                    other.describe()
                ));
            }
            (
                Want::File {
                    content,
                    mode,
                    create_only,
                    display,
                },
                Seen::Missing,
            ) => ops.push(write_op(
                &e.path,
                None,
                content,
                *mode,
                *create_only,
                *display,
            )),
            // Written once, then the agent's: only its mode is ours.
            (
                Want::File {
                    create_only: true,
                    mode,
                    ..
                },
                Seen::File {
                    mode: seen_mode, ..
                },
            ) => {
                if seen_mode != mode {
                    ops.push(Op::Chmod {
                        path: e.path.clone(),
                        from: *seen_mode,
                        to: *mode,
                    });
                }
            }
            (
                Want::File {
                    content,
                    mode,
                    display,
                    ..
                },
                Seen::File {
                    mode: seen_mode,
                    content: seen,
                },
            ) => {
                if seen.as_deref() != Some(content.as_bytes()) {
                    let old = seen.as_deref().map(String::from_utf8_lossy);
                    ops.push(write_op(
                        &e.path,
                        Some(old.as_deref().unwrap_or("")),
                        content,
                        *mode,
                        false,
                        *display,
                    ));
                } else if seen_mode != mode {
                    ops.push(Op::Chmod {
                        path: e.path.clone(),
                        from: *seen_mode,
                        to: *mode,
                    });
                }
            }
            (Want::File { .. }, other) => {
                return Err(format!(
                    "{} should be a file but is {}; move it away and run apply again",
                    e.path.display(),
                    other.describe()
                ));
            }
        }
    }
    Ok(ops)
}

fn write_op(
    path: &Path,
    old: Option<&str>,
    new: &str,
    mode: u32,
    create_only: bool,
    display: Display,
) -> Op {
    let shown = |s: &str| match display {
        Display::Plain => s.to_string(),
        Display::Unit(p) => service::redact(s, p),
    };
    let old_shown = shown(old.unwrap_or(""));
    let new_shown = shown(new);
    let sensitive_change = old_shown == new_shown && old.unwrap_or("") != new;
    let diff = FileDiff::new(old_shown, new_shown);
    Op::Write {
        path: path.to_path_buf(),
        mode,
        create: old.is_none(),
        create_only,
        diff,
        sensitive_change,
        content: new.to_string(),
    }
}
