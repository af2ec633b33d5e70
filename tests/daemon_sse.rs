//! The real daemon binary over the SSE + POST transport (docs/PROTOCOL.md,
//! "SSE + POST") against a fake backend on 127.0.0.1:0, and `auto`
//! choosing between WebSocket and SSE.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestHome;
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::deliver;
use support::fake_claude::{Behaviour, FakeClaude, init, result_success};
use support::fake_sse::{FakeSse, Post};

const T: Duration = Duration::from_secs(15);
const ACK: &str = "/v1/daemon/delivery-ack";
const STATUS: &str = "/v1/daemon/agent-status";

struct Setup {
    home: TestHome,
    backend: FakeSse,
    claude: FakeClaude,
}

async fn setup(transport: &str) -> Setup {
    let home = TestHome::new();
    let backend = FakeSse::start().await;
    let claude = FakeClaude::install(&home.bin_dir());
    let mut cfg = DaemonConfig::new(&backend.url(), &["agent_a"]);
    cfg.transport = transport.to_string();
    home.write_config(&cfg.render(&home));
    Setup {
        home,
        backend,
        claude,
    }
}

fn acks(backend: &FakeSse) -> Vec<String> {
    backend
        .accepted(ACK)
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["message_id"].as_str().unwrap_or("?"),
                a["status"]
            )
        })
        .collect()
}

fn count(posts: &[Post], path: &str) -> usize {
    posts.iter().filter(|p| p.path == path).count()
}

fn final_status(posts: &[Post]) -> bool {
    posts
        .iter()
        .any(|p| p.path == STATUS && p.status == 200 && p.body["status"] != "running")
}

/// `/ready` carries our `ready` payload, the stream resumes from 0, a
/// deliver split across TCP reads with its JSON over two `data:` lines and
/// a `:hb` comment in between is acked by a payload-only POST after it was
/// recorded, and the wake's statuses are POSTed.
#[tokio::test(flavor = "multi_thread")]
async fn handshake_deliver_ack_and_statuses_over_sse() {
    let s = setup("sse").await;
    s.claude.script(
        1,
        Behaviour::new().events(&[init("sid-1"), result_success("sid-1", "done")]),
    );
    let _d = Daemon::start(&s.home, FAST_TIMING);
    let stream = s.backend.next_stream(T).await;
    assert_eq!(stream.last_event_id.as_deref(), Some("0"));
    let ready = &s.backend.posts()[0];
    assert_eq!(ready.path, "/v1/daemon/ready");
    assert!(ready.body["daemon_ver"].is_string(), "{:?}", ready.body);
    assert!(
        ready.body.get("type").is_none(),
        "payload only: {:?}",
        ready.body
    );

    let frame = deliver(1, "agent_a", "m1", "hello").to_string();
    // Two data lines, split between JSON tokens (joined with a newline,
    // which JSON reads as whitespace); the TCP writes split elsewhere.
    let (a, b) = frame.split_at(frame.find(",\"payload\"").unwrap());
    stream.write(b":hb\n\nevent: deliver\nid: 1\ndata: ").await;
    stream.write(a.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write(format!("\ndata: {b}\n\n").as_bytes()).await;

    s.backend
        .wait_posts(T, "a final status", final_status)
        .await;
    let ack = &s.backend.accepted(ACK)[0];
    assert_eq!(
        ack.to_string(),
        r#"{"message_id":"m1","status":"received","seq":1}"#
    );
    assert_eq!(acks(&s.backend)[..2], ["m1:\"received\"", "m1:\"started\""]);
    let statuses: Vec<Value> = s.backend.accepted(STATUS);
    assert_eq!(
        statuses[0],
        json!({"agent_id": "agent_a", "status": "running"})
    );
    assert_eq!(statuses.last().unwrap()["status"], "idle");
}

/// A stream that goes silent is dropped by the watchdog and reopened with
/// `Last-Event-ID` = the last accepted seq; `:hb` comments keep it open.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_stream_is_reopened_from_the_last_seq_and_comments_keep_it_alive() {
    let s = setup("sse").await;
    let timing = format!("{FAST_TIMING},watchdog_ms=1500");
    let _d = Daemon::start(&s.home, &timing);
    let stream = s.backend.next_stream(T).await;
    stream
        .event("deliver", Some(4), &deliver(4, "agent_a", "m4", "x"))
        .await;
    s.backend
        .wait_posts(T, "the ack of seq 4", |p| count(p, ACK) >= 1)
        .await;
    // Comments for twice the watchdog: no reconnect.
    for _ in 0..10 {
        stream.write(b":hb\n\n").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(count(&s.backend.posts(), "/v1/daemon/ready"), 1);
    // Silence: the watchdog ends the stream, the daemon comes back.
    let again = s.backend.next_stream(T).await;
    assert_eq!(again.last_event_id.as_deref(), Some("4"));
    drop(stream);
}

/// A 404 on `/ready` is retried (with backoff), not fatal.
#[tokio::test(flavor = "multi_thread")]
async fn ready_404_then_200_is_retried() {
    let s = setup("sse").await;
    s.backend.fail_ready(404);
    s.backend.set_last_acked_seq(9);
    let _d = Daemon::start(&s.home, FAST_TIMING);
    let stream = s.backend.next_stream(T).await;
    let readies: Vec<u16> = s
        .backend
        .posts()
        .iter()
        .filter(|p| p.path == "/v1/daemon/ready")
        .map(|p| p.status)
        .collect();
    assert_eq!(readies, [404, 200]);
    // last_seq = max(ours, the server's last_acked_seq).
    assert_eq!(stream.last_event_id.as_deref(), Some("9"));
}

/// An ack POST answered 500 is retried before anything behind it: no ack
/// is lost and the order holds, while later frames keep being received.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_ack_post_is_retried_in_order() {
    let s = setup("sse").await;
    s.backend.fail_post(ACK, 500);
    let _d = Daemon::start(&s.home, FAST_TIMING);
    let stream = s.backend.next_stream(T).await;
    stream
        .event("deliver", Some(1), &deliver(1, "agent_a", "m1", "a"))
        .await;
    stream
        .event("deliver", Some(2), &deliver(2, "agent_a", "m2", "b"))
        .await;
    s.backend
        .wait_posts(T, "both received acks", |p| {
            p.iter()
                .filter(|p| p.path == ACK && p.status == 200 && p.body["status"] == "received")
                .count()
                == 2
        })
        .await;
    let posts = s.backend.posts();
    let first = posts.iter().find(|p| p.path == ACK).unwrap();
    assert_eq!(first.status, 500);
    assert_eq!(first.body["message_id"], "m1");
    let received: Vec<String> = acks(&s.backend)
        .into_iter()
        .filter(|a| a.ends_with("\"received\""))
        .collect();
    assert_eq!(received, ["m1:\"received\"", "m2:\"received\""]);
}

/// `auto`: the WebSocket upgrade answered 404 → SSE, said in the log.
#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_sse_when_the_upgrade_gets_404() {
    let s = setup("auto").await;
    let d = Daemon::start(&s.home, FAST_TIMING);
    let _stream = s.backend.next_stream(T).await;
    assert_eq!(s.backend.ws_attempts(), 1);
    let deadline = std::time::Instant::now() + T;
    loop {
        let log = d.output(&s.home);
        if log.contains("transport: sse (auto:") {
            assert!(log.contains("HTTP 404"), "{log}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The daemon exits non-zero saying the key was refused, as over WebSocket.
fn stops_with_the_key_message(home: &TestHome) {
    let mut d = Daemon::start(home, FAST_TIMING);
    let status = d.wait_exit(T).expect("the daemon should stop on 401");
    assert!(!status.success());
    assert!(
        d.output(home)
            .contains("rejected the machine API key (HTTP 401)"),
        "{}",
        d.output(home)
    );
}

/// `auto`: a 401 on the upgrade is terminal; SSE is not tried.
#[tokio::test(flavor = "multi_thread")]
async fn auto_stops_on_401_without_trying_sse() {
    let s = setup("auto").await;
    s.backend.set_ws_status(401);
    stops_with_the_key_message(&s.home);
    assert_eq!(s.backend.posts().len(), 0, "{:?}", s.backend.posts());
}

/// Over SSE a 401 on `/ready` is terminal with the same message as over
/// WebSocket.
#[tokio::test(flavor = "multi_thread")]
async fn sse_401_on_ready_is_terminal() {
    let s = setup("sse").await;
    s.backend.fail_ready(401);
    stops_with_the_key_message(&s.home);
}

/// Heartbeats are POSTed `{}` while connected.
#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_are_posted() {
    let s = setup("sse").await;
    let _d = Daemon::start(&s.home, &format!("{FAST_TIMING},heartbeat_ms=200"));
    let _stream = s.backend.next_stream(T).await;
    s.backend
        .wait_posts(T, "two heartbeats", |p| {
            count(p, "/v1/daemon/heartbeat") >= 2
        })
        .await;
    let hb = s.backend.accepted("/v1/daemon/heartbeat");
    assert_eq!(hb[0], json!({}));
}

/// While claude streams text over SSE, the accumulated text is POSTed to
/// publish-partial (PROTOCOL §2.7: "Hel", then "Hello!"), for a message
/// with a business session; the last one carries all of it.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_text_is_published_as_it_grows() {
    use support::fake_claude::text_delta;
    let s = setup("sse").await;
    s.claude.script(
        1,
        Behaviour::new().events(&[
            init("sid-p"),
            text_delta("sid-p", "Hel"),
            text_delta("sid-p", "lo!"),
            result_success("sid-p", "Hello!"),
        ]),
    );
    let _d = Daemon::start(&s.home, FAST_TIMING);
    let stream = s.backend.next_stream(T).await;
    stream
        .event("deliver", Some(1), &deliver(1, "agent_a", "m1", "hi"))
        .await;
    s.backend
        .wait_posts(T, "a final status", final_status)
        .await;
    let partials = s.backend.accepted("/v1/daemon/publish-partial");
    let last = partials.last().expect("at least one partial text");
    assert_eq!(
        last,
        &json!({"session_id": "sess_1", "agent_id": "agent_a", "body": "Hello!"})
    );
    for p in &partials {
        let body = p["body"].as_str().unwrap();
        assert!(
            "Hello!".starts_with(body) && !body.is_empty(),
            "{partials:?}"
        );
    }
}

/// `--transport` on `start` holds for the whole run: a reload of the
/// config file (which says `ws`) does not switch the daemon back.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_lines_transport_survives_a_reload() {
    let s = setup("ws").await;
    let _d = Daemon::start_with(&s.home, FAST_TIMING, &["--transport", "sse"]);
    let _stream = s.backend.next_stream(T).await;
    let cfg = s.home.path().join(".config/cloudagent/cloudagent.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let tmp = cfg.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}\n[profiles.default.agents.agent_b]\n")).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    let agent_b = s
        .home
        .path()
        .join(".cloudagent/agents/agent_b/.meta/identity.json");
    let deadline = std::time::Instant::now() + T;
    while !agent_b.is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.backend.ws_attempts(),
        0,
        "no WebSocket attempt after the reload"
    );
}
