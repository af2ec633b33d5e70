//! Trust boundaries of the daemon's operations (issue 8): no key in any
//! log whatever the level, `stop`/`status` act only on a process proven to
//! be the profile's daemon, the bridge socket never exists with a wider
//! mode, and backend strings cannot forge log lines. Real binary, temporary
//! HOME, the fake backend on 127.0.0.1:0.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{Conn, deliver, frame};
use support::fake_claude::pid_alive;
use support::scenario::Scenario;
use support::{BIN, TestHome, mode, stderr, stdout};

const T: Duration = Duration::from_secs(15);
const KEY: &str = "sk_machine_testkey";

type Setup = Scenario;

async fn setup(daemon_section: &str) -> Setup {
    Scenario::new(&["agent_a"], daemon_section).await
}

fn profile_dir(home: &TestHome) -> PathBuf {
    home.path().join(".cloudagent/daemon")
}

fn logs_dir(home: &TestHome) -> PathBuf {
    profile_dir(home).join("logs")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Everything the daemon wrote: its stdout+stderr file and every log file.
fn everything_written(d: &Daemon, home: &TestHome) -> String {
    let mut all = std::fs::read_to_string(&d.log).unwrap_or_default();
    for f in files_under(&logs_dir(home)) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
    }
    all
}

/// SIGTERM the daemon and wait for its clean exit.
fn stop_daemon(mut d: Daemon) -> Daemon {
    d.signal("TERM");
    let st = d.wait_exit(T).expect("daemon exits on SIGTERM");
    assert!(st.success(), "daemon exit: {st:?}");
    d
}

async fn connected(s: &Setup, env: &[(&str, &str)]) -> (Daemon, Conn) {
    let d = Daemon::start_with_env(&s.home, FAST_TIMING, env);
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    (d, conn)
}

/// Trace level, from the config or from CLOUDAGENT_LOG (also a directive
/// naming the WebSocket library's own module): the upgrade request with
/// its `Authorization: Bearer` header never reaches a log, the transport
/// libraries log nothing below info, and the log directory and files are
/// private even when they existed with wider modes.
#[tokio::test(flavor = "multi_thread")]
async fn trace_logging_never_writes_the_key_and_logs_are_private() {
    let cases: [(&str, &[(&str, &str)]); 2] = [
        ("log_level = \"trace\"\n", &[("CLOUDAGENT_LOG", "")]),
        (
            "",
            &[(
                "CLOUDAGENT_LOG",
                "trace,tungstenite::handshake::client=trace,tokio_tungstenite=trace,rustls=trace",
            )],
        ),
    ];
    for (section, env) in cases {
        let s = setup(section).await;
        let logs = logs_dir(&s.home);
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = logs.join("launchd.err.log");
        std::fs::write(&old, "older lines\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();

        let (d, mut conn) = connected(&s, env).await;
        assert_eq!(
            conn.upgrade.authorization.as_deref(),
            Some("Bearer sk_machine_testkey")
        );
        conn.send(frame("ping", json!({}))).await;
        conn.recv_type("pong", T).await;
        let d = stop_daemon(d);

        let all = everything_written(&d, &s.home);
        assert!(
            all.contains("TRACE") || all.contains("DEBUG"),
            "the daemon logged at a verbose level ({section:?} {env:?}):\n{all}"
        );
        assert!(!all.contains(KEY), "the key was written ({env:?}):\n{all}");
        assert!(
            !all.contains("testkey"),
            "part of the key was written:\n{all}"
        );
        for quiet in ["Client handshake initiated", "Client handshake done"] {
            assert!(
                !all.contains(quiet),
                "tungstenite logged below info ({quiet:?}):\n{all}"
            );
        }
        assert_eq!(mode(&logs), 0o700, "logs/ is private");
        let files = files_under(&logs);
        assert!(
            files.iter().any(|f| f
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("daemon-")),
            "a daemon log file was written: {files:?}"
        );
        for f in files {
            assert_eq!(mode(&f), 0o600, "{} is private", f.display());
        }
    }
}

/// The bridge (started by claude) logs through the same filter and
/// writer: at trace level the MCP library logs every request it receives,
/// and a key quoted in a tool call's arguments is not written.
#[test]
fn bridge_logging_at_trace_writes_no_key() {
    let home = TestHome::new();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "send_message",
            "arguments": {"target": "user", "body": format!("my key is {KEY}")}}}),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = home
        .cmd()
        .args(["mcp-bridge", "--agent-id", "agent_a"])
        .env("CLOUDAGENT_LOG", "trace")
        .env(
            "CLOUDAGENT_DAEMON_SOCKET_PATH",
            home.path().join("none.sock"),
        )
        .write_stdin(input)
        .timeout(T)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("tools/call") || err.contains("CallToolRequest"),
        "the request was logged at trace level: {err}"
    );
    assert!(!err.contains("testkey"), "{err}");
}

fn pid_file(home: &TestHome) -> PathBuf {
    let dir = profile_dir(home);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("daemon.pid")
}

/// A process for `stop` to leave alone; killed by the test (by PID).
struct Victim(Child);

impl Victim {
    fn spawn() -> Self {
        Self(
            Command::new("sleep")
                .arg("300")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none() && pid_alive(self.pid() as i32)
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 4294967295 read as a pid is -1: `kill(-1, …)` signals every process of
/// the user. It is refused with an error naming the file.
#[test]
fn stop_refuses_a_pid_out_of_range() {
    let home = TestHome::new();
    let mut bystander = Victim::spawn();
    let file = pid_file(&home);
    for forged in ["4294967295", "-1", "0", "1", "2147483648"] {
        std::fs::write(&file, forged).unwrap();
        for cmd in ["stop", "status"] {
            let out = home.cmd().arg(cmd).output().unwrap();
            let text = format!("{}{}", stdout(&out), stderr(&out));
            assert_eq!(out.status.code(), Some(1), "{cmd} {forged}: {text}");
            assert!(
                text.contains(&file.display().to_string()) && text.contains(forged),
                "{cmd} {forged}: the error names the file and the pid: {text}"
            );
            assert!(!text.contains("SIGTERM"), "{cmd} {forged}: {text}");
        }
        assert!(file.exists(), "the file is left for the user to inspect");
    }
    assert!(bystander.alive(), "nothing was signalled");
}

/// A stale PID file whose pid now belongs to an unrelated process: `stop`
/// leaves it alone and says no daemon runs; `status` does not call it
/// running.
#[test]
fn stop_and_status_leave_an_unrelated_process_alone() {
    let home = TestHome::new();
    let mut victim = Victim::spawn();
    let file = pid_file(&home);
    std::fs::write(&file, victim.pid().to_string()).unwrap();

    let status = home.cmd().arg("status").output().unwrap();
    assert_eq!(status.status.code(), Some(1), "{}", stdout(&status));
    assert!(
        stdout(&status).contains("stale PID file") && !stdout(&status).contains("running ("),
        "{}",
        stdout(&status)
    );

    let out = home.cmd().arg("stop").output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        victim.alive(),
        "stop signalled an unrelated process: {text}"
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("no daemon is running"), "{text}");
    assert!(!text.contains("SIGTERM"), "{text}");
    assert!(!file.exists(), "the stale PID file is removed");
}

#[test]
fn stop_timeout_is_validated() {
    let home = TestHome::new();
    for bad in ["-1", "nan", "inf", "1e300"] {
        let out = home
            .cmd()
            .args(["stop", &format!("--timeout={bad}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));
    }
}

/// A daemon started from a binary that was replaced on disk since (as by
/// `cargo install` over a running daemon) is still recognised and stopped
/// by the new binary.
#[tokio::test(flavor = "multi_thread")]
async fn stop_works_after_the_binary_was_replaced() {
    let s = setup("").await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cloudagent-daemon");
    std::fs::copy(BIN, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out_file = s.home.path().join("copy.out");
    let out = std::fs::File::create(&out_file).unwrap();
    let mut child = Command::new(&copy)
        .arg("start")
        .env_clear()
        .env("HOME", s.home.path())
        .env("XDG_CONFIG_HOME", s.home.path().join(".config"))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", s.home.bin_dir().display()),
        )
        .env("CLOUDAGENT_DAEMON_TEST_TIMING", FAST_TIMING)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(Some(child.id()));
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    // Replaced the way installers do it: a new file renamed over the old.
    let fresh = dir.path().join(".new");
    std::fs::write(&fresh, b"#!/bin/sh\nexit 0\n").unwrap();
    std::fs::rename(&fresh, &copy).unwrap();

    let stop = s.home.cmd().arg("stop").output().unwrap();
    let text = format!("{}{}", stdout(&stop), stderr(&stop));
    assert_eq!(stop.status.code(), Some(0), "{text}");
    assert!(text.contains("daemon stopped cleanly"), "{text}");
    let st = child.wait().unwrap();
    guard.0 = None;
    assert!(st.success(), "{st:?}");
}

/// Kills the pid with SIGKILL on drop unless cleared.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// A running daemon whose PID file names another process: `stop` stops the
/// daemon (proven by its lock) and leaves the other process alone.
#[tokio::test(flavor = "multi_thread")]
async fn stop_signals_the_daemon_not_the_pid_file() {
    let s = setup("").await;
    let (mut d, _conn) = connected(&s, &[]).await;
    let mut victim = Victim::spawn();
    std::fs::write(pid_file(&s.home), victim.pid().to_string()).unwrap();

    let out = s.home.cmd().arg("stop").output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("sending SIGTERM to pid={}", d.pid())),
        "{text}"
    );
    let st = d.wait_exit(T).expect("the daemon stopped");
    assert!(st.success(), "{st:?}");
    assert!(victim.alive(), "{text}");
}

/// The socket is bound in a private staging directory and renamed into
/// place: it is never created in the profile directory, never chmod-ed
/// there (so it never exists there with a wider mode), and no staging
/// directory is left.
#[tokio::test(flavor = "multi_thread")]
async fn bridge_socket_appears_with_its_final_mode() {
    use notify::{EventKind, RecursiveMode, Watcher};
    let s = setup("").await;
    let dir = profile_dir(&s.home);
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx).unwrap();
    watcher.watch(&dir, RecursiveMode::NonRecursive).unwrap();

    let (d, _conn) = connected(&s, &[]).await;
    let sock = dir.join("bridge.sock");
    assert_eq!(mode(&sock), 0o600);
    // The watcher reports from its own thread: wait for the socket's
    // first event, then for anything that follows it.
    let mut on_socket: Vec<EventKind> = Vec::new();
    let mut wait = T;
    while let Ok(event) = rx.recv_timeout(wait) {
        let event = event.unwrap();
        if event.paths.iter().any(|p| p == &sock) {
            on_socket.push(event.kind);
            wait = Duration::from_millis(300);
        }
    }
    drop(watcher);
    assert!(
        !on_socket.is_empty()
            && on_socket.iter().all(|k| !matches!(
                k,
                EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Metadata(_))
            )),
        "bridge.sock must only be renamed into place: {on_socket:?}"
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".bridge")),
        "no staging directory left: {names:?}"
    );
    let _d = stop_daemon(d);
}

/// Strings from the backend (message ids, agent ids, request ids, frame
/// types, a `bye` reason) are logged escaped: none can start a line of its
/// own.
#[tokio::test(flavor = "multi_thread")]
async fn backend_strings_cannot_forge_log_lines() {
    let s = setup("").await;
    let (d, mut conn) = connected(&s, &[]).await;
    let evil = "\nFAKE LOG LINE";
    conn.send(deliver(1, "agent_a", &format!("m1{evil}"), "hi"))
        .await;
    s.backend
        .wait_for_frame(T, |f| {
            f["type"] == "agent_status" && f["payload"]["status"] != "running"
        })
        .await;
    conn.send(frame(
        "unassign",
        json!({"agent_id": format!("x{evil}"), "reason": evil}),
    ))
    .await;
    conn.send(frame("assign", json!({"agent_id": format!("x{evil}")})))
        .await;
    conn.send(frame(
        "tool_result",
        json!({"request_id": evil, "ok": true}),
    ))
    .await;
    conn.send(frame(&format!("odd{evil}"), json!({}))).await;
    conn.send(frame("bye", json!({"reason": format!("later{evil}")})))
        .await;
    // The bye ends the connection; the daemon reconnects.
    s.backend.next_connection(T).await;
    let d = stop_daemon(d);

    let all = everything_written(&d, &s.home);
    assert!(all.contains("later\\nFAKE LOG LINE"), "bye logged:\n{all}");
    assert!(
        all.contains("m1\\nFAKE LOG LINE"),
        "message id logged:\n{all}"
    );
    let forged: Vec<&str> = all.lines().filter(|l| l.starts_with("FAKE")).collect();
    assert!(forged.is_empty(), "forged lines {forged:?} in:\n{all}");
}
