//! The config side of the trust boundaries, through the real binary in a
//! temporary HOME: keys never echoed, no cleartext keys to remote hosts, a
//! tampered inventory never acted on, private workspaces, new limits
//! validated, and an argv the bridge parses whatever the agent id.

mod support;

use std::time::{Duration, Instant};

use support::TestHome;
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::FakeBackend;
use support::fake_claude::FakeClaude;
use support::{stderr, stdout};

const T: Duration = Duration::from_secs(15);

const SERVER: &str = "[servers.prod]\nurl = \"https://api.cloudagent.chat\"\n\n";

/// Distinctive parts of the values below: none may appear in any output.
const KEY: &str = "sk_machine_TRUSTKEY1";
const NOT_A_KEY: &str = "hunter2-NOTAKEY";
const MARKS: [&str; 2] = ["TRUSTKEY1", "hunter2"];

/// The same profile with its key written in every way TOML allows.
fn spellings(value: &str) -> Vec<String> {
    vec![
        format!("[profiles.default]\nserver = \"prod\"\napi_key = \"{value}\"\n"),
        format!("[profiles.default]\nserver = \"prod\"\n\"api_key\" = '{value}'\n"),
        format!("[profiles]\ndefault.server = \"prod\"\ndefault.\"api_key\" = \"{value}\"\n"),
        format!("[profiles]\ndefault.server = \"prod\"\ndefault. api_key = \"{value}\"\n"),
        format!("[profiles]\ndefault = {{ server = \"prod\", api_key = \"{value}\" }}\n"),
        format!("[profiles.default]\nserver = \"prod\"\napi_key = \"\"\"\n{value}\"\"\"\n"),
        format!("[profiles]\ndefault.server = \"prod\"\ndefault.api_key = '''\n{value}'''\n"),
        format!("[profiles.default]\nserver = \"prod\"\napi_key_file = \"{value}\"\n"),
        format!("[profiles.default]\nserver = \"prod\"\napi_key_env = \"{value}\"\n"),
    ]
}

/// `expect`: what the output says instead (a warning or an error).
fn assert_no_key(home: &TestHome, config: &str, expect: &str) {
    home.write_config(config);
    for args in [&["plan"][..], &["apply"], &["plan", "--json"]] {
        let out = home.cmd().args(args).output().unwrap();
        let all = format!("{}{}", stdout(&out), stderr(&out));
        for mark in MARKS {
            assert!(
                !all.contains(mark),
                "{args:?} echoed the key of\n{config}\n---\n{all}"
            );
        }
        assert!(all.contains(expect), "{args:?} on\n{config}\n---\n{all}");
    }
}

#[test]
fn a_key_is_never_echoed_however_the_file_spells_it() {
    let home = TestHome::new();
    for value in [KEY, NOT_A_KEY] {
        for profile in spellings(value) {
            assert_no_key(
                &home,
                &format!("{SERVER}{profile}"),
                "profiles.default.api_key",
            );
        }
    }
}

#[test]
fn a_file_that_does_not_parse_does_not_show_the_key_either() {
    let home = TestHome::new();
    for (broken, expect) in [
        (
            format!("[profiles.default]\nserver = \"prod\"\napi_key = \"{NOT_A_KEY}\n"),
            "(line not shown",
        ),
        (
            format!("[profiles.default]\nserver = \"prod\"\napi_key = \"\"\"\n{NOT_A_KEY}\n"),
            "invalid multi-line basic string",
        ),
        (
            format!("[profiles]\ndefault. api_key = {NOT_A_KEY}\n"),
            "(line not shown",
        ),
    ] {
        assert_no_key(&home, &format!("{SERVER}{broken}"), expect);
    }
}

/// The masked line is still shown, with its location, for the user to find
/// the place.
#[test]
fn the_inline_key_warning_still_points_at_the_line() {
    let home = TestHome::new();
    home.write_config(&format!(
        "{SERVER}[profiles]\ndefault.server = \"prod\"\ndefault. api_key = \"{KEY}\"\n"
    ));
    let out = home.cmd().arg("plan").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "cloudagent.toml:6:20: profiles.default.api_key: the API key is written inline"
        ) && text.contains("6 | default. api_key = (sensitive)"),
        "{text}"
    );
}

fn status_json(home: &TestHome) -> serde_json::Value {
    let out = home.cmd().args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_error_shows_no_key_in_the_log_or_status() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    let good = DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home);
    let cfg = home.write_config(&good);
    let d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;

    let start = good.find("api_key_file").unwrap();
    let end = start + good[start..].find('\n').unwrap();
    let bad = format!(
        "{}api_key_file = \"{NOT_A_KEY}\"{}",
        &good[..start],
        &good[end..]
    );
    let tmp = cfg.with_extension("tmp");
    std::fs::write(&tmp, bad).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    let deadline = Instant::now() + T;
    while status_json(&home)["config_error"].is_null() {
        assert!(Instant::now() < deadline, "no config error in status");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = home.cmd().arg("status").output().unwrap();
    let everything = format!(
        "{}\n{}\n{}",
        status_json(&home),
        stdout(&text),
        d.output(&home)
    );
    assert!(everything.contains("api_key_file"), "{everything}");
    for mark in MARKS {
        assert!(!everything.contains(mark), "{everything}");
    }
}

// ---- Cleartext keys: http:// only to this machine, unless opted in ----

fn server_config(url: &str, server_extra: &str) -> String {
    format!(
        "[servers.prod]\nurl = \"{url}\"\n{server_extra}\n[profiles.default]\nserver = \"prod\"\napi_key_file = \"~/k\"\n"
    )
}

#[test]
fn http_to_another_machine_is_refused_unless_opted_in() {
    let home = TestHome::new();
    home.write_config(&server_config("http://example.com", ""));
    let out = home.cmd().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("servers.prod.url: server \"prod\": http:// would send the machine key unencrypted to example.com")
            && err.contains("use https://, or set allow_insecure_http = true in [servers.prod]"),
        "{err}"
    );
    assert!(!home.path().join(".cloudagent").exists());

    home.write_config(&server_config(
        "http://example.com",
        "allow_insecure_http = true\n",
    ));
    let out = home.cmd().arg("plan").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    for local in [
        "http://127.0.0.1:4711",
        "http://localhost:4711/v1",
        "http://[::1]:4711",
    ] {
        home.write_config(&server_config(local, ""));
        let out = home.cmd().arg("plan").output().unwrap();
        assert!(out.status.success(), "{local}: {}", stderr(&out));
    }
}

/// 0.0.0.0 is not loopback by the rule (localhost, 127.0.0.0/8, ::1), yet a
/// connection attempt to it stays on this machine: without the check the
/// daemon would try to connect, never leaving the host.
const NOT_LOOPBACK: &str = "http://0.0.0.0:9";

#[test]
fn one_shot_start_over_http_to_another_machine_needs_the_flag() {
    let home = TestHome::new();
    let mut d = Daemon::start_with(
        &home,
        FAST_TIMING,
        &["--server-url", NOT_LOOPBACK, "--api-key", KEY],
    );
    let status = d.wait_exit(T).expect("start should refuse at once");
    let out = d.output(&home);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("--server-url http://0.0.0.0:9: http:// would send the machine key unencrypted to 0.0.0.0")
            && out.contains("pass --allow-insecure-http"),
        "{out}"
    );
    assert!(!out.contains("TRUSTKEY1"), "{out}");
}

#[test]
fn the_original_config_json_over_http_to_another_machine_needs_the_flag() {
    let home = TestHome::new();
    let legacy = home.path().join(".cloudagent/daemon/config.json");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(
        &legacy,
        format!("{{\"server_url\": \"{NOT_LOOPBACK}\", \"machine_api_key\": \"{KEY}\"}}"),
    )
    .unwrap();
    let mut d = Daemon::start(&home, FAST_TIMING);
    let status = d.wait_exit(T).expect("start should refuse at once");
    let out = d.output(&home);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "{}: server_url: http:// would send",
            legacy.display()
        )) && out.contains("pass --allow-insecure-http to start"),
        "{out}"
    );

    // With the flag it goes ahead (and tries to connect, on this machine).
    let d = Daemon::start_with(&home, FAST_TIMING, &["--allow-insecure-http"]);
    let deadline = Instant::now() + T;
    while !d.output(&home).contains("Connecting to http://0.0.0.0:9") {
        assert!(Instant::now() < deadline, "{}", d.output(&home));
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- The inventory is checked before apply acts on it ----

const ONE_AGENT: &str = "[servers.prod]\nurl = \"https://api.cloudagent.chat\"\n\n[profiles.default]\nserver = \"prod\"\napi_key_file = \"~/k\"\n\n[profiles.default.agents.agent_a]\n";

#[test]
fn a_tampered_inventory_never_moves_or_removes_anything_outside() {
    let home = TestHome::new();
    home.fake_systemctl(0, "");
    home.write_config(ONE_AGENT);
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Things apply must never touch, named in the inventory by an edit.
    let victim_dir = home.path().join("victimdir");
    std::fs::create_dir_all(victim_dir.join(".meta")).unwrap();
    std::fs::write(victim_dir.join("data.txt"), "mine").unwrap();
    let precious = home.path().join("precious.txt");
    std::fs::write(&precious, "mine").unwrap();
    let unit_like = home.path().join("precious.service");
    std::fs::write(&unit_like, "mine").unwrap();
    let inventory = home.path().join(".cloudagent/daemon/inventory.json");
    let mut inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&inventory).unwrap()).unwrap();
    inv["agents"] = serde_json::json!(["agent_a", "../../victimdir"]);
    inv["files"] = serde_json::json!([precious]);
    inv["service"] = serde_json::json!({
        "platform": "systemd", "unit": "cloudagent-daemon.service",
        "path": unit_like, "loaded": true
    });
    std::fs::write(&inventory, serde_json::to_vec_pretty(&inv).unwrap()).unwrap();

    let plan = home.cmd().arg("plan").output().unwrap();
    let json = home.cmd().args(["plan", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["warnings"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(json["summary"]["remove"], 0, "{json}");
    let apply = home.cmd().arg("apply").output().unwrap();
    assert!(apply.status.success(), "{}", stderr(&apply));
    for out in [&plan, &apply] {
        let text = stdout(out);
        for entry in [
            "ignoring agent \"../../victimdir\": not a valid agent id",
            "ignoring file \"~/precious.txt\": not inside an agent directory",
            "ignoring service \"cloudagent-daemon.service\" at \"~/precious.service\"",
        ] {
            assert!(
                text.contains(&format!(
                    "Warning: profile \"default\": ~/.cloudagent/daemon/inventory.json: {entry}"
                )),
                "{entry} in:\n{text}"
            );
        }
        assert!(!text.contains("archive"), "{text}");
    }
    assert_eq!(
        std::fs::read_to_string(victim_dir.join("data.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(&unit_like).unwrap(), "mine");
    assert!(
        !home.path().join(".cloudagent/agents/.archive").exists(),
        "something was archived"
    );
    assert!(
        home.systemctl_calls().is_empty(),
        "{:?}",
        home.systemctl_calls()
    );

    // The record no longer names them; the next apply has nothing to say.
    let out = home.cmd().arg("apply").output().unwrap();
    assert_eq!(
        stdout(&out),
        "No changes. The machine matches the configuration.\n"
    );
}

// ---- Workspaces are private unless the profile shares them ----

fn modes(agent_dir: &std::path::Path) -> Vec<(String, u32)> {
    ["", "notes", "claude", "workspace", ".meta", "MEMORY.md"]
        .iter()
        .map(|p| (p.to_string(), support::mode(&agent_dir.join(p))))
        .collect()
}

fn expected(dir: u32, file: u32) -> Vec<(String, u32)> {
    [
        ("", dir),
        ("notes", dir),
        ("claude", dir),
        ("workspace", dir),
        (".meta", 0o700),
        ("MEMORY.md", file),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), *m))
    .collect()
}

/// agent_a in its own workspace, agent_w and agent_n in declared workdirs.
fn with_workdir(access: &str) -> String {
    let agents = "\n[profiles.default.agents.agent_w]\nworkdir = \"~/mycode\"\n[profiles.default.agents.agent_n]\nworkdir = \"~/newcode\"\n";
    format!("{ONE_AGENT}{agents}").replacen(
        "[profiles.default]\n",
        &format!("[profiles.default]\n{access}\n"),
        1,
    )
}

#[test]
fn workspaces_are_private_by_default_and_drift_is_repaired_but_never_on_a_workdir() {
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::new();
    let mycode = home.path().join("mycode");
    std::fs::create_dir(&mycode).unwrap();
    std::fs::set_permissions(&mycode, std::fs::Permissions::from_mode(0o755)).unwrap();
    home.write_config(&with_workdir(""));
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let a = home.path().join(".cloudagent/agents/agent_a");
    assert_eq!(modes(&a), expected(0o700, 0o600));
    assert_eq!(
        support::mode(&mycode),
        0o755,
        "a declared workdir was chmod'ed"
    );
    assert_eq!(support::mode(&home.path().join("newcode")), 0o700);

    // Drift on what apply manages is shown and repaired; the workdir stays.
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(a.join("MEMORY.md"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let newcode = home.path().join("newcode");
    std::fs::set_permissions(&newcode, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = home.cmd().arg("plan").output().unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("~ mode ~/.cloudagent/agents/agent_a 0755 -> 0700")
            && text.contains("~ mode ~/.cloudagent/agents/agent_a/MEMORY.md 0644 -> 0600")
            && text.contains("Plan: 0 to add, 1 to change, 0 to remove."),
        "{text}"
    );
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(modes(&a), expected(0o700, 0o600));
    assert_eq!(support::mode(&mycode), 0o755);
    assert_eq!(support::mode(&newcode), 0o750);

    // Shared: today's modes, and the switch is a repair.
    home.write_config(&with_workdir("workspace_access = \"shared\""));
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(modes(&a), expected(0o755, 0o644));
    assert_eq!(support::mode(&newcode), 0o750);
    let out = home.cmd().arg("apply").output().unwrap();
    assert_eq!(
        stdout(&out),
        "No changes. The machine matches the configuration.\n"
    );
}

async fn server_agents_get(access: &str, dir: u32, file: u32) {
    use serde_json::json;
    use support::fake_backend::{deliver, frame, frame_type};
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    let cfg = DaemonConfig::new(&backend.url(), &[]).render(&home);
    home.write_config(&cfg.replacen(
        "[profiles.default]\n",
        &format!("[profiles.default]\n{access}\n"),
        1,
    ));
    let _d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(frame(
        "assign",
        json!({"agent_id": "agent_srv", "agent_name": "Boss"}),
    ))
    .await;
    conn.send(deliver(1, "agent_srv", "m1", "x")).await;
    conn.send(deliver(2, "agent_lazy", "m2", "y")).await;
    backend
        .wait_for_frames(T, "two final statuses", |f| {
            f.iter()
                .filter(|(_, f)| {
                    frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
                })
                .count()
                == 2
        })
        .await;
    for agent in ["agent_srv", "agent_lazy"] {
        let a = home.path().join(".cloudagent/agents").join(agent);
        assert_eq!(modes(&a), expected(dir, file), "{agent} ({access:?})");
        // The daemon writes the same one-argument --agent-id as apply.
        let mcp = std::fs::read_to_string(a.join(".meta/claude-mcp-config.json")).unwrap();
        assert!(mcp.contains(&format!("\"--agent-id={agent}\"")), "{mcp}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workspaces_the_daemon_creates_are_private_by_default() {
    server_agents_get("", 0o700, 0o600).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workspaces_the_daemon_creates_follow_a_shared_profile() {
    server_agents_get("workspace_access = \"shared\"", 0o755, 0o644).await;
}

// ---- Limits for later enforcement: validated with the key and the file ----

fn limits_config(server_extra: &str, profile_extra: &str) -> String {
    format!(
        "[servers.prod]\nurl = \"https://api.cloudagent.chat\"\n{server_extra}\n\n[profiles.default]\nserver = \"prod\"\napi_key_file = \"~/k\"\n{profile_extra}\n"
    )
}

#[test]
fn limits_out_of_range_are_errors_naming_the_key_and_the_file() {
    let home = TestHome::new();
    for (server, profile, expected) in [
        (
            "",
            "max_server_agents = 10001",
            ":8:21: profiles.default.max_server_agents: must be between 0 and 10000, got 10001",
        ),
        (
            "",
            "max_server_agents = -1",
            ":8:21: profiles.default.max_server_agents: invalid value: integer `-1`, expected u32",
        ),
        (
            "max_frame_mib = 0",
            "",
            ":3:17: servers.prod.max_frame_mib: must be between 1 and 1024, got 0",
        ),
        (
            "max_frame_mib = 1025",
            "",
            ":3:17: servers.prod.max_frame_mib: must be between 1 and 1024, got 1025",
        ),
        (
            "",
            "allowed_workdirs = [\"~/code\", \"code/agents\"]",
            ":8:20: profiles.default.allowed_workdirs: entry 2 must be an absolute path or start with ~/, got \"code/agents\"",
        ),
    ] {
        let cfg = home.write_config(&limits_config(server, profile));
        let out = home.cmd().arg("plan").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{server}{profile}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}{expected}", cfg.display())),
            "{expected} in:\n{err}"
        );
    }
    for (server, profile) in [
        ("max_frame_mib = 1", "max_server_agents = 0"),
        (
            "max_frame_mib = 1024",
            "max_server_agents = 10000\nallowed_workdirs = [\"~/code\", \"/srv/agents\"]",
        ),
        ("", "allowed_workdirs = []"),
    ] {
        home.write_config(&limits_config(server, profile));
        let out = home.cmd().arg("plan").output().unwrap();
        assert!(out.status.success(), "{server} {profile}: {}", stderr(&out));
    }
}

// ---- The bridge's argv survives any valid agent id ----

/// Agent ids may start with `-` (A-Z a-z 0-9 _ - ., not a leading dot): as
/// a separate argument clap would take `-lead` for an option.
#[test]
fn an_agent_id_starting_with_a_dash_reaches_the_bridge() {
    use std::io::{BufRead, Write};
    let home = TestHome::new();
    home.write_config(&format!("{ONE_AGENT}\n[profiles.default.agents.-lead]\n"));
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config = home
        .path()
        .join(".cloudagent/agents/-lead/.meta/claude-mcp-config.json");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
    let server = &config["mcpServers"]["cloudagent"];
    let token = home
        .path()
        .join(".cloudagent/agents/-lead/.meta/claude-token.txt");
    assert_eq!(
        server["args"],
        serde_json::json!([
            "mcp-bridge",
            "--agent-id=-lead",
            format!("--token-file={}", token.display()),
            "--profile=default"
        ])
    );

    // Started exactly as claude starts it, it answers initialize.
    let args: Vec<String> = server["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut bridge = home
        .std_cmd()
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let mut stdin = bridge.stdin.take().unwrap();
    writeln!(stdin, "{init}").unwrap();
    let stdout = bridge.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(T).unwrap_or_default();
    drop(stdin);
    let _ = bridge.kill();
    let out = bridge.wait_with_output().unwrap();
    let reply: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("no answer: {line:?}; stderr: {}", stderr(&out)));
    assert_eq!(
        reply["result"]["serverInfo"]["name"], "cloudagent-bridge--lead",
        "{reply}"
    );
}
