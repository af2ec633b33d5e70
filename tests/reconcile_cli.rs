//! `plan` and `apply` through the real binary in a temporary HOME.

mod support;

use std::fs;
use std::path::Path;

use support::tools::require_tool;
use support::{TestHome, example, mode, stderr, stdout};

const ONE_AGENT: &str = r#"
[servers.prod]
url = "https://api.cloudagent.chat"

[profiles.default]
server = "prod"
api_key_file = "~/.config/cloudagent/prod.key"

[profiles.default.agents.agent_a]
name = "Alpha"
"#;

fn two_agents() -> String {
    format!("{ONE_AGENT}\n[profiles.default.agents.agent_b]\nname = \"Beta\"\n")
}

#[test]
fn apply_then_apply_again_changes_nothing() {
    let home = TestHome::new();
    home.write_config(&two_agents());
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Plan: 3 to add, 0 to change, 0 to remove."),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("Apply complete: 3 added, 0 changed, 0 removed."));

    let a = home.path().join(".cloudagent/agents/agent_a");
    assert!(
        a.join("MEMORY.md").is_file() && a.join("notes").is_dir() && a.join("workspace").is_dir()
    );
    assert_eq!(mode(&a.join(".meta/identity.json")), 0o600);
    assert_eq!(
        mode(&home.path().join(".cloudagent/daemon/inventory.json")),
        0o600
    );

    let before = home.snapshot_mtimes();
    // Let a second pass land in a later clock tick than the first.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "No changes. The machine matches the configuration.\n"
    );
    assert_eq!(
        before,
        home.snapshot_mtimes(),
        "the second apply touched files"
    );

    let out = home
        .cmd()
        .args(["plan", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn plan_changes_nothing_and_reports_pending_changes() {
    let home = TestHome::new();
    home.write_config(ONE_AGENT);
    let out = home
        .cmd()
        .args(["plan", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !home.path().join(".cloudagent").exists(),
        "plan wrote files"
    );
    let out = home.cmd().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(0));

    let out = home.cmd().args(["plan", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["add"], 2);
    assert_eq!(v["changes"][1]["kind"], "agent");
    assert_eq!(v["changes"][1]["name"], "agent_a");
    assert_eq!(v["changes"][1]["action"], "create");
}

#[test]
fn removing_an_agent_archives_its_workspace_with_data_intact() {
    let home = TestHome::new();
    home.write_config(&two_agents());
    assert!(home.cmd().arg("apply").output().unwrap().status.success());
    let b = home.path().join(".cloudagent/agents/agent_b");
    fs::write(b.join("notes/todo.md"), "keep me").unwrap();
    fs::write(b.join("MEMORY.md"), "my memories").unwrap();

    home.write_config(ONE_AGENT);
    let out = home.cmd().arg("plan").output().unwrap();
    assert!(
        stdout(&out).contains("- agent \"default/agent_b\""),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("Plan: 0 to add, 0 to change, 1 to remove."));

    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!b.exists());
    let archive = home.path().join(".cloudagent/agents/.archive");
    let entries: Vec<_> = fs::read_dir(&archive)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1);
    let moved = &entries[0];
    assert!(
        moved
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("agent_b-")
    );
    assert_eq!(
        fs::read_to_string(moved.join("notes/todo.md")).unwrap(),
        "keep me"
    );
    assert_eq!(
        fs::read_to_string(moved.join("MEMORY.md")).unwrap(),
        "my memories"
    );
    assert!(moved.join(".meta/archived.txt").is_file());
    assert!(home.path().join(".cloudagent/agents/agent_a").is_dir());

    let out = home.cmd().arg("apply").output().unwrap();
    assert_eq!(
        stdout(&out),
        "No changes. The machine matches the configuration.\n"
    );
}

#[test]
fn agents_apply_did_not_create_are_never_pruned() {
    let home = TestHome::new();
    home.write_config(ONE_AGENT);
    // A workspace the server assigned (or the old daemon created).
    let foreign = home.path().join(".cloudagent/agents/agent_server");
    fs::create_dir_all(foreign.join(".meta")).unwrap();
    assert!(home.cmd().arg("apply").output().unwrap().status.success());
    home.write_config("[servers.prod]\nurl = \"https://x\"\n");
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(foreign.is_dir());
    assert!(
        !home.path().join(".cloudagent/agents/agent_a").exists(),
        "declared agent archived"
    );
}

/// Take the apply lock the way another apply would (flock on the file).
fn hold_apply_lock(home: &TestHome) -> fs::File {
    let root = home.path().join(".cloudagent");
    fs::create_dir_all(&root).unwrap();
    let f = fs::File::create(root.join("apply.lock")).unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    f
}

#[test]
fn apply_waits_for_another_apply_and_gives_up_after_the_lock_timeout() {
    let home = TestHome::new();
    home.write_config(&two_agents());
    let held = hold_apply_lock(&home);
    let me = format!("(pid {})", std::process::id());

    let out = home
        .cmd()
        .args(["apply", "--lock-timeout", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("another apply is running {me}"))
            && stderr(&out).contains("--lock-timeout"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "no plan without the lock");
    assert!(!home.path().join(".cloudagent/agents").exists());

    // With time to wait, it says so, then runs once the holder is done.
    let mut child = home
        .std_cmd()
        .arg("apply")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(
        line.starts_with(&format!("Waiting for another apply {me} to finish")),
        "{line}"
    );
    assert!(!home.path().join(".cloudagent/agents").exists());
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Apply complete: 3 added, 0 changed, 0 removed."));
}

fn assert_invalid(text: &str, expected: &[&str]) {
    let home = TestHome::new();
    let cfg = home.write_config(text);
    for cmd in ["plan", "apply"] {
        let out = home.cmd().arg(cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd} should fail");
        let err = stderr(&out);
        assert!(
            err.contains(&cfg.display().to_string()),
            "no file name in: {err}"
        );
        for e in expected {
            assert!(err.contains(e), "{cmd}: expected {e:?} in:\n{err}");
        }
        assert!(stdout(&out).is_empty());
        assert!(
            !home.path().join(".cloudagent").exists(),
            "{cmd} changed the machine"
        );
    }
}

#[test]
fn unknown_key_is_a_located_error() {
    assert_invalid(
        &ONE_AGENT.replace("name = \"Alpha\"", "name = \"Alpha\"\nnmae = \"typo\""),
        &[
            ":11:1: profiles.default.agents.agent_a.nmae: unknown field `nmae`",
            "expected one of",
        ],
    );
}

#[test]
fn bad_profile_name_is_a_located_error() {
    assert_invalid(
        &ONE_AGENT.replace("profiles.default", "profiles.Prod"),
        &[
            ":5:11: profiles.Prod: invalid profile name \"Prod\"",
            "[a-z0-9][a-z0-9-]{0,30}",
        ],
    );
}

#[test]
fn unknown_server_reference_is_a_located_error() {
    assert_invalid(
        &ONE_AGENT.replace("server = \"prod\"", "server = \"prd\""),
        &[":6:10: profiles.default.server: unknown server \"prd\"; known: prod"],
    );
}

#[test]
fn malformed_toml_is_a_located_error() {
    assert_invalid(
        &ONE_AGENT.replace("name = \"Alpha\"", "name = \"Alpha"),
        &[":10:14: invalid basic string"],
    );
}

#[test]
fn unsafe_agent_id_is_rejected() {
    assert_invalid(
        &ONE_AGENT.replace("agents.agent_a", "agents.\"../escape\""),
        &["profiles.default.agents.\"../escape\": invalid agent id"],
    );
}

#[test]
fn missing_config_file_says_how_to_fix_it() {
    let home = TestHome::new();
    let out = home.cmd().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot read config file")
            && err.contains("cloudagent.toml")
            && err.contains("-f PATH"),
        "{err}"
    );
}

const SECRET: &str = "sk_machine_SUPERSECRET123";

#[test]
fn secrets_never_reach_output() {
    let home = TestHome::new();
    home.fake_systemctl(0, "");
    // Inline key (warned) and an env key embedded in a unit.
    let text = format!(
        "{}\n[profiles.fr]\nserver = \"prod\"\napi_key_env = \"FR_KEY\"\n[profiles.fr.service]\n",
        ONE_AGENT.replace(
            "api_key_file = \"~/.config/cloudagent/prod.key\"",
            &format!("api_key = \"{SECRET}\"")
        )
    );
    home.write_config(&text);
    for args in [
        vec!["plan"],
        vec!["plan", "--json"],
        vec!["apply"],
        vec!["plan"],
    ] {
        let out = home
            .cmd()
            .args(&args)
            .env("FR_KEY", format!("{SECRET}-fr"))
            .output()
            .unwrap();
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{args:?}: {all}");
        assert!(
            !all.contains("SUPERSECRET"),
            "{args:?} leaked the key:\n{all}"
        );
    }
    let out = home
        .cmd()
        .arg("plan")
        .env("FR_KEY", format!("{SECRET}-fr"))
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("Warning:") && stdout(&out).contains("profiles.default.api_key"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("api_key = (sensitive)"));

    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon-fr.service");
    assert!(
        fs::read_to_string(&unit)
            .unwrap()
            .contains(&format!("Environment=FR_KEY={SECRET}-fr"))
    );
    assert_eq!(mode(&unit), 0o600);

    // A syntax error on the key's own line must not quote it.
    home.write_config(&text.replace(
        &format!("api_key = \"{SECRET}\""),
        &format!("api_key = \"{SECRET}"),
    ));
    let out = home.cmd().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("SUPERSECRET"), "{}", stderr(&out));

    // Unset env key for a unit: a clear error that names the variable only.
    home.write_config(&text);
    let out = home.cmd().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FR_KEY (api_key_env) is not set"),
        "{}",
        stdout(&out)
    );
}

const WITH_SERVICE: &str = "\n[profiles.default.service]\nrestart_sec = 7\n";

#[test]
fn service_unit_is_written_loaded_and_removed_through_systemctl() {
    let home = TestHome::new();
    home.fake_systemctl(0, "");
    home.write_config(&format!("{ONE_AGENT}{WITH_SERVICE}"));
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon.service");
    let text = fs::read_to_string(&unit).unwrap();
    assert!(text.contains("RestartSec=7"));
    assert!(text.contains(&format!(
        "ExecStart={} start --profile default --config",
        support::BIN
    )));
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        home.systemctl_calls(),
        [
            "--user daemon-reload",
            "--user enable cloudagent-daemon.service",
            "--user restart cloudagent-daemon.service"
        ]
    );

    let out = home.cmd().arg("apply").output().unwrap();
    assert_eq!(
        stdout(&out),
        "No changes. The machine matches the configuration.\n"
    );
    assert_eq!(
        home.systemctl_calls().len(),
        3,
        "no-op apply called systemctl"
    );

    home.write_config(ONE_AGENT);
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!unit.exists());
    assert_eq!(
        home.systemctl_calls()[3..],
        [
            "--user disable --now cloudagent-daemon.service",
            "--user daemon-reload"
        ]
    );
}

#[test]
fn unavailable_service_manager_keeps_other_resources_and_fails() {
    let home = TestHome::new();
    home.fake_systemctl(1, "Failed to connect to bus: No medium found");
    home.write_config(&format!("{ONE_AGENT}{WITH_SERVICE}"));
    let out = home.cmd().arg("apply").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("service \"default\": the unit file was written but the service manager could not load it"), "{err}");
    assert!(err.contains("Failed to connect to bus"), "{err}");
    assert!(
        home.path()
            .join(".config/systemd/user/cloudagent-daemon.service")
            .is_file()
    );
    assert!(
        home.path()
            .join(".cloudagent/agents/agent_a/.meta/identity.json")
            .is_file()
    );

    // The next plan still wants to load it; with a working manager it does.
    let out = home.cmd().arg("plan").output().unwrap();
    assert!(
        stdout(&out).contains("~ load systemd unit cloudagent-daemon.service"),
        "{}",
        stdout(&out)
    );
    home.fake_systemctl(0, "");
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.cmd().arg("apply").output().unwrap();
    assert_eq!(
        stdout(&out),
        "No changes. The machine matches the configuration.\n"
    );
}

#[test]
fn symlinked_unit_is_left_alone() {
    let home = TestHome::new();
    home.fake_systemctl(0, "");
    let store = home.path().join("nix-store-unit.service");
    fs::write(&store, "[Unit]\nDescription=from nix\n").unwrap();
    let dir = home.path().join(".config/systemd/user");
    fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&store, dir.join("cloudagent-daemon.service")).unwrap();
    home.write_config(&format!("{ONE_AGENT}{WITH_SERVICE}"));

    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is managed elsewhere (a symlink to"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        fs::read_to_string(&store).unwrap(),
        "[Unit]\nDescription=from nix\n"
    );
    assert!(
        fs::symlink_metadata(dir.join("cloudagent-daemon.service"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(home.systemctl_calls().is_empty());
}

#[test]
fn rendered_systemd_unit_passes_systemd_analyze_verify() {
    let Some(systemd_analyze) = require_tool("systemd-analyze", "systemd") else {
        return;
    };
    let home = TestHome::new();
    home.fake_systemctl(0, "");
    home.write_config(&format!("{ONE_AGENT}{WITH_SERVICE}"));
    assert!(home.cmd().arg("apply").output().unwrap().status.success());
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon.service");
    let runtime = home.path().join("run");
    fs::create_dir_all(&runtime).unwrap();
    let out = std::process::Command::new(systemd_analyze)
        .args(["verify", "--user"])
        .arg(&unit)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", home.path())
        .output()
        .unwrap();
    // Unknown keys are only warnings: require a clean stderr too.
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        stderr(&out)
    );
}

#[test]
fn rendered_launchd_plist_parses() {
    let Some(python3) = require_tool("python3", "python3") else {
        return;
    };
    let home = TestHome::new();
    home.fake_bin(
        "launchctl",
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}/launchctl.log'\n",
            home.path().display()
        ),
    );
    home.write_config(
        &format!("{ONE_AGENT}{WITH_SERVICE}").replace("profiles.default", "profiles.r-d"),
    );
    let out = home
        .cmd()
        .arg("apply")
        .env("CLOUDAGENT_SERVICE_PLATFORM", "launchd")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plist = home
        .path()
        .join("Library/LaunchAgents/chat.cloudagent.daemon.r-d.plist");
    let out = std::process::Command::new(python3)
        .arg("-c")
        .arg("import plistlib,sys,json; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))")
        .arg(&plist)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plist did not parse: {}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Label"], "chat.cloudagent.daemon.r-d");
    assert_eq!(v["ProgramArguments"][1], "start");
    assert_eq!(v["ThrottleInterval"], 7);
    assert_eq!(
        v["EnvironmentVariables"]["CLOUDAGENT_DAEMON_PROFILE"],
        "r-d"
    );
    let calls = fs::read_to_string(home.path().join("launchctl.log")).unwrap();
    assert!(
        calls.contains(&format!("bootstrap gui/{}", rustix_uid())),
        "{calls}"
    );
}

fn rustix_uid() -> u32 {
    // The uid the binary sees (getuid(2): Linux and macOS alike).
    rustix::process::getuid().as_raw()
}

#[test]
fn examples_plan_and_apply_cleanly() {
    for name in ["single-profile.toml", "multi-profile.toml"] {
        let home = TestHome::new();
        home.fake_systemctl(0, "");
        let cfg = example(name);
        let run = |args: &[&str]| {
            home.cmd()
                .arg("-f")
                .arg(&cfg)
                .args(args)
                .env("CLOUDAGENT_FR_KEY", "sk_machine_example")
                .output()
                .unwrap()
        };
        let out = run(&["plan"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let out = run(&["apply"]);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let out = run(&["plan", "--detailed-exitcode"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stdout(&out));
    }
}

#[test]
fn config_env_var_and_flag_pick_the_file() {
    let home = TestHome::new();
    let elsewhere = home.path().join("dotfiles.toml");
    fs::write(&elsewhere, ONE_AGENT).unwrap();
    let out = home
        .cmd()
        .arg("plan")
        .env("CLOUDAGENT_CONFIG", &elsewhere)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("agent_a"));
    let out = home
        .cmd()
        .args(["plan", "-f"])
        .arg(Path::new("/nonexistent/x.toml"))
        .env("CLOUDAGENT_CONFIG", &elsewhere)
        .output()
        .unwrap();
    assert!(stderr(&out).contains("/nonexistent/x.toml"));
}

/// Agents the server assigned that the file does not declare are shown in
/// their own section with the TOML that adopts them, in text and JSON, and
/// adopting the snippet makes the section go away.
#[test]
fn plan_lists_the_servers_agents_with_the_toml_to_adopt_them() {
    let home = TestHome::new();
    home.write_config(ONE_AGENT);
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let daemon = home.path().join(".cloudagent/daemon");
    fs::write(
        daemon.join("assigned-agents.json"),
        r#"["agent_a", "agent_srv"]"#,
    )
    .unwrap();
    let meta = home.path().join(".cloudagent/agents/agent_srv/.meta");
    fs::create_dir_all(&meta).unwrap();
    fs::write(
        meta.join("identity.json"),
        r#"{"agent_id":"agent_srv","agent_name":"Boss \"B\"","is_chief":true,"role":"chief","workspace_slug":"default","reports_to":"self"}"#,
    )
    .unwrap();

    let out = home.cmd().arg("plan").output().unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("# managed by the server, not declared\n"),
        "{text}"
    );
    assert!(
        text.contains("#   default/agent_srv (\"Boss \\\"B\\\"\"), chief"),
        "{text}"
    );
    assert!(text.contains("#     [profiles.default.agents.agent_srv]\n#     name = 'Boss \"B\"'\n#     chief = true\n"), "{text}");
    assert!(
        !text.contains("default/agent_a "),
        "a declared agent is not listed: {text}"
    );
    assert!(text.contains("No changes."), "{text}");

    let out = home.cmd().args(["plan", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agents = v["server_agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["agent_id"], "agent_srv");
    assert_eq!(agents[0]["chief"], true);
    let adopt = agents[0]["adopt"].as_str().unwrap().to_string();

    home.write_config(&format!("{ONE_AGENT}\n{adopt}"));
    let out = home.cmd().arg("plan").output().unwrap();
    assert!(
        !stdout(&out).contains("managed by the server"),
        "{}",
        stdout(&out)
    );
}

/// The launchd unit's life through the fake `launchctl`: install, update
/// and removal each call it in the order launchd needs (bootout of the old
/// job, ignored when absent, then bootstrap of the new plist; bootout and
/// the plist gone on removal).
#[test]
fn launchd_install_update_and_removal_call_launchctl_in_order() {
    let home = TestHome::new();
    let log = home.path().join("launchctl.log");
    home.fake_bin(
        "launchctl",
        &format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    );
    let uid = rustix_uid();
    let label = "chat.cloudagent.daemon.r-d";
    let plist = home
        .path()
        .join(format!("Library/LaunchAgents/{label}.plist"));
    let apply = |cfg: &str| {
        home.write_config(cfg);
        let _ = fs::remove_file(&log);
        let out = home
            .cmd()
            .arg("apply")
            .env("CLOUDAGENT_SERVICE_PLATFORM", "launchd")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        fs::read_to_string(&log).unwrap_or_default()
    };
    let with = |restart: u32| {
        format!("{ONE_AGENT}\n[profiles.default.service]\nrestart_sec = {restart}\n")
            .replace("profiles.default", "profiles.r-d")
    };
    let bootout = format!("bootout gui/{uid}/{label}\n");
    let bootstrap = format!("bootstrap gui/{uid} {}\n", plist.display());

    assert_eq!(apply(&with(7)), format!("{bootout}{bootstrap}"), "install");
    assert!(plist.is_file());
    assert_eq!(apply(&with(7)), "", "no change, no call");
    assert_eq!(apply(&with(9)), format!("{bootout}{bootstrap}"), "update");
    let without = ONE_AGENT.replace("profiles.default", "profiles.r-d");
    assert_eq!(apply(&without), bootout, "removal");
    assert!(!plist.exists());
}
