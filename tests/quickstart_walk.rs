//! The original daemon's README quick start, in its order, against the
//! fake backend: login, agent register, start, status, install-service,
//! list-profiles, stop, uninstall-service (README, "Coming from the Python
//! daemon"). Run with `--nocapture` to see the transcript.

mod support;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{Auth, FakeBackend};
use support::{TestHome, stderr, stdout};

const KEY: &str = "sk_machine_quickstart";
const T: Duration = Duration::from_secs(15);

/// Run one step, print it as a transcript and return its output.
async fn step(home: &TestHome, args: &[&str], input: &str) -> Output {
    let mut cmd = home.std_cmd();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = input.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let shown = |s: String| s.replace(&home.path().display().to_string(), "$HOME");
    println!("$ cloudagent-daemon {}", args.join(" "));
    print!("{}{}", shown(stdout(&out)), shown(stderr(&out)));
    println!("[exit {}]\n", out.status.code().unwrap_or(-1));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_quick_start_works_step_by_step() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    backend.set_auth(Auth::Bearer(KEY.into()));
    home.fake_systemctl(0, "");
    home.fake_bin("loginctl", "#!/bin/sh\necho yes\n");

    // 2. Login (the key pasted when asked; here on stdin).
    let out = step(
        &home,
        &["login", "--server", &backend.url()],
        &format!("{KEY}\n"),
    )
    .await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("Logged in. host_id=host_test profile=default"));
    // login's own connection: hello, ready, closed.
    backend.next_connection(T).await;

    // 3. Register a local agent.
    let out = step(
        &home,
        &[
            "agent",
            "register",
            "--agent-id",
            "agent_01HXX",
            "--name",
            "Frontend",
        ],
        "",
    )
    .await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("✓ Registered agent_01HXX at ~/.cloudagent/agents/agent_01HXX"));

    // 4. Start the daemon (no flags) and check its status.
    println!("$ cloudagent-daemon start &");
    let mut daemon = Daemon::start_with(&home, FAST_TIMING, &[]);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    assert_eq!(
        conn.upgrade.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    println!("[connected to the fake backend]\n");
    let out = step(&home, &["status"], "").await;
    assert!(out.status.success());
    assert!(stdout(&out).contains(&format!("● daemon running (pid={})", daemon.pid())));

    // Running as a service.
    let out = step(&home, &["install-service"], "").await;
    assert!(out.status.success());
    assert!(stdout(&out).contains(
        "✓ Installed linux service unit: ~/.config/systemd/user/cloudagent-daemon.service"
    ));
    assert_eq!(
        home.systemctl_calls(),
        [
            "--user daemon-reload",
            "--user enable cloudagent-daemon.service",
            "--user restart cloudagent-daemon.service"
        ]
    );

    let out = step(&home, &["list-profiles"], "").await;
    assert_eq!(
        stdout(&out),
        format!(
            "● default\n    server:  {}\n    host_id: host_test\n    status:  running pid={}\n",
            backend.url(),
            daemon.pid()
        )
    );

    let out = step(&home, &["stop"], "").await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("✓ daemon stopped cleanly"));
    assert_eq!(daemon.wait_exit(T).and_then(|s| s.code()), Some(0));

    let out = step(&home, &["uninstall-service"], "").await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("✓ Uninstalled linux service (profile='default')"));
    assert!(
        !home
            .path()
            .join(".config/systemd/user/cloudagent-daemon.service")
            .exists()
    );

    // Nothing left for plan to do: the file is the whole truth.
    let out = step(&home, &["plan", "--detailed-exitcode"], "").await;
    assert_eq!(out.status.code(), Some(0));
}
