//! Pure tests of the diff: targets built from TOML, observations built by
//! hand, no filesystem. Snapshots cover what users read.

use std::path::{Path, PathBuf};

use super::inventory::{Inventory, ServiceRecord};
use super::model::{Seen, Want};
use super::observe::{Observed, ObservedProfile};
use super::plan::{Action, Op, Plan, plan};
use super::render;
use super::target::{Context, ServiceWant, Target, build};
use crate::config;
use crate::paths::{Home, ProfileName};
use crate::service::Platform;

const HOME: &str = "/home/u";
const CONFIG: &str = "/home/u/.config/cloudagent/cloudagent.toml";

const BASE: &str = r#"
[servers.prod]
url = "https://api.cloudagent.chat"

[profiles.default]
server = "prod"
api_key_file = "~/.config/cloudagent/prod.key"

[profiles.default.agents.agent_a]
name = "Alpha"
"#;

fn ctx() -> Context {
    Context {
        home: Home::for_tests(Path::new(HOME)),
        exe: PathBuf::from("/usr/bin/cloudagent-daemon"),
        platform: Platform::Systemd,
    }
}

fn target(toml: &str) -> Target {
    let desired = config::parse(toml, PathBuf::from(CONFIG), &ctx().home).expect("valid config");
    build(&desired, &ctx())
}

/// An observation in which every target path already is what it should be.
fn converged(t: &Target) -> Observed {
    let mut obs = empty(t);
    for pt in t.profiles.values() {
        for e in pt
            .dirs
            .iter()
            .chain(pt.agents.values().flat_map(|a| a.entries.iter()))
        {
            obs.paths
                .insert(e.path.clone().into(), seen_as_wanted(&e.want));
        }
        if let ServiceWant::Unit(u) = &pt.service {
            obs.paths.insert(
                u.path.clone().into(),
                Seen::File {
                    mode: u.mode,
                    content: Some(u.content.clone().into_bytes()),
                },
            );
        }
        let inv = inventory_of(t, pt.name.as_str());
        obs.profiles.get_mut(&pt.name).unwrap().inventory = Ok(Some(inv));
    }
    obs
}

fn seen_as_wanted(want: &Want) -> Seen {
    match want {
        Want::Dir { mode } => Seen::Dir { mode: mode.bits() },
        Want::File { content, mode, .. } => Seen::File {
            mode: *mode,
            content: Some(content.clone().into_bytes()),
        },
    }
}

fn inventory_of(t: &Target, profile: &str) -> Inventory {
    let pt = &t.profiles[&ProfileName::parse(profile).unwrap()];
    let mut inv = Inventory::new(Path::new(CONFIG));
    for (id, a) in &pt.agents {
        inv.agents.insert(id.clone());
        if a.wants_cwd_override {
            inv.files.insert(a.cwd_override.clone());
        }
    }
    if let ServiceWant::Unit(u) = &pt.service {
        inv.service = Some(ServiceRecord {
            platform: "systemd".into(),
            unit: u.name.clone(),
            path: u.path.clone(),
            loaded: true,
            adopted_from: None,
        });
    }
    inv
}

fn empty(t: &Target) -> Observed {
    let home = ctx().home;
    Observed {
        paths: Default::default(),
        profiles: t
            .profiles
            .keys()
            .map(|n| {
                (
                    n.clone(),
                    ObservedProfile {
                        paths: home.profile(n),
                        inventory: Ok(None),
                        rejected: Vec::new(),
                        assigned: Default::default(),
                        assigned_identities: Default::default(),
                        undeclared: Default::default(),
                    },
                )
            })
            .collect(),
    }
}

fn default_profile() -> ProfileName {
    ProfileName::default_profile()
}

fn text(p: &Plan) -> String {
    render::text(p, &[], Path::new(HOME))
}

#[test]
fn fresh_machine_creates_everything() {
    let t = target(BASE);
    let p = plan(&t, &empty(&t));
    let actions: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.id.to_string(), c.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("profile \"default\"".to_string(), Action::Create),
            ("agent \"default/agent_a\"".to_string(), Action::Create),
        ]
    );
    assert_eq!(p.summary().add, 2);
    insta::assert_snapshot!("create", text(&p));
}

#[test]
fn converged_machine_has_no_changes() {
    let t = target(BASE);
    let p = plan(&t, &converged(&t));
    assert!(p.changes.is_empty(), "{:#?}", p.changes);
    assert!(p.errors.is_empty() && p.notes.is_empty());
    insta::assert_snapshot!("noop", text(&p));
}

#[test]
fn changed_identity_is_an_update_with_a_diff() {
    let old = target(BASE);
    let obs = converged(&old);
    let t = target(&BASE.replace("\"Alpha\"", "\"Alpha Team\"\nchief = true"));
    let p = plan(&t, &obs);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].action, Action::Update);
    insta::assert_snapshot!("update", text(&p));
}

#[test]
fn mode_drift_is_a_chmod_not_a_rewrite() {
    let t = target(BASE);
    let mut obs = converged(&t);
    let identity = Path::new("/home/u/.cloudagent/agents/agent_a/.meta/identity.json");
    if let Some(Seen::File { mode, .. }) = obs.paths.get_mut(identity.as_os_str()) {
        *mode = 0o644;
    }
    let p = plan(&t, &obs);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        p.changes[0].ops,
        vec![Op::Chmod {
            path: identity.to_path_buf(),
            from: 0o644,
            to: 0o600
        }]
    );
}

#[test]
fn memory_md_is_never_rewritten() {
    let t = target(BASE);
    let mut obs = converged(&t);
    obs.paths.insert(
        "/home/u/.cloudagent/agents/agent_a/MEMORY.md".into(),
        Seen::File {
            mode: 0o600,
            content: None,
        },
    );
    assert!(plan(&t, &obs).changes.is_empty());
}

#[test]
fn removed_agent_is_archived_only_when_recorded() {
    let with_b = format!("{BASE}\n[profiles.default.agents.agent_b]\n");
    let old = target(&with_b);
    let obs = converged(&old);
    let t = target(BASE);
    let p = plan(&t, &obs);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].action, Action::Remove);
    assert!(matches!(&p.changes[0].ops[0], Op::Archive { agent, .. } if agent == "agent_b"));
    insta::assert_snapshot!("archive", text(&p));

    // Not in the inventory (e.g. created by the server): left alone.
    let mut obs = converged(&old);
    let inv = obs.profiles.get_mut(&default_profile()).unwrap();
    if let Ok(Some(i)) = &mut inv.inventory {
        i.agents.remove("agent_b");
    }
    assert!(plan(&t, &obs).changes.is_empty());
}

#[test]
fn server_assigned_agents_are_never_archived() {
    let with_b = format!("{BASE}\n[profiles.default.agents.agent_b]\n");
    let mut obs = converged(&target(&with_b));
    obs.profiles
        .get_mut(&default_profile())
        .unwrap()
        .assigned
        .insert("agent_b".into());
    let p = plan(&target(BASE), &obs);
    assert!(p.changes.is_empty(), "{:#?}", p.changes);
    assert!(p.notes[0].message.contains("server assigns it"));
}

#[test]
fn recorded_agent_whose_workspace_is_gone_is_forgotten() {
    let with_b = format!("{BASE}\n[profiles.default.agents.agent_b]\n");
    let old = target(&with_b);
    let mut obs = converged(&old);
    obs.paths
        .remove(std::ffi::OsStr::new("/home/u/.cloudagent/agents/agent_b"));
    let t = target(BASE);
    let p = plan(&t, &obs);
    assert!(p.changes.is_empty());
    assert_eq!(p.notes.len(), 1);
    assert!(
        !p.inventories[&default_profile()]
            .base
            .agents
            .contains("agent_b")
    );
}

#[test]
fn wrong_file_type_is_an_error_not_a_change() {
    let t = target(BASE);
    let mut obs = converged(&t);
    obs.paths.insert(
        "/home/u/.cloudagent/agents/agent_a/notes".into(),
        Seen::File {
            mode: 0o644,
            content: None,
        },
    );
    let p = plan(&t, &obs);
    assert!(p.changes.is_empty());
    assert_eq!(p.errors.len(), 1);
    assert!(
        p.errors[0]
            .message
            .contains("should be a directory but is a file")
    );
}

const SERVICE: &str = "\n[profiles.default.service]\nrestart_sec = 5\n";

#[test]
fn service_unit_is_written_then_loaded() {
    let t = target(&format!("{BASE}{SERVICE}"));
    let obs = converged(&target(BASE));
    let p = plan(&t, &obs);
    assert_eq!(p.changes.len(), 1);
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Create);
    assert!(matches!(c.ops[0], Op::Write { create: true, .. }));
    assert!(matches!(c.ops[1], Op::Activate { .. }));
}

#[test]
fn unit_that_failed_to_load_is_loaded_again() {
    let t = target(&format!("{BASE}{SERVICE}"));
    let mut obs = converged(&t);
    if let Ok(Some(inv)) = &mut obs.profiles.get_mut(&default_profile()).unwrap().inventory {
        inv.service.as_mut().unwrap().loaded = false;
    }
    let p = plan(&t, &obs);
    assert_eq!(p.changes.len(), 1);
    assert!(matches!(p.changes[0].ops.as_slice(), [Op::Activate { .. }]));
}

#[test]
fn symlinked_unit_is_managed_elsewhere() {
    let t = target(&format!("{BASE}{SERVICE}"));
    let mut obs = converged(&target(BASE));
    obs.paths.insert(
        "/home/u/.config/systemd/user/cloudagent-daemon.service".into(),
        Seen::Symlink {
            target: PathBuf::from("/nix/store/abc-unit"),
            to_dir: false,
        },
    );
    let p = plan(&t, &obs);
    assert!(p.changes.is_empty());
    assert_eq!(p.notes.len(), 1);
    assert!(p.notes[0].message.contains("managed elsewhere"));
}

#[test]
fn foreign_unit_file_is_left_alone_but_identical_one_is_adopted() {
    let t = target(&format!("{BASE}{SERVICE}"));
    let unit_path = PathBuf::from("/home/u/.config/systemd/user/cloudagent-daemon.service");
    let mut obs = converged(&target(BASE));
    obs.paths.insert(
        unit_path.clone().into(),
        Seen::File {
            mode: 0o644,
            content: Some(b"[Unit]\n".to_vec()),
        },
    );
    let p = plan(&t, &obs);
    assert!(p.changes.is_empty());
    assert!(
        p.notes[0]
            .message
            .contains("not written by cloudagent-daemon")
    );

    let ServiceWant::Unit(u) = &t.profiles[&default_profile()].service else {
        panic!()
    };
    obs.paths.insert(
        unit_path.into(),
        Seen::File {
            mode: u.mode,
            content: Some(u.content.clone().into_bytes()),
        },
    );
    let p = plan(&t, &obs);
    assert!(p.changes.is_empty() && p.notes.is_empty());
    assert!(p.inventories[&default_profile()].base.service.is_some());
}

#[test]
fn removed_service_section_disables_and_removes() {
    let old = target(&format!("{BASE}{SERVICE}"));
    let obs = converged(&old);
    let p = plan(&target(BASE), &obs);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].action, Action::Remove);
    assert!(matches!(
        p.changes[0].ops.as_slice(),
        [Op::Deactivate { .. }, Op::RemoveFile { .. }]
    ));
}

#[test]
fn sensitive_unit_content_is_masked() {
    // SAFETY-free: the variable name is unique to this test.
    let var = "CLOUDAGENT_TEST_PLAN_SECRET_KEY";
    unsafe { std::env::set_var(var, "sk_machine_plan_test_secret") };
    let toml = BASE.replace(
        "api_key_file = \"~/.config/cloudagent/prod.key\"",
        &format!("api_key_env = \"{var}\""),
    );
    let t = target(&format!("{toml}{SERVICE}"));
    let p = plan(&t, &converged(&target(&toml)));
    let out = text(&p);
    assert!(!out.contains("plan_test_secret"), "{out}");
    let json = render::json(&p, &[]);
    assert!(!json.contains("plan_test_secret"));
    insta::assert_snapshot!("sensitive", out);

    // Rotating the key changes only a secret: say so without showing it.
    let obs = converged(&t);
    unsafe { std::env::set_var(var, "sk_machine_plan_test_rotated") };
    let t2 = target(&format!("{toml}{SERVICE}"));
    let p = plan(&t2, &obs);
    let out = text(&p);
    assert!(out.contains("(sensitive value changed)"), "{out}");
    assert!(!out.contains("plan_test"), "{out}");
}

#[test]
fn profile_removed_from_file_is_pruned_only_by_its_own_config() {
    let two = format!(
        "{BASE}\n[profiles.fr]\nserver = \"prod\"\napi_key_file = \"/k\"\n[profiles.fr.agents.agent_f]\n"
    );
    let old = target(&two);
    let mut obs = converged(&old);
    let t = target(BASE);
    let p = plan(&t, &obs);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].id.to_string(), "agent \"fr/agent_f\"");
    assert_eq!(p.changes[0].action, Action::Remove);

    let fr = ProfileName::parse("fr").unwrap();
    if let Ok(Some(inv)) = &mut obs.profiles.get_mut(&fr).unwrap().inventory {
        inv.config = PathBuf::from("/elsewhere/other.toml");
    }
    let p = plan(&t, &obs);
    assert!(p.changes.is_empty());
    assert!(p.notes[0].message.contains("/elsewhere/other.toml"));
}

#[test]
fn workdir_override_file_is_pruned_when_workdir_is_removed() {
    let with = BASE.replace(
        "name = \"Alpha\"",
        "name = \"Alpha\"\nworkdir = \"~/code/a\"",
    );
    let obs = converged(&target(&with));
    let p = plan(&target(BASE), &obs);
    let ops: Vec<_> = p.changes.iter().flat_map(|c| c.ops.iter()).collect();
    assert!(
        ops.iter().any(
            |o| matches!(o, Op::RemoveFile { path } if path.ends_with("agent_workspace_root"))
        ),
        "{ops:#?}"
    );
}

#[test]
fn a_declared_workdir_is_created_private_but_its_mode_is_never_changed() {
    let with = BASE.replace(
        "name = \"Alpha\"",
        "name = \"Alpha\"\nworkdir = \"~/code/a\"",
    );
    let t = target(&with);
    let p = plan(&t, &empty(&t));
    let ops: Vec<_> = p.changes.iter().flat_map(|c| c.ops.iter()).collect();
    assert!(
        ops.contains(&&Op::MkDir {
            path: PathBuf::from("/home/u/code/a"),
            mode: 0o700
        }),
        "{ops:#?}"
    );
    let mut obs = converged(&t);
    obs.paths
        .insert("/home/u/code/a".into(), Seen::Dir { mode: 0o775 });
    assert!(plan(&t, &obs).changes.is_empty());
    obs.paths.insert(
        "/home/u/.cloudagent/agents/agent_a/notes".into(),
        Seen::Dir { mode: 0o755 },
    );
    let p = plan(&t, &obs);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        p.changes[0].ops,
        vec![Op::Chmod {
            path: PathBuf::from("/home/u/.cloudagent/agents/agent_a/notes"),
            from: 0o755,
            to: 0o700
        }]
    );
}
