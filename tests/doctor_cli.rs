//! `doctor` through the real binary (README "Commands"): a temporary HOME,
//! the fake backend on 127.0.0.1:0, the fake claude. A good setup exits 0
//! with the live rows taken from the running daemon (no second session);
//! each broken piece (claude missing, key rejected, wrong socket and
//! directory modes, server unreachable) is reported with its fix, exit 1.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;
use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{Auth, Conn};
use support::scenario::Scenario;
use support::{TestHome, stdout};

const T: Duration = Duration::from_secs(15);

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The key file the scenario's config names, made private as a good
/// setup has it.
fn private_key(home: &TestHome) {
    chmod(&home.path().join(".config/cloudagent/test.key"), 0o600);
}

/// `doctor --json`: exit code and the rows by label.
fn doctor(home: &TestHome) -> (i32, Value, String) {
    let out = home.cmd().args(["doctor", "--json"]).output().unwrap();
    let text = stdout(&out);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let text_out = home.cmd().arg("doctor").output().unwrap();
    assert_eq!(text_out.status.code(), out.status.code());
    (out.status.code().unwrap(), v, stdout(&text_out))
}

fn row<'a>(report: &'a Value, label: &str) -> &'a Value {
    report["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == label)
        .unwrap_or_else(|| panic!("no {label} row: {report:#}"))
}

fn assert_row(report: &Value, label: &str, status: &str, contains: &str) {
    let r = row(report, label);
    assert_eq!(r["status"], status, "{label}: {report:#}");
    assert!(
        r["value"].as_str().unwrap().contains(contains),
        "{label} should say {contains:?}: {r}"
    );
    if status == "ALERT" || status == "WARN" {
        assert!(
            r["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{label} has no fix: {r}"
        );
    }
}

/// The daemon, connected (the connection is kept open by the caller).
async fn running(s: &Scenario) -> (Daemon, Conn) {
    let d = Daemon::start(&s.home, FAST_TIMING);
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    (d, conn)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_setup_is_all_ok_from_the_running_daemon() {
    let s = Scenario::new(&["agent_a"], "").await;
    private_key(&s.home);
    let (_d, _conn) = running(&s).await;
    let (code, report, text) = doctor(&s.home);
    assert_eq!(code, 0, "{text}");
    assert_row(&report, "daemon", "OK", "running pid=");
    assert_row(&report, "config", "OK", "cloudagent.toml");
    assert_row(&report, "key", "OK", "mode 0600");
    assert_row(&report, "claude", "OK", "claude");
    assert_row(
        &report,
        "bridge",
        "OK",
        "agent agent_a: cloudagent-bridge-agent_a answered initialize",
    );
    assert_row(&report, "dirs", "OK", "0700");
    assert_row(&report, "socket", "OK", "bridge.sock");
    assert_row(&report, "backend", "OK", "connected since");
    assert!(
        text.contains("--- identity ---") && text.contains("--- health ---"),
        "{text}"
    );
    assert!(!text.contains("testkey"), "{text}");
    // The live figures came from the daemon: doctor opened no session.
    assert_eq!(s.backend.upgrade_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_claude_and_wrong_modes_are_each_reported_with_a_fix() {
    let s = Scenario::new(&["agent_a"], "").await;
    private_key(&s.home);
    let (_d, _conn) = running(&s).await;
    let base = s.home.path().join(".cloudagent/daemon");
    chmod(&base.join("bridge.sock"), 0o666);
    chmod(&base, 0o755);
    std::fs::remove_file(s.home.bin_dir().join("claude")).unwrap();
    let (code, report, _) = doctor(&s.home);
    assert_eq!(code, 1);
    assert_row(&report, "claude", "ALERT", "not found");
    assert_row(&report, "socket", "ALERT", "mode 0666");
    assert_row(&report, "dirs", "ALERT", "mode 0755");
    assert!(
        row(&report, "dirs")["fix"]
            .as_str()
            .unwrap()
            .contains("chmod 700")
    );
    assert_row(&report, "daemon", "OK", "running");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_daemon_a_rejected_key_is_found_by_its_own_handshake() {
    let s = Scenario::new(&["agent_a"], "").await;
    chmod(&s.home.path().join(".config/cloudagent/test.key"), 0o644);
    s.backend.set_auth(Auth::Reject(401));
    let (code, report, text) = doctor(&s.home);
    assert_eq!(code, 1);
    assert_row(&report, "daemon", "ALERT", "not running");
    assert_row(
        &report,
        "backend",
        "ALERT",
        "rejected the machine API key (HTTP 401)",
    );
    assert_row(&report, "key", "ALERT", "mode 0644");
    assert_row(&report, "outbox", "—", "no daemon running");
    assert_eq!(s.backend.upgrade_count(), 2, "one handshake per doctor run");
    assert!(!text.contains("testkey"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_daemon_an_unreachable_server_is_reported() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let s = Scenario::with_config(&["agent_a"], |c| c.server_url = url).await;
    private_key(&s.home);
    let (code, report, _) = doctor(&s.home);
    assert_eq!(code, 1);
    assert_row(&report, "backend", "ALERT", "TCP: cannot connect");
}

/// The service row: the unit against the model (what `plan` would
/// change), then whether systemd runs it.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_row_compares_the_unit_with_the_model_and_asks_systemd() {
    let s = Scenario::with_config(&["agent_a"], |c| {
        c.extra = "\n[profiles.default.service]\n".into();
    })
    .await;
    private_key(&s.home);
    let state = s.home.path().join("unit-state");
    std::fs::write(&state, "inactive\n").unwrap();
    s.home.fake_bin(
        "systemctl",
        &format!(
            "#!/bin/sh\nif [ \"$2\" = is-active ]; then cat '{}'; exit 3; fi\nexit 0\n",
            state.display()
        ),
    );
    let (_, report, _) = doctor(&s.home);
    assert_row(
        &report,
        "service",
        "WARN",
        "differs from the model (apply would create it)",
    );

    let out = s.home.cmd().arg("apply").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_, report, _) = doctor(&s.home);
    assert_row(
        &report,
        "service",
        "WARN",
        "cloudagent-daemon.service is inactive",
    );
    std::fs::write(&state, "active\n").unwrap();
    let (_, report, _) = doctor(&s.home);
    assert_row(
        &report,
        "service",
        "OK",
        "matches the model; cloudagent-daemon.service: active",
    );
}
