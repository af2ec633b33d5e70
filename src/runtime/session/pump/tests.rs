//! The session under paused tokio time, over an in-memory WebSocket (so
//! paused time is never confused by real IO).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;
use crate::paths::{Home, ProfileName};
use crate::runtime::delivery::ledger::Ledger;
use crate::runtime::session::handshake::{self, Failure};
use crate::runtime::timing::Timing;
use crate::runtime::transport::ws;

async fn pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    (
        WebSocketStream::from_raw_socket(a, Role::Client, None).await,
        WebSocketStream::from_raw_socket(b, Role::Server, None).await,
    )
}

fn daemon(dir: &std::path::Path) -> (Arc<Shared>, Arc<Scheduler>) {
    let home = Home::for_tests(dir);
    let profile = ProfileName::default_profile();
    let settings = Settings::one_shot(
        "http://127.0.0.1:9",
        "sk_machine_t",
        Default::default(),
        &profile,
        home,
        PathBuf::from("/nonexistent"),
    )
    .unwrap();
    std::fs::create_dir_all(&settings.paths.base).unwrap();
    let (ledger, _) = Ledger::open(&settings.paths).unwrap();
    let shared = Shared::new(settings, Timing::default(), ledger);
    let scheduler = Scheduler::new(shared.clone(), 1, tokio::runtime::Handle::current());
    (shared, scheduler)
}

/// The daemon's side of one connection: greeting, then the pump.
async fn session(
    client: WebSocketStream<DuplexStream>,
    shared: Arc<Shared>,
    scheduler: Arc<Scheduler>,
) -> Result<Ended, String> {
    let (mut reader, mut writer) = ws::split(client);
    let settings = shared.settings();
    let host_id = handshake::ws_greeting(
        &mut reader,
        &mut writer,
        &shared,
        &settings,
        &mut Some(Vec::new()),
    )
    .await
    .map_err(|e| match e {
        Failure::Other(reason) => reason,
        other => format!("{other:?}"),
    })?;
    let link = Established {
        reader,
        writer,
        host_id,
    };
    let mut rx = shared.watch_settings();
    Ok(run(link, &shared, &scheduler, &mut rx, &settings).await)
}

async fn text(server: &mut WebSocketStream<DuplexStream>) -> Value {
    loop {
        match server.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn handshake(server: &mut WebSocketStream<DuplexStream>) {
    let hello = r#"{"v":1,"type":"hello","id":"frm_h","ts":"t","payload":{"host_id":"h1"}}"#;
    server.send(Message::text(hello)).await.unwrap();
    assert_eq!(text(server).await["type"], "ready");
    assert_eq!(text(server).await["type"], "resume");
}

#[tokio::test(start_paused = true)]
async fn pings_keep_the_connection_and_silence_drops_it_after_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, scheduler) = daemon(dir.path());
    let (client, mut server) = pair().await;
    let task = tokio::spawn(session(client, shared.clone(), scheduler));
    handshake(&mut server).await;
    // A server that pings every 30 s keeps the session for minutes.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        server
            .send(Message::text(
                r#"{"v":1,"type":"ping","id":"p","ts":"t","payload":{}}"#,
            ))
            .await
            .unwrap();
        assert_eq!(text(&mut server).await["type"], "pong");
    }
    assert!(!task.is_finished());
    // Then silence: dropped 40 s after the last message, not earlier.
    let silent_since = tokio::time::Instant::now();
    let ended = task.await.unwrap();
    assert_eq!(
        ended,
        Ok(Ended::Lost {
            handshake: true,
            reason: "no message from the server for 40s".into()
        })
    );
    assert_eq!(silent_since.elapsed().as_secs(), 40);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_says_hello_is_given_up_on() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, scheduler) = daemon(dir.path());
    let (client, _server) = pair().await;
    let started = tokio::time::Instant::now();
    let ended = session(client, shared, scheduler).await;
    assert_eq!(ended, Err("no hello within 30s".into()));
    assert_eq!(started.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_settings_change_that_lands_before_the_pump_starts_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, scheduler) = daemon(dir.path());
    let (client, mut server) = pair().await;
    let connected_with = shared.settings();
    let mut rx = shared.watch_settings();
    rx.borrow_and_update();
    // The change lands while the session is still in its handshake.
    let mut moved = (*connected_with).clone();
    moved.server_url = "http://127.0.0.1:10".into();
    shared.replace_settings(moved);
    let (reader, writer) = ws::split(client);
    let link = Established {
        reader,
        writer,
        host_id: "h1".into(),
    };
    let s = shared.clone();
    let task =
        tokio::spawn(async move { run(link, &s, &scheduler, &mut rx, &connected_with).await });
    let _ = &mut server;
    assert_eq!(task.await.unwrap(), Ended::Reconfigured);
}
