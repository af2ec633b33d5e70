//! The commands that edit cloudagent.toml (`login`, `agent`,
//! `install-service`, ...) through the real binary in a temporary HOME,
//! against the fake backend (README, "Commands that edit the file").

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use support::fake_backend::{Auth, FakeBackend};
use support::{TestHome, mode, stderr, stdout};

const KEY: &str = "sk_machine_logintest";

/// Run the binary with `args`, `input` on stdin, off the async runtime
/// (the fake backend runs on it).
async fn run(home: &TestHome, args: &[&str], input: &str) -> Output {
    let mut cmd = home.std_cmd();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn config_path(home: &TestHome) -> PathBuf {
    home.path().join(".config/cloudagent/cloudagent.toml")
}

fn key_path(home: &TestHome) -> PathBuf {
    home.path().join(".config/cloudagent/default.key")
}

/// Every file under `dir` (not following symlinks) whose bytes contain
/// `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if meta.is_file()
            && fs::read(&p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn login_checks_the_key_saves_it_0600_and_declares_the_profile() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    backend.set_auth(Auth::Bearer(KEY.into()));
    let out = run(
        &home,
        &["login", "--server", &backend.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Logged in. host_id=host_test profile=default"),
        "{}",
        stdout(&out)
    );
    // §2.9: hello in, a full ready out, closed with 1000.
    let ready = backend.frames_of_type("ready");
    assert_eq!(ready.len(), 1);
    assert!(ready[0]["payload"]["runtimes"].is_array());
    assert!(backend.frames_of_type("resume").is_empty());

    assert_eq!(
        fs::read_to_string(key_path(&home)).unwrap(),
        format!("{KEY}\n")
    );
    assert_eq!(mode(&key_path(&home)), 0o600);
    let text = fs::read_to_string(config_path(&home)).unwrap();
    assert_eq!(
        text,
        format!(
            "#:schema ./cloudagent.schema.json\n# Written by cloudagent-daemon; edit freely (comments and order are kept).\n\n[servers.local]\nurl = \"{}\"\n\n[profiles.default]\nserver = \"local\"\napi_key_file = \"~/.config/cloudagent/default.key\"\n",
            backend.url()
        )
    );
    assert!(
        home.path()
            .join(".config/cloudagent/cloudagent.schema.json")
            .is_file()
    );
    assert_eq!(files_containing(home.path(), KEY), vec![key_path(&home)]);

    let plan = run(&home, &["plan", "--detailed-exitcode"], "").await;
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
}

#[tokio::test(flavor = "multi_thread")]
async fn login_with_a_rejected_key_fails_and_writes_nothing() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    backend.set_auth(Auth::Reject(401));
    let out = run(
        &home,
        &["login", "--server", &backend.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("Login failed: server rejected WebSocket connection: HTTP 401"),
        "{err}"
    );
    assert!(
        err.contains("create a new one in the cloudagent UI"),
        "{err}"
    );
    assert!(!config_path(&home).exists());
    assert!(!key_path(&home).exists());
    assert!(files_containing(home.path(), KEY).is_empty());
}

const COMMENTED: &str = r#"# My cloudagent setup. Keep this comment.

[daemon]
log_level = "debug"   # noisy on purpose

# The production backend
[servers.prod]
url = "https://api.cloudagent.chat"   # do not change

# A profile for the French backend
[profiles.fr]
server = "prod"
api_key_file = "~/.config/cloudagent/fr.key"   # from the vault

# trailing comment
"#;

#[tokio::test(flavor = "multi_thread")]
async fn login_into_a_commented_file_keeps_every_comment() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let file = home.write_config(COMMENTED);
    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let out = run(
        &home,
        &["login", "--server", &backend.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(mode(&file), 0o640, "the file keeps its mode");
    let text = fs::read_to_string(config_path(&home)).unwrap();
    // Every line of the original, in order; the new server after the
    // servers, the new profile after the profiles.
    let expected = COMMENTED
        .replace(
            "# do not change\n\n",
            &format!(
                "# do not change\n\n[servers.local]\nurl = \"{}\"\n\n",
                backend.url()
            ),
        )
        .replace(
            "# from the vault\n\n",
            "# from the vault\n\n[profiles.default]\nserver = \"local\"\napi_key_file = \"~/.config/cloudagent/default.key\"\n\n",
        );
    assert_eq!(text, expected);
    // The diff shown is the change made.
    assert!(
        stdout(&out).contains("+[profiles.default]"),
        "{}",
        stdout(&out)
    );

    // A second login to the same URL reuses the server and changes nothing.
    let again = run(
        &home,
        &["login", "--server", &format!("{}/v1/", backend.url())],
        &format!("{KEY}\n"),
    )
    .await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already says so"),
        "{}",
        stdout(&again)
    );
    assert_eq!(fs::read_to_string(config_path(&home)).unwrap(), expected);
}

/// A file we may not write: the snippet is printed, the file stays as it
/// was, the key file is still written (the snippet refers to it).
async fn assert_refused(home: &TestHome, backend: &FakeBackend, file: &Path, why: &str) {
    let before = fs::read(file).unwrap();
    let out = run(
        home,
        &["login", "--server", &backend.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("is managed elsewhere"), "{text}");
    assert!(text.contains(why), "{text}");
    assert!(
        text.contains(&format!(
            "[servers.local]\nurl = \"{}\"\n\n[profiles.default]\nserver = \"local\"\napi_key_file = \"~/.config/cloudagent/default.key\"\n",
            backend.url()
        )),
        "{text}"
    );
    assert_eq!(fs::read(file).unwrap(), before);
    assert_eq!(mode(&key_path(home)), 0o600);
    assert!(!home.path().join(".cloudagent").exists(), "nothing applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_leaves_a_read_only_file_alone_and_prints_the_snippet() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let file = home.write_config(COMMENTED);
    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    assert_refused(&home, &backend, &file, "read-only").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_leaves_a_symlinked_file_alone_and_prints_the_snippet() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let store = home.path().join("store/cloudagent.toml");
    fs::create_dir_all(store.parent().unwrap()).unwrap();
    fs::write(&store, COMMENTED).unwrap();
    std::os::unix::fs::symlink(&store, config_path(&home)).unwrap();
    assert_refused(&home, &backend, &store, "symlink").await;
    assert!(
        fs::symlink_metadata(config_path(&home))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_dry_run_writes_nothing() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let out = run(
        &home,
        &["login", "--dry-run", "--server", &backend.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("+++ ~/.config/cloudagent/cloudagent.toml"),
        "{text}"
    );
    assert!(text.contains("+ profile \"default\""), "{text}");
    assert!(text.contains("dry run: nothing was written"), "{text}");
    assert!(!config_path(&home).exists());
    assert!(!key_path(&home).exists());
    assert!(!home.path().join(".cloudagent").exists());
}

/// A home whose config declares the default profile (no agents yet).
fn declared_home() -> TestHome {
    let home = TestHome::new();
    fs::write(
        home.path().join(".config/cloudagent/prod.key"),
        format!("{KEY}\n"),
    )
    .unwrap();
    home.write_config(
        "[servers.prod]\nurl = \"https://api.cloudagent.chat\"\n\n[profiles.default]\nserver = \"prod\"\napi_key_file = \"~/.config/cloudagent/prod.key\"\n",
    );
    home
}

fn sync_run(home: &TestHome, args: &[&str]) -> Output {
    home.cmd().args(args).output().unwrap()
}

#[test]
fn agent_register_list_and_unregister() {
    let home = declared_home();
    let out = sync_run(
        &home,
        &[
            "agent",
            "register",
            "--agent-id",
            "agent_a",
            "--name",
            "Frontend",
            "--chief",
        ],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("✓ Registered agent_a at ~/.cloudagent/agents/agent_a"),
        "{}",
        stdout(&out)
    );
    let text = fs::read_to_string(config_path(&home)).unwrap();
    assert!(
        text.ends_with("\n[profiles.default.agents.agent_a]\nname = \"Frontend\"\nchief = true\n"),
        "{text}"
    );
    let dir = home.path().join(".cloudagent/agents/agent_a");
    let identity: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(".meta/identity.json")).unwrap()).unwrap();
    assert_eq!(identity["agent_name"], "Frontend");
    assert_eq!(identity["is_chief"], true);
    assert_eq!(identity["reports_to"], "self");
    let plan = sync_run(&home, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));

    // An agent the server assigned: its workspace and record, as the
    // daemon leaves them.
    let server = home.path().join(".cloudagent/agents/agent_s");
    fs::create_dir_all(server.join(".meta")).unwrap();
    fs::write(
        server.join(".meta/identity.json"),
        r#"{"agent_id":"agent_s","agent_name":"Server One","is_chief":false}"#,
    )
    .unwrap();
    fs::write(
        home.path().join(".cloudagent/daemon/assigned-agents.json"),
        r#"["agent_s"]"#,
    )
    .unwrap();
    let out = sync_run(&home, &["agent", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Agents of profile 'default':\n  AGENT ID  NAME              SOURCE    WORKSPACE\n  agent_a   Frontend (chief)  declared  ~/.cloudagent/agents/agent_a\n  agent_s   Server One        server    ~/.cloudagent/agents/agent_s\n"
    );
    let out = sync_run(&home, &["agent", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["agents"][1]["source"], "server");
    assert_eq!(v["agents"][0]["chief"], true);

    // The server's agent is not ours to unregister.
    let before = fs::read_to_string(config_path(&home)).unwrap();
    let out = sync_run(&home, &["agent", "unregister", "--agent-id", "agent_s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("belongs to the server"),
        "{}",
        stderr(&out)
    );
    assert!(server.join(".meta/identity.json").is_file());
    assert_eq!(fs::read_to_string(config_path(&home)).unwrap(), before);

    fs::write(dir.join("notes/keep.md"), "data").unwrap();
    let out = sync_run(&home, &["agent", "unregister", "--agent-id", "agent_a"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("✓ Archived agent_a"),
        "{}",
        stdout(&out)
    );
    assert!(!dir.exists());
    let archive = home.path().join(".cloudagent/agents/.archive");
    let archived: Vec<_> = fs::read_dir(&archive).unwrap().flatten().collect();
    assert_eq!(archived.len(), 1);
    assert_eq!(
        fs::read_to_string(archived[0].path().join("notes/keep.md")).unwrap(),
        "data"
    );
    assert!(
        !fs::read_to_string(config_path(&home))
            .unwrap()
            .contains("agent_a")
    );
}

#[test]
fn agent_register_dry_run_writes_nothing() {
    let home = declared_home();
    let before = fs::read_to_string(config_path(&home)).unwrap();
    let out = sync_run(
        &home,
        &["agent", "register", "--dry-run", "--agent-id", "agent_a"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("+[profiles.default.agents.agent_a]"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("+ agent \"default/agent_a\""),
        "{}",
        stdout(&out)
    );
    assert_eq!(fs::read_to_string(config_path(&home)).unwrap(), before);
    assert!(!home.path().join(".cloudagent").exists());
}

#[test]
fn agent_commands_need_a_declared_profile() {
    let home = declared_home();
    let out = sync_run(
        &home,
        &["agent", "register", "--profile", "fr", "--agent-id", "a1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("profile 'fr' is not declared"),
        "{}",
        stderr(&out)
    );
    let out = sync_run(&home, &["agent", "register", "--agent-id", "../x"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A fake `loginctl` answering `Linger` with `linger`.
fn fake_loginctl(home: &TestHome, linger: &str) {
    home.fake_bin("loginctl", &format!("#!/bin/sh\necho {linger}\n"));
}

#[test]
fn install_service_keeps_the_key_out_of_every_file_but_the_key_file() {
    let home = TestHome::new();
    home.fake_systemctl(0, "");
    fake_loginctl(&home, "no");
    let out = sync_run(
        &home,
        &[
            "install-service",
            "--server-url",
            "https://api.cloudagent.chat",
            "--api-key",
            KEY,
            "--permission-mode",
            "acceptEdits",
            "-w",
            "/srv/work",
        ],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("✓ Installed linux service unit: ~/.config/systemd/user/cloudagent-daemon.service\n  permission mode: acceptEdits\nDaemon will auto-restart on crash and start at login.\n"),
        "{text}"
    );
    assert!(text.contains("loginctl enable-linger $USER"), "{text}");
    assert_eq!(files_containing(home.path(), KEY), vec![key_path(&home)]);
    assert_eq!(mode(&key_path(&home)), 0o600);
    assert_eq!(
        home.systemctl_calls(),
        [
            "--user daemon-reload",
            "--user enable cloudagent-daemon.service",
            "--user restart cloudagent-daemon.service"
        ]
    );
    let toml = fs::read_to_string(config_path(&home)).unwrap();
    assert!(
        toml.ends_with("[servers.cloudagent]\nurl = \"https://api.cloudagent.chat\"\n\n[profiles.default]\nserver = \"cloudagent\"\napi_key_file = \"~/.config/cloudagent/default.key\"\npermission_mode = \"acceptEdits\"\nworkspace_root = \"/srv/work\"\n\n[profiles.default.service]\n"),
        "{toml}"
    );
    let plan = sync_run(&home, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));

    let out = sync_run(&home, &["uninstall-service"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("✓ Uninstalled linux service (profile='default')"));
    assert!(
        !home
            .path()
            .join(".config/systemd/user/cloudagent-daemon.service")
            .exists()
    );
    assert!(
        !fs::read_to_string(config_path(&home))
            .unwrap()
            .contains("service")
    );
    let out = sync_run(&home, &["uninstall-service"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("(linux service for profile 'default' was not installed)"));
}

#[test]
fn install_service_without_a_user_session_says_how_to_fix_it() {
    let home = declared_home();
    home.fake_systemctl(1, "Failed to connect to bus: No medium found");
    fake_loginctl(&home, "no");
    let out = sync_run(&home, &["install-service", "--profile", "default"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("loginctl enable-linger $USER"),
        "{}",
        stderr(&out)
    );
    assert!(
        home.path()
            .join(".config/systemd/user/cloudagent-daemon.service")
            .is_file()
    );
}

#[test]
fn install_service_checks_its_flags() {
    let home = declared_home();
    let out = sync_run(&home, &["install-service", "--permission-mode", "yolo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--permission-mode must be one of"));
    let out = sync_run(&home, &["install-service", "--server-url", "https://x.y"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("must be used together"));
    let out = sync_run(&home, &["install-service", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("+ service \"default\""),
        "{}",
        stdout(&out)
    );
    assert!(!home.path().join(".config/systemd").exists());
}

#[test]
fn list_profiles_in_the_original_format() {
    let home = TestHome::new();
    let out = sync_run(&home, &["list-profiles"]);
    assert_eq!(
        stdout(&out),
        "No profiles installed. Run `cloudagent-daemon login ...` first.\n"
    );
    let home = declared_home();
    let daemon = home.path().join(".cloudagent/daemon");
    fs::create_dir_all(&daemon).unwrap();
    fs::write(
        daemon.join("state.json"),
        r#"{"last_seq":3,"host_id":"host_a1"}"#,
    )
    .unwrap();
    // A profile the original daemon installed, with a PID file of a
    // process that is gone.
    let fr = daemon.join("profiles/fr");
    fs::create_dir_all(&fr).unwrap();
    fs::write(
        fr.join("config.json"),
        r#"{"server_url":"https://api-fr.cloudagent.chat","machine_api_key":"sk_machine_x","host_id":"host_fr"}"#,
    )
    .unwrap();
    fs::write(fr.join("daemon.pid"), "999999999\n").unwrap();
    let out = sync_run(&home, &["list-profiles"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "● default\n    server:  https://api.cloudagent.chat\n    host_id: host_a1\n    status:  —\n● fr\n    server:  https://api-fr.cloudagent.chat\n    host_id: host_fr\n    status:  stopped pid=999999999\n"
    );
    let out = sync_run(&home, &["list-profiles", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["source"], "cloudagent.toml");
    assert_eq!(v[1]["source"], "config.json");
    assert_eq!(v[1]["running"], false);
}

#[test]
fn install_service_does_not_claim_a_unit_it_did_not_write() {
    let home = declared_home();
    home.fake_systemctl(0, "");
    fake_loginctl(&home, "yes");
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon.service");
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    // Someone else's unit (the original daemon's own is adopted instead:
    // tests/reconcile_adopt.rs).
    let foreign = "[Service]\nExecStart=/opt/ops/bin/run-cloudagent --managed-by ops\n";
    fs::write(&unit, foreign).unwrap();
    let out = sync_run(&home, &["install-service"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(!stdout(&out).contains("✓ Installed"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the service unit was not installed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&unit).unwrap(), foreign);
    assert!(home.systemctl_calls().is_empty());
}

/// An install of the original daemon: the default profile from `login`
/// (config.json, a permission mode), profile `fr` only from
/// `install-service --profile fr --server-url … --api-key … --insecure`
/// (its unit holds the key), an agent workspace with data.
fn original_install(home: &TestHome) -> PathBuf {
    let daemon = home.path().join(".cloudagent/daemon");
    fs::create_dir_all(&daemon).unwrap();
    fs::write(
        daemon.join("config.json"),
        r#"{"server_url": "https://api.cloudagent.chat/v1", "machine_api_key": "sk_machine_default1", "host_id": "host_d", "claude_permission_mode": "acceptEdits"}"#,
    )
    .unwrap();
    fs::write(
        daemon.join("state.json"),
        r#"{"last_seq": 7, "host_id": "host_d"}"#,
    )
    .unwrap();
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon-fr.service");
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    fs::write(
        &unit,
        "[Service]\nType=simple\nExecStart=/home/u/.local/bin/cloudagent-daemon start --server-url https://api-fr.cloudagent.chat --api-key sk_machine_fr2 --insecure --workspace-root /srv/fr --profile fr\nEnvironment=NO_PROXY=*\nEnvironment=PYTHONUNBUFFERED=1\nEnvironment=CLOUDAGENT_DAEMON_PROFILE=fr\n",
    )
    .unwrap();
    let agent = home.path().join(".cloudagent/agents/agent_old/notes");
    fs::create_dir_all(&agent).unwrap();
    fs::write(agent.join("n.md"), "old notes").unwrap();
    unit
}

#[test]
fn import_turns_an_original_install_into_the_model_and_key_files() {
    let home = TestHome::new();
    let unit = original_install(&home);
    let unit_before = fs::read(&unit).unwrap();
    let out = sync_run(&home, &["import", "--dry-run"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(!config_path(&home).exists());
    assert!(!key_path(&home).exists());

    let out = sync_run(&home, &["import"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Run `cloudagent-daemon apply` to make it so."),
        "{text}"
    );
    let toml = fs::read_to_string(config_path(&home)).unwrap();
    assert!(
        toml.ends_with("[servers.cloudagent]\nurl = \"https://api.cloudagent.chat\"\n\n[servers.fr]\nurl = \"https://api-fr.cloudagent.chat\"\ninsecure = true\n\n[profiles.default]\nserver = \"cloudagent\"\napi_key_file = \"~/.config/cloudagent/default.key\"\npermission_mode = \"acceptEdits\"\n\n[profiles.fr]\nserver = \"fr\"\napi_key_file = \"~/.config/cloudagent/fr.key\"\nworkspace_root = \"/srv/fr\"\n\n[profiles.fr.service]\n"),
        "{toml}"
    );
    for (profile, key) in [("default", "sk_machine_default1"), ("fr", "sk_machine_fr2")] {
        let p = home
            .path()
            .join(format!(".config/cloudagent/{profile}.key"));
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("{key}\n"));
        assert_eq!(mode(&p), 0o600);
    }
    // Only the key files are new holders of the keys; nothing else moved.
    let mut holders = files_containing(home.path(), "sk_machine_fr2");
    holders.sort();
    assert_eq!(
        holders,
        vec![home.path().join(".config/cloudagent/fr.key"), unit.clone()]
    );
    assert_eq!(fs::read(&unit).unwrap(), unit_before);
    assert_eq!(
        fs::read_to_string(home.path().join(".cloudagent/agents/agent_old/notes/n.md")).unwrap(),
        "old notes"
    );

    let again = sync_run(&home, &["import"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("profile 'default': already declared"),
        "{}",
        stdout(&again)
    );
    assert_eq!(fs::read_to_string(config_path(&home)).unwrap(), toml);
}

#[test]
fn the_profile_comes_from_the_flag_or_the_environment_with_its_own_paths() {
    let home = TestHome::new();
    home.fake_systemctl(0, "");
    fake_loginctl(&home, "yes");
    let env_cmd = |args: &[&str]| {
        home.cmd()
            .env("CLOUDAGENT_DAEMON_PROFILE", " fr ")
            .args(args)
            .output()
            .unwrap()
    };
    let out = env_cmd(&[
        "install-service",
        "--server-url",
        "https://api-fr.cloudagent.chat",
        "--api-key",
        KEY,
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("  profile: fr\n"), "{}", stdout(&out));
    assert!(
        home.path()
            .join(".config/systemd/user/cloudagent-daemon-fr.service")
            .is_file()
    );
    assert!(
        home.path()
            .join(".cloudagent/daemon/profiles/fr/logs")
            .is_dir()
    );
    assert_eq!(mode(&home.path().join(".config/cloudagent/fr.key")), 0o600);

    let out = env_cmd(&["agent", "register", "--agent-id", "a1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("✓ Registered a1 at ~/.cloudagent/agents-fr/a1 (profile='fr')"),
        "{}",
        stdout(&out)
    );
    // The flag wins over the environment.
    let out = env_cmd(&["agent", "list", "--profile", "default"]);
    assert!(
        stdout(&out).starts_with("No agents in profile 'default'."),
        "{}",
        stdout(&out)
    );

    let out = env_cmd(&["uninstall-service", "--profile", "Bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Error: invalid profile name: 'Bad'"));
}

#[tokio::test(flavor = "multi_thread")]
async fn login_into_an_invalid_file_changes_nothing_and_asks_nothing() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let broken = "[servers.prod]\nurl = \"https://api.cloudagent.chat\"\nnot_a_key = 1\n";
    home.write_config(broken);
    let out = run(
        &home,
        &["login", "--server", &backend.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not valid, so it was not edited"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("not_a_key"), "{}", stderr(&out));
    assert_eq!(backend.upgrade_count(), 0);
    assert!(!key_path(&home).exists());
    assert_eq!(fs::read_to_string(config_path(&home)).unwrap(), broken);
}

#[test]
fn install_service_on_launchd_loads_the_agent_with_launchctl() {
    let home = declared_home();
    home.fake_bin(
        "launchctl",
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}/launchctl.log'\n",
            home.path().display()
        ),
    );
    let launchd = |args: &[&str]| {
        home.cmd()
            .env("CLOUDAGENT_SERVICE_PLATFORM", "launchd")
            .args(args)
            .output()
            .unwrap()
    };
    let out = launchd(&["install-service"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(
            "✓ Installed macos service unit: ~/Library/LaunchAgents/chat.cloudagent.daemon.plist\n"
        ),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("loginctl"), "{}", stdout(&out));
    let calls = fs::read_to_string(home.path().join("launchctl.log")).unwrap();
    assert!(calls.contains("bootstrap gui/"), "{calls}");
    let out = launchd(&["uninstall-service"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("✓ Uninstalled macos service (profile='default')"));
    assert!(
        !home
            .path()
            .join("Library/LaunchAgents/chat.cloudagent.daemon.plist")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_to_a_server_without_websocket_checks_the_key_over_sse() {
    use support::fake_backend::FakeBackend;
    let home = TestHome::new();
    let sse = FakeBackend::start().await;
    // A backend or proxy without WebSocket: every upgrade gets 404.
    sse.set_ws_path("/not-here");
    let out = run(
        &home,
        &["login", "--server", &sse.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("checking the key with POST /v1/daemon/ready instead"),
        "{}",
        stderr(&out)
    );
    let ws: Vec<u16> = sse
        .upgrades()
        .iter()
        .filter(|u| u.path == "/v1/daemon/ws")
        .map(|u| u.status)
        .collect();
    assert_eq!(ws, [404]);
    let ready = sse.accepted_posts("/v1/daemon/ready");
    assert_eq!(ready.len(), 1);
    assert!(ready[0]["runtimes"].is_array());
    assert!(
        stdout(&out).contains("Logged in. host_id="),
        "{}",
        stdout(&out)
    );

    let home = TestHome::new();
    sse.fail_post("/v1/daemon/ready", 401);
    let out = run(
        &home,
        &["login", "--server", &sse.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Login failed: server rejected POST /v1/daemon/ready: HTTP 401"),
        "{}",
        stderr(&out)
    );
    assert!(!key_path(&home).exists());
}
