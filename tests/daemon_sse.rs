//! What only the SSE + POST transport has (docs/PROTOCOL.md, "SSE +
//! POST"), and `auto` choosing between WebSocket and SSE: the real daemon
//! against the fake backend on 127.0.0.1:0. The scenarios both transports
//! share are in `daemon_scenarios.rs`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::TestHome;
use support::daemon::{Daemon, FAST_TIMING};
use support::fake_backend::{Auth, FakeBackend, Post, deliver, frame_type};
use support::fake_claude::{Behaviour, init, result_success};
use support::scenario::{Scenario, Transport};

const T: Duration = Duration::from_secs(15);
const ACK: &str = "/v1/daemon/delivery-ack";
const READY: &str = "/v1/daemon/ready";

async fn sse(agents: &[&str]) -> Scenario {
    Scenario::over(Transport::Sse, agents, "").await
}

async fn auto() -> Scenario {
    Scenario::with_config(&["agent_a"], |cfg| cfg.transport = "auto".into()).await
}

fn count(posts: &[Post], path: &str) -> usize {
    posts.iter().filter(|p| p.path == path).count()
}

fn is_final(f: &serde_json::Value) -> bool {
    frame_type(f) == "agent_status" && f["payload"]["status"] != "running"
}

/// Message ids of the `received` acks the server took, in order.
fn received(backend: &FakeBackend) -> Vec<String> {
    backend
        .accepted_posts(ACK)
        .iter()
        .filter(|a| a["status"] == "received")
        .map(|a| a["message_id"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A deliver split across TCP reads, its JSON over two `data:` lines
/// (joined with a newline, which JSON reads as whitespace), after a `:hb`
/// comment, is one frame: recorded, then acked by a payload-only POST.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_split_across_reads_over_two_data_lines_is_one_frame() {
    let s = sse(&["agent_a"]).await;
    s.claude.script(
        1,
        Behaviour::new().events(&[init("sid-1"), result_success("sid-1", "done")]),
    );
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    let frame = deliver(1, "agent_a", "m1", "hello").to_string();
    let (a, b) = frame.split_at(frame.find(",\"payload\"").unwrap());
    conn.send_stream_bytes(b":hb\n\nevent: deliver\nid: 1\ndata: ")
        .await;
    conn.send_stream_bytes(a.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.send_stream_bytes(format!("\ndata: {b}\n\n").as_bytes())
        .await;
    conn.recv_matching(T, "a final status", is_final).await;
    let ack = &s.backend.accepted_posts(ACK)[0];
    assert_eq!(
        ack.to_string(),
        r#"{"message_id":"m1","status":"received","seq":1}"#
    );
    assert_eq!(s.claude.calls().len(), 1);
}

/// A stream that goes silent is dropped by the watchdog and reopened with
/// `Last-Event-ID` = the last accepted seq; `:hb` comments keep it open.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_stream_is_reopened_from_the_last_seq_and_comments_keep_it_alive() {
    let s = sse(&["agent_a"]).await;
    let (_d, mut conn) = s.connect(&format!("{FAST_TIMING},watchdog_ms=1500")).await;
    conn.send(deliver(4, "agent_a", "m4", "x")).await;
    conn.recv_type("delivery_ack", T).await;
    // Comments for twice the watchdog: no reconnect.
    for _ in 0..10 {
        conn.send_stream_bytes(b":hb\n\n").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(count(&s.backend.posts(), READY), 1);
    // Silence: the watchdog ends the stream, the daemon comes back.
    let mut again = s.backend.next_connection(T).await;
    let resume = again.recv_type("resume", T).await;
    assert_eq!(resume["payload"]["last_seq"], 4);
}

/// A 404 on `/ready` is retried (with backoff), not fatal, and the stream
/// resumes from max(ours, the server's `last_acked_seq`).
#[tokio::test(flavor = "multi_thread")]
async fn ready_404_then_200_is_retried() {
    let s = sse(&[]).await;
    s.backend.fail_post(READY, 404);
    s.backend.set_last_acked_seq(9);
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    let readies: Vec<u16> = s
        .backend
        .posts()
        .iter()
        .filter(|p| p.path == READY)
        .map(|p| p.status)
        .collect();
    assert_eq!(readies, [404, 200]);
    assert_eq!(conn.frames()[1]["payload"]["last_seq"], 9);
    conn.send(deliver(10, "agent_b", "m10", "x")).await;
    conn.recv_type("delivery_ack", T).await;
}

/// An ack POST answered 500 is retried before anything behind it: no ack
/// is lost and the order holds, while later frames keep being received.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_ack_post_is_retried_in_order() {
    let s = sse(&["agent_a"]).await;
    s.backend.fail_post(ACK, 500);
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "a")).await;
    conn.send(deliver(2, "agent_a", "m2", "b")).await;
    s.backend
        .wait_posts(T, "both received acks taken", |p| {
            p.iter()
                .filter(|p| p.path == ACK && p.status == 200 && p.body["status"] == "received")
                .count()
                == 2
        })
        .await;
    let posts = s.backend.posts();
    let first = posts.iter().find(|p| p.path == ACK).unwrap();
    assert_eq!(
        (first.status, &first.body["message_id"]),
        (500, &json!("m1"))
    );
    assert_eq!(received(&s.backend), ["m1", "m2"]);
}

/// `auto`: the WebSocket upgrade answered 404 → SSE, said in the log.
#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_sse_when_the_upgrade_gets_404() {
    let s = auto().await;
    s.backend.set_ws_path("/not-here");
    let (d, conn) = s.connect(FAST_TIMING).await;
    assert_eq!(conn.upgrade.path, READY);
    let first = &s.backend.upgrades()[0];
    assert_eq!((first.path.as_str(), first.status), ("/v1/daemon/ws", 404));
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
    let out = d.output(home);
    assert!(
        out.contains("rejected the machine API key (HTTP 401)"),
        "{out}"
    );
}

/// `auto`: a 401 on the upgrade is terminal; SSE is not tried.
#[tokio::test(flavor = "multi_thread")]
async fn auto_stops_on_401_without_trying_sse() {
    let s = auto().await;
    s.backend.set_auth(Auth::Reject(401));
    stops_with_the_key_message(&s.home);
    assert_eq!(s.backend.posts().len(), 0, "{:?}", s.backend.posts());
    assert_eq!(s.backend.upgrade_count(), 1);
}

/// Heartbeats are POSTed `{}` while connected; they are not frames.
#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_are_posted() {
    let s = sse(&[]).await;
    let (_d, conn) = s.connect(&format!("{FAST_TIMING},heartbeat_ms=200")).await;
    s.backend
        .wait_posts(T, "two heartbeats", |p| {
            count(p, "/v1/daemon/heartbeat") >= 2
        })
        .await;
    assert_eq!(
        s.backend.accepted_posts("/v1/daemon/heartbeat")[0],
        json!({})
    );
    assert_eq!(conn.frames().len(), 2, "ready and resume only");
}

/// While claude streams text over SSE, the accumulated text is POSTed to
/// publish-partial ("Hel", then "Hello!"), for a message with a business
/// session; the last one carries all of it.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_text_is_published_as_it_grows() {
    use support::fake_claude::text_delta;
    let s = sse(&["agent_a"]).await;
    s.claude.script(
        1,
        Behaviour::new().events(&[
            init("sid-p"),
            text_delta("sid-p", "Hel"),
            text_delta("sid-p", "lo!"),
            result_success("sid-p", "Hello!"),
        ]),
    );
    let (_d, mut conn) = s.connect(FAST_TIMING).await;
    conn.send(deliver(1, "agent_a", "m1", "hi")).await;
    conn.recv_matching(T, "a final status", is_final).await;
    let partials = s.backend.accepted_posts("/v1/daemon/publish-partial");
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
    let s = Scenario::over(Transport::Ws, &["agent_a"], "").await;
    let _d = Daemon::start_with(&s.home, FAST_TIMING, &["--transport", "sse"]);
    let conn = s.backend.next_connection(T).await;
    assert_eq!(conn.upgrade.path, READY);
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
    let paths: Vec<String> = s.backend.upgrades().into_iter().map(|u| u.path).collect();
    assert_eq!(paths, [READY], "no WebSocket attempt after the reload");
}
