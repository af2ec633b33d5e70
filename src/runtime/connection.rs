//! The link to the backend: connect, handshake (server `hello` first, then
//! our `ready` and `resume`), dispatch frames, send queued frames, watch for
//! silence, reconnect with backoff. 401/403 end the daemon; everything else
//! is retried.

use std::sync::Arc;

use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::frames::{self, AckStatus, Inbound};
use super::ledger::{Decision, PendingWake};
use super::outbox::Outbox;
use super::shared::Shared;
use super::timing::Backoff;
use super::transport::{self, ConnectError};
use super::wake::scheduler::Scheduler;
use super::{agents, detect};

#[derive(Debug, Error)]
pub enum Fatal {
    #[error(transparent)]
    Auth(ConnectError),
    #[error(
        "the backend removed this host (bye: {0}); not reconnecting. Register the machine again in the cloudagent UI."
    )]
    HostRemoved(String),
}

/// How a session ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Shutdown,
    /// The connection went away; `handshake` tells whether it got as far as
    /// a complete handshake (which resets the backoff).
    Lost {
        handshake: bool,
        reason: String,
    },
    HostRemoved(String),
}

/// Keep the daemon connected until shutdown or a terminal error.
/// `runtimes`: what `start` just detected (and printed), for the first
/// handshake; later handshakes detect again.
pub async fn run(
    shared: Arc<Shared>,
    scheduler: Arc<Scheduler>,
    runtimes: Vec<detect::Runtime>,
) -> Result<(), Fatal> {
    let mut startup = Some(runtimes);
    let mut backoff = Backoff::new(shared.timing.backoff_base, shared.timing.backoff_max);
    loop {
        if shared.cancel.is_cancelled() {
            return Ok(());
        }
        let settings = shared.settings();
        let url = settings.ws_url();
        shared.with_live(|l| l.connection = "connecting".into());
        let connected = tokio::select! {
            r = transport::connect(&url, &settings.api_key, settings.insecure) => r,
            _ = shared.cancel.cancelled() => return Ok(()),
        };
        let reason = match connected {
            Err(e @ ConnectError::Auth(_)) => {
                shared.with_live(|l| {
                    l.connection = "auth failed".into();
                    l.last_error = Some(e.to_string());
                });
                return Err(Fatal::Auth(e));
            }
            Err(e) => e.to_string(),
            Ok(ws) => match session(ws, &shared, &scheduler, &mut startup).await {
                Ended::Shutdown => return Ok(()),
                Ended::HostRemoved(reason) => return Err(Fatal::HostRemoved(reason)),
                Ended::Lost { handshake, reason } => {
                    if handshake {
                        backoff.reset();
                    }
                    reason
                }
            },
        };
        let delay = backoff.next_delay();
        tracing::warn!(
            "connection to {url}: {reason}; reconnecting in {:.1} s",
            delay.as_secs_f64()
        );
        shared.with_live(|l| {
            l.connection = "disconnected".into();
            l.connected_since = None;
            l.last_error = Some(reason);
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.cancel.cancelled() => return Ok(()),
        }
    }
}

fn host_removed(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase().replace(['-', ' '], "_");
    ["host_removed", "host_deleted", "host_revoked", "revoked"]
        .iter()
        .any(|k| r.contains(k))
}

/// One connection, from `hello` to its end. `startup` runtimes, if still
/// there, are used (once) instead of detecting them again.
pub async fn session<S>(
    ws: WebSocketStream<S>,
    shared: &Arc<Shared>,
    scheduler: &Arc<Scheduler>,
    startup: &mut Option<Vec<detect::Runtime>>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let lost = |handshake: bool, reason: String| Ended::Lost { handshake, reason };

    // 1. The server speaks first.
    let first = tokio::select! {
        r = tokio::time::timeout(shared.timing.hello_timeout, next_text(&mut stream)) => r,
        _ = shared.cancel.cancelled() => return Ended::Shutdown,
    };
    let text = match first {
        Err(_) => {
            return lost(
                false,
                format!("no hello within {:?}", shared.timing.hello_timeout),
            );
        }
        Ok(Err(reason)) => return lost(false, format!("server closed before hello: {reason}")),
        Ok(Ok(t)) => t,
    };
    let host_id = match frames::parse(&text) {
        Ok(Inbound::Hello { host_id }) => host_id,
        Ok(other) => return lost(false, format!("expected hello frame, got {other:?}")),
        Err(e) => {
            return lost(
                false,
                format!("expected hello frame, got an invalid one: {e}"),
            );
        }
    };
    let last_seq = shared.with_ledger(|l| {
        l.adopt_host(&host_id);
        l.last_seq()
    });

    // 2. ready (runtimes re-detected on every connect, except the first:
    // `start` has just done it), then resume.
    let settings = shared.settings();
    let runtimes = match startup.take() {
        Some(r) => r,
        None => detect::detect(&settings.home.home, std::env::var_os("PATH")).await,
    };
    let workspace_root = settings
        .workspace_root
        .as_ref()
        .map(|p| p.display().to_string())
        .or_else(|| shared.with_ledger(|l| l.workspace_root().map(String::from)));
    let ready = ready_payload(&runtimes, workspace_root);
    for frame in [frames::envelope("ready", ready), frames::resume(last_seq)] {
        if let Err(e) = sink.send(Message::text(frame)).await {
            return lost(false, format!("sending the handshake failed: {e}"));
        }
    }
    tracing::info!("connected: host_id={host_id} last_seq={last_seq}");
    shared.with_live(|l| {
        l.connection = "connected".into();
        l.connected_since = Some(frames::now_ts());
        l.host_id = Some(host_id.clone()).filter(|h| !h.is_empty());
        l.last_error = None;
    });

    // 3. Frames both ways until something ends it. The silence deadline
    // moves only when something arrives; the timer is re-armed only when it
    // fires early, not on every frame (registering a timer can wake the
    // runtime's other thread).
    let mut last_heard = tokio::time::Instant::now();
    let watchdog = tokio::time::sleep_until(last_heard + shared.timing.watchdog);
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "daemon stopping".into() }))).await;
                return Ended::Shutdown;
            }
            _ = shared.reconnect.notified() => {
                let _ = sink.send(Message::Close(None)).await;
                return lost(true, "the configuration changed".into());
            }
            () = &mut watchdog => {
                let due = last_heard + shared.timing.watchdog;
                if tokio::time::Instant::now() < due {
                    watchdog.as_mut().reset(due);
                    continue;
                }
                let _ = sink.send(Message::Close(None)).await;
                return lost(true, format!("no message from the server for {:?}", shared.timing.watchdog));
            }
            inbound = stream.next() => {
                // Frames that are already here join one batch, so a burst of
                // delivers costs one fdatasync.
                let mut recorded = Recorded::default();
                let mut inbound = inbound;
                let ended = loop {
                    last_heard = tokio::time::Instant::now();
                    if let Some(end) = on_inbound(inbound, &mut sink, shared, &mut recorded).await {
                        break Some(end);
                    }
                    if recorded.acks.is_empty() || recorded.acks.len() >= MAX_BATCH {
                        break None;
                    }
                    match stream.next().now_or_never() {
                        Some(next) => inbound = next,
                        None => break None,
                    }
                };
                if !recorded.acks.is_empty()
                    && let Err(e) = commit(recorded, &mut sink, shared, scheduler).await
                    && ended.is_none()
                {
                    return lost(true, format!("sending failed: {e}"));
                }
                if let Some(end) = ended {
                    return end;
                }
            }
            frame = shared.outbox.front() => {
                match sink.send(Message::text(frame)).await {
                    Ok(()) => shared.outbox.pop(),
                    Err(e) => return lost(true, format!("sending failed: {e}")),
                }
            }
        }
    }
}

async fn next_text<S>(
    stream: &mut futures_util::stream::SplitStream<WebSocketStream<S>>,
) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match stream.next().await {
            None => return Err("connection closed".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(f))) => {
                return Err(format!(
                    "code={}",
                    f.map(|f| f.code.to_string())
                        .unwrap_or_else(|| "none".into())
                ));
            }
            Some(Ok(_)) => {}
        }
    }
}

fn ready_payload(runtimes: &[detect::Runtime], workspace_root: Option<String>) -> Value {
    let uname = rustix::system::uname();
    let mut p = Map::new();
    p.insert("daemon_ver".into(), Value::from(env!("CARGO_PKG_VERSION")));
    p.insert(
        "runtimes".into(),
        serde_json::to_value(runtimes).unwrap_or_default(),
    );
    p.insert(
        "hostname".into(),
        Value::from(uname.nodename().to_string_lossy().into_owned()),
    );
    p.insert(
        "os".into(),
        Value::from(uname.sysname().to_string_lossy().to_lowercase()),
    );
    if let Some(w) = workspace_root {
        p.insert("workspace_root".into(), Value::from(w));
    }
    Value::Object(p)
}

enum Reply {
    None,
    Pong,
    Bye(String),
}

/// At most this many delivers share one sync, so a flood still gets acks
/// out steadily.
const MAX_BATCH: usize = 256;

/// Delivers written to the journal but not yet durable: acked and run only
/// after `commit`.
#[derive(Default)]
struct Recorded {
    acks: Vec<String>,
    wakes: Vec<PendingWake>,
}

/// Make the batch durable, send its acks, then hand its wakes to the
/// scheduler: the acks are on the wire before a claude process is forked
/// next to them. Frames already queued go first, in order.
async fn commit<S>(
    recorded: Recorded,
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    shared: &Arc<Shared>,
    scheduler: &Arc<Scheduler>,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.with_ledger(|l| l.sync());
    for ack in recorded.acks {
        shared.outbox.push(ack);
    }
    let sent = send_queued(sink, &shared.outbox).await;
    // Queued whatever happened to the socket: they are durable, so they
    // must run (and their acks go out after the next handshake).
    for wake in recorded.wakes {
        let message_id = wake.message_id.clone();
        if !scheduler.enqueue(wake) {
            shared.outbox.push(frames::delivery_ack(
                &message_id,
                AckStatus::QueueFull,
                None,
            ));
        }
    }
    sent
}

/// Send every queued frame now, with one flush.
async fn send_queued<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    outbox: &Outbox,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(frame) = outbox.try_front() {
        sink.feed(Message::text(frame)).await?;
        outbox.pop();
    }
    sink.flush().await
}

/// Handle one inbound WebSocket message; `Some` ends the session.
async fn on_inbound<S>(
    inbound: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    shared: &Arc<Shared>,
    recorded: &mut Recorded,
) -> Option<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let lost = |reason: String| {
        Some(Ended::Lost {
            handshake: true,
            reason,
        })
    };
    let msg = match inbound {
        None => return lost("the server closed the connection".into()),
        Some(Err(e)) => return lost(e.to_string()),
        Some(Ok(m)) => m,
    };
    match msg {
        Message::Text(t) => match dispatch(t.as_str(), shared, recorded) {
            Reply::None => None,
            Reply::Pong => match sink.send(Message::text(frames::pong())).await {
                Ok(()) => None,
                Err(e) => lost(e.to_string()),
            },
            Reply::Bye(reason) => {
                let _ = sink.send(Message::Close(None)).await;
                if host_removed(&reason) {
                    return Some(Ended::HostRemoved(reason));
                }
                lost(format!("the server said bye ({reason})"))
            }
        },
        Message::Close(frame) => lost(format!(
            "the server closed the connection ({})",
            frame
                .map(|f| f.code.to_string())
                .unwrap_or_else(|| "no code".into())
        )),
        // Control frames are answered by tungstenite; binary is not part of
        // the protocol.
        _ => None,
    }
}

/// Handle one inbound text frame. Malformed frames are logged and skipped:
/// the connection and the daemon stay up (the original crashed on them).
fn dispatch(text: &str, shared: &Arc<Shared>, recorded: &mut Recorded) -> Reply {
    let frame = match frames::parse(text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("skipping a malformed frame: {e}");
            return Reply::None;
        }
    };
    match frame {
        Inbound::Ping => return Reply::Pong,
        Inbound::Deliver(d) => {
            let decision = shared.with_ledger(|l| l.record_deliver(&d));
            recorded.acks.push(frames::delivery_ack(
                &d.message_id,
                AckStatus::Received,
                Some(d.seq),
            ));
            if let Decision::Accept(wake) = decision {
                recorded.wakes.push(wake);
            }
        }
        Inbound::ToolResult(r) => shared.tools.resolve(r),
        Inbound::Assign(a) => {
            if let Err(e) = agents::on_assign(&shared.settings(), &a) {
                tracing::warn!("assign {}: cannot prepare the workspace: {e}", a.agent_id);
            } else {
                tracing::info!("assign: agent {} bound to this host", a.agent_id);
            }
        }
        Inbound::Unassign { agent_id, reason } => {
            tracing::info!(
                "unassign: agent {agent_id} unbound ({}); its workspace is kept",
                reason.unwrap_or_default()
            );
            if let Ok(id) = crate::paths::AgentId::parse(&agent_id) {
                agents::on_unassign(&shared.settings(), &id);
            }
        }
        Inbound::Bye { reason } => {
            tracing::warn!("the server said bye: {reason}");
            return Reply::Bye(reason);
        }
        Inbound::Hello { .. } => {}
        Inbound::Other(ty) => tracing::warn!("ignoring a frame of unknown type {ty:?}"),
    }
    Reply::None
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::paths::{Home, ProfileName};
    use crate::runtime::ledger::Ledger;
    use crate::runtime::settings::Settings;
    use crate::runtime::timing::Timing;

    /// A daemon-side and a server-side WebSocket over an in-memory pipe, so
    /// paused time is never confused by real IO.
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
            false,
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
        let s = shared.clone();
        let task = tokio::spawn(async move { session(client, &s, &scheduler, &mut None).await });
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
            Ended::Lost {
                handshake: true,
                reason: "no message from the server for 40s".into()
            }
        );
        assert_eq!(silent_since.elapsed().as_secs(), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_says_hello_is_given_up_on() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, scheduler) = daemon(dir.path());
        let (client, _server) = pair().await;
        let started = tokio::time::Instant::now();
        let ended = session(client, &shared, &scheduler, &mut None).await;
        assert_eq!(
            ended,
            Ended::Lost {
                handshake: false,
                reason: "no hello within 30s".into()
            }
        );
        assert_eq!(started.elapsed().as_secs(), 30);
    }
}
