//! Where the backend may make claude run (SECURITY.md, "Working
//! directories"): an `assign`'s `workspace_root` and an override file left
//! by the original are checked; refused ones create nothing, are logged
//! once and shown by `status`, and the agent runs in its default workspace.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::DaemonConfig;
use support::fake_backend::{deliver, frame, frame_type};
use support::scenario::{Connected, Scenario};

const T: Duration = Duration::from_secs(15);

type Setup = Connected;

async fn setup(extra: &str) -> Setup {
    setup_with(|cfg| cfg.extra = extra.to_string()).await
}

/// With `lines` added to the profile's section.
async fn setup_profile(lines: &str) -> Setup {
    let lines = lines.to_string();
    setup_with(move |cfg| cfg.profile_lines = lines).await
}

async fn setup_with(edit: impl FnOnce(&mut DaemonConfig)) -> Setup {
    let s = Scenario::with_config(&[], edit).await;
    s.started().await
}

fn assign(agent: &str, root: &str) -> Value {
    frame(
        "assign",
        json!({"agent_id": agent, "agent_name": agent, "is_chief": false, "workspace_root": root}),
    )
}

impl Setup {
    fn default_cwd(&self, agent: &str) -> PathBuf {
        self.home
            .path()
            .join(format!(".cloudagent/agents/{agent}/workspace"))
    }

    async fn run_one(&mut self, seq: i64, agent: &str) -> PathBuf {
        self.conn
            .send(deliver(seq, agent, &format!("m{seq}"), "x"))
            .await;
        let n = seq as usize;
        self.claude.wait_for_calls(n, T).await;
        self.backend
            .wait_for_frame(T, |f| {
                frame_type(f) == "agent_status"
                    && f["payload"]["agent_id"] == agent
                    && f["payload"]["status"] != "running"
            })
            .await;
        self.claude.call(n).unwrap().cwd
    }

    fn status(&self) -> Value {
        let out = self.home.cmd().args(["status", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn assigned_workdirs_outside_the_policy_are_refused_and_create_nothing() {
    let mut s = setup("").await;
    let cwd = std::env::current_dir().unwrap();
    let rel = format!("rel-workdir-{}", std::process::id());
    let home = s.home.path().to_path_buf();
    let cases = [
        ("agent_a", "~".to_string(), "home directory itself"),
        (
            "agent_b",
            format!("{}/x/../escaped", home.display()),
            "`..`",
        ),
        ("agent_c", format!("{rel}/x"), "not an absolute path"),
        ("agent_d", "/".to_string(), "root directory"),
        ("agent_e", "~/.cloudagent/evil".to_string(), "own directory"),
        (
            "agent_f",
            home.display().to_string(),
            "home directory itself",
        ),
    ];
    for (i, (agent, root, why)) in cases.iter().enumerate() {
        s.conn.send(assign(agent, root)).await;
        let ran_in = s.run_one(i as i64 + 1, agent).await;
        assert_eq!(
            ran_in,
            s.default_cwd(agent).canonicalize().unwrap(),
            "{root}"
        );
        let status = s.status();
        let refused = status["refused"][agent].as_str().unwrap_or_default();
        assert!(
            refused.contains(why),
            "{agent}: {refused:?} should say {why}"
        );
    }
    assert!(!cwd.join(&rel).exists());
    assert!(!home.join("escaped").exists());
    assert!(!home.join(".cloudagent/evil").exists());
    for agent in ["agent_a", "agent_f"] {
        let meta = home.join(format!(".cloudagent/agents/{agent}/.meta"));
        assert!(!meta.join("agent_workspace_root").exists());
    }

    // Logged once per refusal, not per message.
    s.conn.send(assign("agent_d", "/")).await;
    s.run_one(7, "agent_d").await;
    let log = s.daemon.output(&s.home);
    assert_eq!(
        log.matches("working directory \"/\" from").count(),
        1,
        "{log}"
    );

    // An allowed directory clears the refusal and is used.
    let good = home.join("projects/d");
    s.conn.send(assign("agent_d", good.to_str().unwrap())).await;
    assert_eq!(s.run_one(8, "agent_d").await, good.canonicalize().unwrap());
    assert!(s.status()["refused"].get("agent_d").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_override_file_left_by_the_original_is_checked_too() {
    let mut s = setup("").await;
    let meta = s.home.path().join(".cloudagent/agents/agent_o/.meta");
    s.conn.send(assign("agent_o", "~/projects/o")).await;
    s.run_one(1, "agent_o").await;
    std::fs::write(meta.join("agent_workspace_root"), "/\n").unwrap();
    let ran_in = s.run_one(2, "agent_o").await;
    assert_eq!(ran_in, s.default_cwd("agent_o").canonicalize().unwrap());
    let refused = s.status()["refused"]["agent_o"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(refused.contains("agent_workspace_root"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_workdirs_restrict_what_the_server_may_choose() {
    let extra = "allowed_workdirs = [\"~/code\"]\n";
    let mut s = setup_profile(extra).await;
    let home = s.home.path().to_path_buf();
    s.conn.send(assign("agent_a", "~/elsewhere/a")).await;
    assert_eq!(
        s.run_one(1, "agent_a").await,
        s.default_cwd("agent_a").canonicalize().unwrap()
    );
    let refused = s.status()["refused"]["agent_a"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(refused.contains("allowed_workdirs"), "{refused}");
    assert!(!home.join("elsewhere").exists());
    s.conn.send(assign("agent_b", "~/code/b")).await;
    assert_eq!(
        s.run_one(2, "agent_b").await,
        home.join("code/b").canonicalize().unwrap()
    );
}

/// The backend cannot fill the disk with workspaces: past the profile's
/// `max_server_agents`, no new one is created (a deliver for such an agent
/// is reported crashed with the reason); existing ones keep working.
#[tokio::test(flavor = "multi_thread")]
async fn server_created_agents_are_capped() {
    let mut s = setup_profile("max_server_agents = 2\n").await;
    let agents = s.home.path().join(".cloudagent/agents");
    s.conn.send(assign("agent_1", "~/code/1")).await;
    s.run_one(1, "agent_1").await;
    s.conn.send(deliver(2, "agent_2", "m2", "x")).await;
    s.claude.wait_for_calls(2, T).await;
    s.conn.send(assign("agent_3", "~/code/3")).await;
    s.conn.send(deliver(3, "agent_4", "m3", "x")).await;
    let st = s
        .backend
        .wait_for_frame(T, |f| {
            frame_type(f) == "agent_status"
                && f["payload"]["agent_id"] == "agent_4"
                && f["payload"]["status"] != "running"
        })
        .await;
    assert_eq!(st["payload"]["status"], "crashed");
    assert!(agents.join("agent_1").is_dir() && agents.join("agent_2").is_dir());
    assert!(!agents.join("agent_3").exists() && !agents.join("agent_4").exists());
    assert!(s.daemon.output(&s.home).contains("max_server_agents = 2"));
    assert_eq!(s.claude.calls().len(), 2, "agent_4 never ran claude");
    let refused = s.status()["refused"]["agent_3"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(refused.contains("max_server_agents"), "{refused}");
}
