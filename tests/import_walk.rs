//! Moving an install of the original (Python) daemon over, end to end
//! (README "Coming from the Python daemon"): `import` of a captured install
//! (two profiles' config.json, a unit with the key inline, a workspace
//! whose `.meta/pending-spawn.jsonl` holds one message acked but never
//! run), then `apply` and `start`: the unit is replaced by ours without the
//! key, the workspace's data is intact, and the message runs exactly once.
//! Real binary, temporary HOME, fake backend, fake claude, fake systemctl.

mod support;

use std::fs;
use std::time::Duration;

use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{FakeBackend, frame_type};
use support::fake_claude::FakeClaude;
use support::{TestHome, stderr, stdout};

const T: Duration = Duration::from_secs(15);
const KEY: &str = "sk_machine_0riginalDefault9";

/// The original's files for profiles `default` (server from its unit, key
/// inline) and `fr` (config.json only), and agent_a's workspace.
fn original_install(home: &TestHome, url: &str) -> std::path::PathBuf {
    let daemon = home.path().join(".cloudagent/daemon");
    fs::create_dir_all(daemon.join("profiles/fr")).unwrap();
    let config =
        format!(r#"{{"server_url": "{url}", "machine_api_key": "{KEY}", "host_id": "host_test"}}"#);
    fs::write(daemon.join("config.json"), config).unwrap();
    let fr = format!(
        r#"{{"server_url": "{url}", "machine_api_key": "sk_machine_fr7", "host_id": "host_fr"}}"#
    );
    fs::write(daemon.join("profiles/fr/config.json"), fr).unwrap();
    let unit = home
        .path()
        .join(".config/systemd/user/cloudagent-daemon.service");
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    let text = format!(
        "[Unit]\nDescription=cloudagent local daemon\n\n[Service]\nType=simple\nExecStart={h}/.local/bin/cloudagent-daemon start --server-url {url} --api-key {KEY}\nRestart=always\nRestartSec=5\nEnvironment=PYTHONUNBUFFERED=1\n\n[Install]\nWantedBy=default.target\n",
        h = home.path().display()
    );
    fs::write(&unit, text).unwrap();
    let meta = home.path().join(".cloudagent/agents/agent_a/.meta");
    fs::create_dir_all(&meta).unwrap();
    fs::write(
        meta.join("identity.json"),
        r#"{"agent_id": "agent_a", "agent_name": "Alpha", "is_chief": false, "role": "staff", "workspace_slug": "default", "reports_to": "(unset)"}"#,
    )
    .unwrap();
    fs::write(
        meta.parent().unwrap().join("MEMORY.md"),
        "what agent_a learnt\n",
    )
    .unwrap();
    fs::write(
        meta.join("pending-spawn.jsonl"),
        "{\"event\": \"received\", \"msg_id\": \"m_lost\", \"wake_id\": null, \"ts\": \"2026-11-26T21:33:27+00:00\", \"payload\": {\"agent_id\": \"agent_a\", \"message_id\": \"m_lost\", \"body\": \"run me once\", \"session_id\": \"sess_1\"}}\n",
    )
    .unwrap();
    unit
}

fn run_ok(home: &TestHome, args: &[&str]) -> String {
    let out = home.std_cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn import_apply_start_adopts_the_unit_keeps_the_data_and_runs_the_left_message_once() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    home.fake_systemctl(0, "");
    let unit = original_install(&home, &backend.url());

    let plan = run_ok(&home, &["import"]);
    assert!(!plan.contains(KEY), "{plan}");
    let applied = run_ok(&home, &["apply"]);
    assert!(applied.contains("adopt"), "{applied}");
    let ours = fs::read_to_string(&unit).unwrap();
    assert!(
        !ours.contains(KEY) && !ours.contains("PYTHONUNBUFFERED"),
        "{ours}"
    );
    assert!(ours.contains("--config"), "{ours}");
    assert_eq!(
        fs::read_to_string(home.path().join(".cloudagent/agents/agent_a/MEMORY.md")).unwrap(),
        "what agent_a learnt\n"
    );

    for run in 1..=2 {
        let mut d = Daemon::start(&home, FAST_TIMING);
        let mut conn = backend.next_connection(T).await;
        conn.recv_type("resume", T).await;
        if run == 1 {
            backend
                .wait_for_frame(T, |f| {
                    frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
                })
                .await;
        }
        d.signal("TERM");
        assert!(d.wait_exit(T).expect("exits on SIGTERM").success());
    }
    let prompts: Vec<bool> = claude
        .calls()
        .iter()
        .map(|c| c.stdin.contains("run me once"))
        .collect();
    assert_eq!(prompts, [true], "the left message ran exactly once");
}
