//! From `Desired` to the concrete paths, contents and modes a machine should
//! have. No IO except reading the environment for an `api_key_env` that a
//! service unit must embed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::{DirMode, Display, Entry, UnitTarget, Want};
use crate::config::{Desired, Profile, SecretRef, WorkspaceAccess};
use crate::paths::{AgentId, Home, ProfileName, ProfilePaths};
use crate::service::{Platform, UnitSpec, service_path};
use crate::workspace::{self, AgentLayout, Identity};

/// Machine facts the target depends on.
#[derive(Debug, Clone)]
pub struct Context {
    pub home: Home,
    /// Absolute path of this binary: the MCP bridge claude starts, and the
    /// program a service unit runs.
    pub exe: PathBuf,
    pub platform: Platform,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub config: PathBuf,
    pub profiles: BTreeMap<ProfileName, ProfileTarget>,
}

#[derive(Debug, Clone)]
pub struct ProfileTarget {
    pub name: ProfileName,
    pub paths: ProfilePaths,
    /// The profile's own directories.
    pub dirs: Vec<Entry>,
    pub agents: BTreeMap<String, AgentTarget>,
    pub service: ServiceWant,
    /// The binary every workspace's MCP config starts (this one).
    pub bridge_exe: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AgentTarget {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
    /// The cwd override file, when `workdir` is set (pruned when unset).
    pub cwd_override: PathBuf,
    pub wants_cwd_override: bool,
}

#[derive(Debug, Clone)]
pub enum ServiceWant {
    /// Not this run's business (the daemon reconciling its own profile):
    /// whatever is there stays, recorded as it was.
    Unmanaged,
    None,
    Unit(UnitTarget),
    /// The unit cannot be rendered (e.g. its key is missing); an existing
    /// unit is left as it is.
    Error(String),
}

/// What a reconciliation covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Everything the file declares, and pruning of what it no longer does
    /// (`plan`, `apply`).
    All,
    /// One profile's directories and agents, never its service unit (a
    /// running daemon reconciling itself).
    Local(&'a ProfileName),
    /// One profile with its service unit, other profiles untouched: what
    /// a command that edited this profile applies, and what the running
    /// daemon compares (never applies) to show unit drift.
    Profile(&'a ProfileName),
}

pub fn build(desired: &Desired, ctx: &Context) -> Target {
    build_scoped(desired, ctx, Scope::All)
}

pub fn build_scoped(desired: &Desired, ctx: &Context, scope: Scope) -> Target {
    let profiles = desired
        .profiles
        .values()
        .filter(|p| match scope {
            Scope::All => true,
            Scope::Local(name) | Scope::Profile(name) => &p.name == name,
        })
        .map(|p| (p.name.clone(), profile_target(desired, p, ctx, scope)))
        .collect();
    Target {
        config: desired.source.clone(),
        profiles,
    }
}

fn dir(path: PathBuf, mode: u32) -> Entry {
    Entry {
        path,
        want: Want::Dir {
            mode: DirMode::Exact(mode),
        },
    }
}

fn file(path: PathBuf, content: String, mode: u32) -> Entry {
    Entry {
        path,
        want: Want::File {
            content,
            mode,
            create_only: false,
            display: Display::Plain,
        },
    }
}

/// One agent's workspace, as `agent_entries` lays it out.
pub struct AgentSpec<'a> {
    pub layout: &'a AgentLayout,
    pub id: &'a AgentId,
    pub identity: &'a Identity,
    /// Where claude runs.
    pub cwd: &'a Path,
    /// `cwd` is ours (the agent's `workspace/`, or `<workspace_root>/<id>/
    /// workspace`) and keeps the access mode; a `workdir` the user declared
    /// or the server chose is only created, never chmod'ed.
    pub cwd_is_ours: bool,
    /// Recorded in the override file (a declared or server-chosen workdir).
    pub cwd_override: Option<&'a Path>,
    pub exe: &'a Path,
    pub profile: &'a ProfileName,
    pub access: WorkspaceAccess,
}

/// Everything an agent's workspace consists of (PROTOCOL §6.2). Used for
/// declared agents here and, by the daemon, for agents the server assigns.
/// Who else may read it follows the profile's `workspace_access` (README,
/// "The config file"); `.meta/` is always private.
pub fn agent_entries(spec: &AgentSpec) -> Vec<Entry> {
    let layout = spec.layout;
    let dir_mode = spec.access.dir_mode();
    let mut entries = vec![
        dir(layout.dir.clone(), dir_mode),
        dir(layout.notes(), dir_mode),
        dir(layout.claude(), dir_mode),
        dir(layout.meta(), 0o700),
        Entry {
            path: layout.memory(),
            want: Want::File {
                content: workspace::memory_md(spec.identity),
                mode: spec.access.file_mode(),
                create_only: true,
                display: Display::Plain,
            },
        },
        file(layout.identity(), spec.identity.to_json(), 0o600),
        file(
            layout.mcp_config(),
            workspace::mcp_config_json(spec.exe, layout, spec.id, spec.profile),
            0o644,
        ),
    ];
    if let Some(w) = spec.cwd_override {
        entries.push(file(layout.cwd_override(), w.display().to_string(), 0o644));
    }
    let mode = if spec.cwd_is_ours {
        DirMode::Exact(dir_mode)
    } else {
        DirMode::OnCreate(dir_mode)
    };
    entries.push(Entry {
        path: spec.cwd.to_path_buf(),
        want: Want::Dir { mode },
    });
    entries
}

fn profile_target(
    desired: &Desired,
    profile: &Profile,
    ctx: &Context,
    scope: Scope,
) -> ProfileTarget {
    let paths = ctx.home.profile(&profile.name);
    let dirs = vec![dir(paths.base.clone(), 0o700), dir(paths.logs_dir(), 0o700)];
    let agents = profile
        .agents
        .values()
        .map(|agent| {
            let layout = AgentLayout::new(&paths, &agent.id);
            let cwd = profile.agent_cwd(agent, &layout.dir);
            let entries = agent_entries(&AgentSpec {
                layout: &layout,
                id: &agent.id,
                identity: &Identity::from_agent(agent),
                cwd: &cwd,
                cwd_is_ours: agent.workdir.is_none(),
                cwd_override: agent.workdir.as_deref(),
                exe: &ctx.exe,
                profile: &profile.name,
                access: profile.workspace_access,
            });
            (
                agent.id.to_string(),
                AgentTarget {
                    dir: layout.dir.clone(),
                    entries,
                    cwd_override: layout.cwd_override(),
                    wants_cwd_override: agent.workdir.is_some(),
                },
            )
        })
        .collect();
    let service = match &profile.service {
        _ if matches!(scope, Scope::Local(_)) => ServiceWant::Unmanaged,
        None => ServiceWant::None,
        Some(settings) => {
            let secret_env = match &profile.api_key {
                SecretRef::Env(var) => match profile.api_key.resolve() {
                    Ok(value) => Some((var.clone(), value)),
                    Err(e) => {
                        return ProfileTarget {
                            name: profile.name.clone(),
                            paths,
                            dirs,
                            agents,
                            service: ServiceWant::Error(format!(
                                "{e}; the service unit has to carry the key because a service does not see your shell's environment (or use api_key_file)"
                            )),
                            bridge_exe: ctx.exe.clone(),
                        };
                    }
                },
                _ => None,
            };
            let mut env = vec![(
                "PATH".to_string(),
                service_path(
                    &ctx.home,
                    &ctx.exe,
                    &desired.daemon.claude_binary,
                    ctx.platform,
                ),
            )];
            if !profile.name.is_default() {
                env.push((
                    "CLOUDAGENT_DAEMON_PROFILE".to_string(),
                    profile.name.to_string(),
                ));
            }
            let spec = UnitSpec {
                profile: profile.name.clone(),
                program: ctx.exe.clone(),
                args: vec![
                    "start".to_string(),
                    "--profile".to_string(),
                    profile.name.to_string(),
                    "--config".to_string(),
                    desired.source.display().to_string(),
                ],
                env,
                secret_env,
                restart_sec: settings.restart_sec,
                working_dir: ctx.home.home.clone(),
                log_dir: paths.logs_dir(),
            };
            ServiceWant::Unit(UnitTarget {
                platform: ctx.platform,
                name: ctx.platform.unit_name(&profile.name),
                path: ctx.platform.unit_path(&ctx.home, &profile.name),
                content: spec.render(ctx.platform),
                mode: spec.mode(),
            })
        }
    };
    ProfileTarget {
        name: profile.name.clone(),
        paths,
        dirs,
        agents,
        service,
        bridge_exe: ctx.exe.clone(),
    }
}

/// The MCP config of a workspace the file does not declare (the server
/// assigned it, or the original daemon left it): apply keeps it starting
/// this binary by absolute path, and touches nothing else of it.
pub fn undeclared_mcp_entry(pt: &ProfileTarget, id: &AgentId) -> Entry {
    let layout = AgentLayout::new(&pt.paths, id);
    file(
        layout.mcp_config(),
        workspace::mcp_config_json(&pt.bridge_exe, &layout, id, &pt.name),
        0o644,
    )
}
