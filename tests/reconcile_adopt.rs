//! apply and an install of the original (Python) daemon (README "What
//! apply manages"): a unit its `install-service` wrote (key inline) is
//! adopted, replaced by ours and recorded as ours, never shown with its
//! key; a foreign unit of anyone else is still left alone; every existing
//! workspace's MCP config, server-assigned or left by the original, is
//! rewritten to start this binary by absolute path, and nothing else of
//! those workspaces moves. Real binary, temporary HOME, fake systemctl
//! and launchctl.

mod support;

use std::fs;

use support::{TestHome, stderr, stdout};

const KEY: &str = "sk_machine_0riginalInlineKey42";

const CONFIG: &str = r#"
[servers.prod]
url = "https://api.cloudagent.chat"

[profiles.default]
server = "prod"
api_key_file = "~/.config/cloudagent/prod.key"

[profiles.default.agents.agent_a]
name = "Alpha"

[profiles.default.service]
"#;

/// PROTOCOL §8.1's text, as `install-service --server-url … --api-key …`
/// writes it.
fn original_systemd_unit(home: &TestHome) -> String {
    format!(
        "[Unit]\nDescription=cloudagent local daemon\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=simple\nExecStart={h}/.local/bin/cloudagent-daemon start --server-url https://api.cloudagent.chat --api-key {KEY}\nRestart=always\nRestartSec=5\nEnvironment=NO_PROXY=*\nEnvironment=PATH={h}/.local/bin:/usr/bin:/bin\nEnvironment=PYTHONUNBUFFERED=1\n\n[Install]\nWantedBy=default.target\n",
        h = home.path().display()
    )
}

fn original_plist(home: &TestHome) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTD/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n    <key>Label</key>\n    <string>chat.cloudagent.daemon</string>\n    <key>ProgramArguments</key>\n    <array>\n        <string>{h}/.local/bin/cloudagent-daemon</string>\n        <string>start</string>\n        <string>--server-url</string>\n        <string>https://api.cloudagent.chat</string>\n        <string>--api-key</string>\n        <string>{KEY}</string>\n    </array>\n    <key>RunAtLoad</key>\n    <true/>\n    <key>EnvironmentVariables</key>\n    <dict>\n        <key>PYTHONUNBUFFERED</key>\n        <string>1</string>\n    </dict>\n</dict>\n</plist>\n",
        h = home.path().display()
    )
}

fn setup() -> TestHome {
    let home = TestHome::new();
    home.write_config(CONFIG);
    fs::write(
        home.path().join(".config/cloudagent/prod.key"),
        "sk_machine_fromTheKeyFile\n",
    )
    .unwrap();
    home
}

fn inventory(home: &TestHome) -> serde_json::Value {
    let text = fs::read_to_string(home.path().join(".cloudagent/daemon/inventory.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_original_systemd_unit_is_adopted_without_showing_its_key() {
    let home = setup();
    home.fake_systemctl(0, "");
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon.service");
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    fs::write(&unit, original_systemd_unit(&home)).unwrap();

    let plan = home.cmd().arg("plan").output().unwrap();
    let text = stdout(&plan);
    assert!(
        text.contains(
            "Note: service \"default\": adopting ~/.config/systemd/user/cloudagent-daemon.service"
        ),
        "{text}"
    );
    assert!(
        text.contains("~ adopt ~/.config/systemd/user/cloudagent-daemon.service"),
        "{text}"
    );
    assert!(text.contains("--api-key (sensitive)"), "{text}");
    let json = home.cmd().args(["plan", "--json"]).output().unwrap();
    for out in [&plan, &json] {
        let all = format!("{}{}", stdout(out), stderr(out));
        assert!(
            !all.contains("0riginalInlineKey42"),
            "the key was shown:\n{all}"
        );
    }

    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("0riginalInlineKey42"));
    let now = fs::read_to_string(&unit).unwrap();
    assert!(
        now.contains(&format!(
            "ExecStart={} start --profile default --config",
            support::BIN
        )),
        "{now}"
    );
    assert!(!now.contains("sk_machine_"), "{now}");
    assert_eq!(
        home.systemctl_calls(),
        [
            "--user daemon-reload",
            "--user enable cloudagent-daemon.service",
            "--user restart cloudagent-daemon.service"
        ]
    );
    let inv = inventory(&home);
    assert_eq!(
        inv["service"]["adopted_from"],
        "the original cloudagent-daemon's install-service"
    );

    let again = home.cmd().arg("apply").output().unwrap();
    assert_eq!(
        stdout(&again),
        "No changes. The machine matches the configuration.\n"
    );
    assert_eq!(
        inventory(&home)["service"]["adopted_from"],
        inv["service"]["adopted_from"]
    );
}

#[test]
fn the_original_launchd_agent_is_adopted() {
    let home = setup();
    home.fake_bin(
        "launchctl",
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}/launchctl.log'\n",
            home.path().display()
        ),
    );
    let plist = home
        .path()
        .join("Library/LaunchAgents/chat.cloudagent.daemon.plist");
    fs::create_dir_all(plist.parent().unwrap()).unwrap();
    fs::write(&plist, original_plist(&home)).unwrap();
    let out = home
        .cmd()
        .arg("apply")
        .env("CLOUDAGENT_SERVICE_PLATFORM", "launchd")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("adopting ~/Library/LaunchAgents/chat.cloudagent.daemon.plist"),
        "{text}"
    );
    assert!(!text.contains("0riginalInlineKey42"), "{text}");
    let now = fs::read_to_string(&plist).unwrap();
    assert!(
        now.contains("<string>--config</string>") && !now.contains("sk_machine_"),
        "{now}"
    );
    let calls = fs::read_to_string(home.path().join("launchctl.log")).unwrap();
    assert!(calls.contains("bootstrap"), "{calls}");
}

#[test]
fn a_unit_of_someone_else_is_still_left_alone() {
    let home = setup();
    home.fake_systemctl(0, "");
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon.service");
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    let mine = "[Service]\nExecStart=/usr/bin/my-wrapper start\n";
    fs::write(&unit, mine).unwrap();
    let out = home.cmd().arg("apply").output().unwrap();
    assert!(
        stdout(&out).contains("managed elsewhere"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fs::read_to_string(&unit).unwrap(), mine);
}

/// Every existing workspace's MCP config, declared or not, ends up starting
/// this binary; the workspaces' files stay where they are, unchanged.
#[test]
fn undeclared_workspaces_get_an_mcp_config_naming_this_binary_and_keep_their_data() {
    let home = TestHome::new();
    home.write_config(&CONFIG.replace("\n[profiles.default.service]\n", ""));
    let agents = home.path().join(".cloudagent/agents");
    let daemon = home.path().join(".cloudagent/daemon");
    fs::create_dir_all(&daemon).unwrap();
    fs::write(daemon.join("assigned-agents.json"), r#"["agent_srv"]"#).unwrap();
    let bare = r#"{"mcpServers": {"cloudagent": {"command": "cloudagent-daemon", "args": ["mcp-bridge", "--agent-id", "X"]}}}"#;
    for id in ["agent_srv", "agent_old"] {
        let meta = agents.join(id).join(".meta");
        fs::create_dir_all(&meta).unwrap();
        fs::write(meta.join("claude-mcp-config.json"), bare.replace('X', id)).unwrap();
        fs::write(
            agents.join(id).join("MEMORY.md"),
            format!("memory of {id}\n"),
        )
        .unwrap();
        fs::create_dir_all(agents.join(id).join("workspace")).unwrap();
        fs::write(agents.join(id).join("workspace/data.txt"), "data\n").unwrap();
    }
    // A workspace without .meta/ and the archive are not workspaces to fix.
    fs::create_dir_all(agents.join("not_a_workspace")).unwrap();

    let out = home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("~ agent \"default/agent_srv\""), "{text}");
    assert!(text.contains("~ agent \"default/agent_old\""), "{text}");
    for id in ["agent_srv", "agent_old", "agent_a"] {
        let cfg: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(agents.join(id).join(".meta/claude-mcp-config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            cfg["mcpServers"]["cloudagent"]["command"],
            support::BIN,
            "{id}"
        );
        assert_eq!(
            cfg["mcpServers"]["cloudagent"]["args"][1],
            format!("--agent-id={id}")
        );
    }
    for id in ["agent_srv", "agent_old"] {
        assert_eq!(
            fs::read_to_string(agents.join(id).join("MEMORY.md")).unwrap(),
            format!("memory of {id}\n")
        );
        assert_eq!(
            fs::read_to_string(agents.join(id).join("workspace/data.txt")).unwrap(),
            "data\n"
        );
    }
    assert!(!agents.join("not_a_workspace/.meta").exists());
    assert!(!agents.join(".archive").exists(), "nothing was archived");
    let inv = inventory(&home);
    assert_eq!(
        inv["agents"],
        serde_json::json!(["agent_a"]),
        "undeclared workspaces are not taken over"
    );

    let again = home.cmd().arg("apply").output().unwrap();
    assert!(
        stdout(&again).ends_with("\nNo changes. The machine matches the configuration.\n"),
        "{}",
        stdout(&again)
    );
}
