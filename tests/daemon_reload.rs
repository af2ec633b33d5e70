//! The running daemon follows its config file: edits (atomic renames), a
//! nix-style symlink swap and SIGHUP reload it through the same plan/apply;
//! an invalid file is reported and the last good configuration stays.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestHome;
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::{FakeBackend, deliver, frame_type, hello};
use support::fake_claude::FakeClaude;

const T: Duration = Duration::from_secs(15);

/// Replace a file the way editors and generators do: temp file + rename.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn status(home: &TestHome) -> Value {
    let out = home.cmd().args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_are_applied_live_and_a_bad_file_keeps_the_last_good_one() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    let cfg_path =
        home.write_config(&DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home));
    let _d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    let agents = home.path().join(".cloudagent/agents");

    // Add an agent.
    write_atomically(
        &cfg_path,
        &DaemonConfig::new(&backend.url(), &["agent_a", "agent_b"]).render(&home),
    );
    wait_until("agent_b's workspace", || {
        agents.join("agent_b/.meta/identity.json").is_file()
    })
    .await;
    wait_until("status lists agent_b", || {
        status(&home)["agents"] == serde_json::json!(["agent_a", "agent_b"])
    })
    .await;

    // A broken file: reported, nothing changes, the daemon keeps working.
    let broken = DaemonConfig::new(&backend.url(), &["agent_a"])
        .render(&home)
        .replace("[profiles.default]", "[profiles.default]\nbogus = 1");
    write_atomically(&cfg_path, &broken);
    wait_until("the config error in status", || {
        status(&home)["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("bogus"))
    })
    .await;
    let err = status(&home)["config_error"].as_str().unwrap().to_string();
    assert!(
        err.contains(&cfg_path.display().to_string()) && err.contains("profiles.default.bogus"),
        "{err}"
    );
    assert!(
        agents.join("agent_b").is_dir(),
        "a bad file must not prune anything"
    );
    conn.send(deliver(1, "agent_b", "m1", "still served")).await;
    conn.recv_matching(T, "final status", |f| {
        frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
    })
    .await;

    // Fixed, without agent_b: it is archived, the error is gone.
    write_atomically(
        &cfg_path,
        &DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home),
    );
    wait_until("agent_b archived", || !agents.join("agent_b").exists()).await;
    wait_until("the config error to clear", || {
        status(&home)["config_error"].is_null()
    })
    .await;
    assert_eq!(
        std::fs::read_dir(agents.join(".archive")).unwrap().count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_swap_to_another_server_reconnects_there() {
    let home = TestHome::new();
    let first = FakeBackend::start().await;
    let second = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    // A nix-style setup: the config is a symlink into a "store".
    let store = home.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let (a, b) = (
        store.join("a-cloudagent.toml"),
        store.join("b-cloudagent.toml"),
    );
    std::fs::write(
        &a,
        DaemonConfig::new(&first.url(), &["agent_a"]).render(&home),
    )
    .unwrap();
    std::fs::write(
        &b,
        DaemonConfig::new(&second.url(), &["agent_a"]).render(&home),
    )
    .unwrap();
    let link = home.path().join(".config/cloudagent/cloudagent.toml");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let d = Daemon::start(&home, FAST_TIMING);
    let mut conn = first.next_connection(T).await;
    conn.recv_type("resume", T).await;

    let tmp = link.with_extension("new");
    std::os::unix::fs::symlink(&b, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let mut conn2 = second.next_connection(T).await;
    conn2.recv_type("resume", T).await;
    assert!(conn.closed(T).await, "the old connection is closed");
    assert!(
        status(&home)["server"]
            .as_str()
            .unwrap()
            .starts_with(&second.url())
    );

    // SIGHUP reloads on demand (here: no change, still connected).
    d.signal("HUP");
    wait_until("the reload to be logged", || {
        d.output(&home).contains("SIGHUP: reloading")
    })
    .await;
    assert_eq!(status(&home)["connection"]["state"], "connected");
}

/// A reload that renames `api_key_env` leaves the old variable (holding a
/// key) in the daemon's own environment: neither variable reaches claude
/// (SECURITY.md, "The machine key").
#[tokio::test(flavor = "multi_thread")]
async fn no_key_variable_ever_used_reaches_claude_after_a_rename() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    let render = |var: &str| {
        DaemonConfig::new(&backend.url(), &["agent_a"])
            .render(&home)
            .replace(
                &format!(
                    "api_key_file = \"{}\"",
                    home.path().join(".config/cloudagent/test.key").display()
                ),
                &format!("api_key_env = \"{var}\""),
            )
    };
    let cfg_path = home.write_config(&render("OLD_KEY_VAR"));
    let _d = Daemon::start_with_env(
        &home,
        FAST_TIMING,
        &[
            ("OLD_KEY_VAR", "sk_machine_old"),
            ("NEW_KEY_VAR", "sk_machine_new"),
        ],
    );
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;

    write_atomically(&cfg_path, &render("NEW_KEY_VAR"));
    // The new key means a new connection.
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(deliver(1, "agent_a", "m1", "hi")).await;
    let calls = claude.wait_for_calls(1, T).await;
    let env = &calls[0].env;
    assert!(
        !env.contains_key("OLD_KEY_VAR"),
        "old key variable reached claude"
    );
    assert!(
        !env.contains_key("NEW_KEY_VAR"),
        "new key variable reached claude"
    );
    assert!(env.contains_key("PATH"));
}

/// The key file is watched like the config file: a rotated key (rewritten
/// in place, or renamed over) reconnects with it; a removed key file is an
/// error in `status` while the key read before keeps the connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_file_reconnects_and_a_removed_one_keeps_the_old_key() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    home.write_config(&DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home));
    let key = home.path().join(".config/cloudagent/test.key");
    let _d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    assert_eq!(
        conn.upgrade.authorization.as_deref(),
        Some("Bearer sk_machine_testkey")
    );

    write_atomically(&key, "sk_machine_rotated\n");
    let mut conn2 = backend.next_connection(T).await;
    conn2.recv_type("resume", T).await;
    assert_eq!(
        conn2.upgrade.authorization.as_deref(),
        Some("Bearer sk_machine_rotated")
    );
    assert!(
        conn.closed(T).await,
        "the connection with the old key is closed"
    );

    std::fs::remove_file(&key).unwrap();
    wait_until("the key file error in status", || {
        status(&home)["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("api_key_file") && e.contains("keeps the connection"))
    })
    .await;
    let st = status(&home);
    assert_eq!(st["connection"]["state"], "connected", "{st}");
    assert!(!st.to_string().contains("sk_machine_"), "{st}");
    // Put back as it was: the error goes, no reconnect.
    write_atomically(&key, "sk_machine_rotated\n");
    wait_until("the error cleared", || {
        status(&home)["config_error"].is_null()
    })
    .await;
    assert_eq!(backend.upgrades().len(), 2);
}

/// The profile removed from the file: the daemon does not exit (its unit
/// would restart it in a loop) and does not fall back to the original's
/// config.json; it disconnects, starts no wake, says why in `status`, and
/// reconnects when the profile is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_profile_removed_from_the_file_parks_the_daemon_until_it_is_back() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    let full = DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home);
    let cfg_path = home.write_config(&full);
    // The original's config.json is there too: it must not be used.
    let legacy = home.path().join(".cloudagent/daemon/config.json");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(
        &legacy,
        r#"{"server_url":"http://127.0.0.1:9","machine_api_key":"sk_machine_legacy"}"#,
    )
    .unwrap();
    let mut d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;

    let other = full.replace("[profiles.default", "[profiles.other");
    write_atomically(&cfg_path, &other);
    assert!(conn.closed(T).await, "the connection is closed");
    wait_until("status says parked", || {
        status(&home)["connection"]["state"] == "parked"
    })
    .await;
    let st = status(&home);
    let why = st["connection"]["why"].as_str().unwrap();
    assert!(
        why.contains("gone from") && why.contains("cloudagent.toml"),
        "{why}"
    );
    assert!(
        d.wait_exit(Duration::from_millis(300)).is_none(),
        "still running"
    );
    assert_eq!(backend.upgrades().len(), 1, "no reconnect while parked");

    write_atomically(&cfg_path, &full);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    conn.send(deliver(1, "agent_a", "m1", "back")).await;
    claude.wait_for_calls(1, T).await;
    assert!(
        backend
            .upgrades()
            .iter()
            .all(|u| u.authorization.as_deref() == Some("Bearer sk_machine_testkey")),
        "config.json's key was never used"
    );
}

/// Drift is repaired by the periodic resync, each repair logged as its plan
/// line; a resync that fails is retried, its error shown by `status` until
/// it succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn drift_is_repaired_and_a_failing_resync_is_retried_and_shown() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    home.write_config(&DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home));
    let timing = format!("{FAST_TIMING},resync_ms=300");
    let d = Daemon::start(&home, &timing);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    let agent = home.path().join(".cloudagent/agents/agent_a");
    let identity = agent.join(".meta/identity.json");
    assert!(identity.is_file());

    std::fs::remove_file(&identity).unwrap();
    std::fs::remove_dir_all(agent.join("notes")).unwrap();
    wait_until("the identity restored", || {
        identity.is_file() && agent.join("notes").is_dir()
    })
    .await;
    wait_until("the repair logged", || d.output(&home).contains("resync: ")).await;

    // Something in the way: a file where the notes directory belongs.
    std::fs::remove_dir_all(agent.join("notes")).unwrap();
    std::fs::write(agent.join("notes"), "not a directory").unwrap();
    wait_until("the error in status", || {
        status(&home)["reconcile_error"]
            .as_str()
            .is_some_and(|e| e.contains("notes"))
    })
    .await;
    std::fs::remove_file(agent.join("notes")).unwrap();
    wait_until("repaired and the error cleared", || {
        agent.join("notes").is_dir() && status(&home)["reconcile_error"].is_null()
    })
    .await;

    // The whole workspace deleted: restored, with its identity.
    std::fs::remove_dir_all(&agent).unwrap();
    wait_until("the workspace restored", || {
        identity.is_file() && agent.join("workspace").is_dir()
    })
    .await;
}

/// A reload that lands while the session waits for the server's `hello`
/// (not parked where a one-shot notification would reach it) is not lost:
/// once the handshake goes on, the session sees the new server and goes
/// there.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_during_a_slow_handshake_is_not_lost() {
    let home = TestHome::new();
    let first = FakeBackend::start().await;
    let second = FakeBackend::start().await;
    first.set_send_hello(false);
    let _claude = FakeClaude::install(&home.bin_dir());
    let cfg_path = home.write_config(&DaemonConfig::new(&first.url(), &["agent_a"]).render(&home));
    let d = Daemon::start(&home, FAST_TIMING);
    // Upgraded, no hello yet: the daemon is inside its handshake.
    let mut conn = first.next_connection(T).await;
    write_atomically(
        &cfg_path,
        &DaemonConfig::new(&second.url(), &["agent_a"]).render(&home),
    );
    wait_until("the reload", || {
        d.output(&home).contains("configuration reloaded")
    })
    .await;
    // The slow server finally speaks (the daemon may already have left).
    let _ = conn
        .try_send(hello("host_slow", serde_json::json!([])))
        .await;
    let mut conn2 = second.next_connection(T).await;
    conn2.recv_type("resume", T).await;
    assert!(conn.closed(T).await, "the first connection is closed");
    assert!(
        status(&home)["server"]
            .as_str()
            .unwrap()
            .starts_with(&second.url())
    );
}

/// A key file that is a symlink (a secrets manager or nix swapping it)
/// rotated by replacing the link: the daemon reconnects with the new key.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotated_by_a_symlink_swap_reconnects_with_it() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    home.write_config(&DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home));
    let key = home.path().join(".config/cloudagent/test.key");
    let store = home.path().join("secrets");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("k1"), "sk_machine_testkey\n").unwrap();
    std::fs::write(store.join("k2"), "sk_machine_swapped\n").unwrap();
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(store.join("k1"), &key).unwrap();
    let _d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;

    let tmp = key.with_extension("new");
    std::os::unix::fs::symlink(store.join("k2"), &tmp).unwrap();
    std::fs::rename(&tmp, &key).unwrap();
    let mut conn2 = backend.next_connection(T).await;
    conn2.recv_type("resume", T).await;
    assert_eq!(
        conn2.upgrade.authorization.as_deref(),
        Some("Bearer sk_machine_swapped")
    );
    assert!(conn.closed(T).await, "the old key's connection is closed");
}

/// 50 saves in a burst (a generator rewriting the file) are coalesced: a
/// few reconciles, not 50, and the last content wins.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_writes_is_coalesced() {
    let home = TestHome::new();
    let backend = FakeBackend::start().await;
    let _claude = FakeClaude::install(&home.bin_dir());
    let base = DaemonConfig::new(&backend.url(), &["agent_a"]).render(&home);
    let last = DaemonConfig::new(&backend.url(), &["agent_a", "agent_b"]).render(&home);
    let cfg_path = home.write_config(&base);
    let d = Daemon::start(&home, FAST_TIMING);
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;

    for i in 0..49 {
        write_atomically(&cfg_path, &format!("{base}\n# edit {i}\n"));
    }
    write_atomically(&cfg_path, &last);
    let agents = home.path().join(".cloudagent/agents");
    wait_until("agent_b's workspace", || {
        agents.join("agent_b/.meta/identity.json").is_file()
    })
    .await;
    // Let any late reload land before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reloads = d
        .output(&home)
        .matches("configuration reloaded from")
        .count();
    assert!(
        (1..=10).contains(&reloads),
        "{reloads} reloads for 50 writes"
    );
    assert_eq!(
        status(&home)["agents"],
        serde_json::json!(["agent_a", "agent_b"])
    );
}
