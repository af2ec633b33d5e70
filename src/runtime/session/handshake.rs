//! Opening a session: connect, learn the backend's host id, tell it what
//! this daemon runs and where to resume (docs/PROTOCOL.md, "Handshake").
//! Over WebSocket the server speaks first (`hello`), then we send `ready`
//! and `resume {last_seq}`.

use crate::runtime::wake::command::child_environment;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::paths::AgentId;
use crate::protocol::outbound::{Ready, Runtime};
use crate::protocol::{Assign, Inbound, Outbound};
use crate::runtime::detect;
use crate::runtime::settings::Settings;
use crate::runtime::shared::Shared;
use crate::runtime::transport::{ConnectError, Event, FrameReader, sse, ws};

/// Why a session could not be opened.
#[derive(Debug)]
pub enum Failure {
    /// 401/403: the key is refused. Terminal.
    Auth(ConnectError),
    Shutdown,
    /// A frame over the size limit (see `Ended::FrameTooLarge`).
    TooLarge {
        size: usize,
        max: usize,
    },
    /// Anything else: retried after a backoff.
    Other(String),
    /// The WebSocket upgrade was answered with a status other than 101
    /// and 401/403, or cut: retried, or SSE for `auto`.
    NoWebSocket(String),
    /// Retried, but not before `after` (the server's `Retry-After`).
    Later {
        reason: String,
        after: Duration,
    },
}

/// An open session, ready for the pump.
pub struct Established<R, W> {
    pub reader: R,
    pub writer: W,
    pub host_id: String,
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Auth(_) => Self::Auth(e),
            ConnectError::Status { .. } | ConnectError::UpgradeCut { .. } => {
                Self::NoWebSocket(e.to_string())
            }
            other => Self::Other(other.to_string()),
        }
    }
}

/// Connect over WebSocket and complete the handshake.
pub async fn ws(
    shared: &Arc<Shared>,
    settings: &Settings,
    startup: &mut Option<Vec<Runtime>>,
) -> Result<Established<ws::Reader, ws::Writer>, Failure> {
    let url = ws::url(&settings.server_url);
    let (mut reader, mut writer) = ws::connect(
        &url,
        &settings.api_key,
        settings.insecure,
        settings.max_frame_bytes(),
    )
    .await?;
    let host_id = ws_greeting(&mut reader, &mut writer, shared, settings, startup).await?;
    Ok(Established {
        reader,
        writer,
        host_id,
    })
}

/// `hello` in, `ready` and `resume` out, on an open socket.
pub async fn ws_greeting<S: AsyncRead + AsyncWrite + Unpin>(
    reader: &mut ws::Reader<S>,
    writer: &mut ws::Writer<S>,
    shared: &Arc<Shared>,
    settings: &Settings,
    startup: &mut Option<Vec<Runtime>>,
) -> Result<String, Failure> {
    let host_id = hello(reader, shared).await?;
    let last_seq = adopt_host(shared, &host_id);
    let ready = ready(shared, settings, startup).await;
    for frame in [ready.envelope(), Outbound::Resume { last_seq }.envelope()] {
        writer
            .send_text(frame)
            .await
            .map_err(|e| Failure::Other(format!("sending the handshake failed: {e}")))?;
    }
    tracing::info!("connected: host_id={host_id:?} last_seq={last_seq}");
    Ok(host_id)
}

/// The server speaks first; one that never does is not waited for forever
/// (the original hung).
async fn hello<R: FrameReader>(reader: &mut R, shared: &Arc<Shared>) -> Result<String, Failure> {
    tokio::select! {
        r = first_hello(reader, shared.timing.hello_timeout) => r,
        () = shared.cancel.cancelled() => Err(Failure::Shutdown),
    }
}

/// The host id from the server's first frame, which must be `hello`.
async fn first_hello<R: FrameReader>(reader: &mut R, limit: Duration) -> Result<String, Failure> {
    let first = tokio::time::timeout(limit, reader.next()).await;
    let text = match first {
        Err(_) => return Err(Failure::Other(format!("no hello within {limit:?}"))),
        Ok(Event::TooLarge { size, max }) => {
            return Err(Failure::TooLarge { size, max });
        }
        Ok(Event::Closed(reason)) => {
            return Err(Failure::Other(format!(
                "server closed before hello: {reason}"
            )));
        }
        Ok(Event::Frame(t)) => t,
        Ok(Event::Alive) => {
            return Err(Failure::Other(
                "expected hello frame, got a keep-alive".into(),
            ));
        }
    };
    match crate::protocol::frames::parse(text.as_str()) {
        Ok(Inbound::Hello { host_id }) => Ok(host_id),
        Ok(other) => Err(Failure::Other(format!(
            "expected hello frame, got {}",
            kind(&other)
        ))),
        Err(e) => Err(Failure::Other(format!(
            "expected hello frame, got an invalid one: {e}"
        ))),
    }
}

/// `login`'s check of a key (PROTOCOL §2.9 of the original, kept): open
/// the WebSocket with it, read `hello`, send a full `ready` (runtimes
/// detected, no workspace root), close with 1000. Returns the host id.
/// Nothing is resumed, so no message is delivered to this session.
pub async fn verify_key(
    server_url: &str,
    key: &crate::config::Secret,
    insecure: bool,
    runtimes: Vec<Runtime>,
) -> Result<String, Failure> {
    const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
    let url = ws::url(server_url);
    let max_frame = crate::config::desired::DEFAULT_MAX_FRAME_MIB as usize * 1024 * 1024;
    let (mut reader, mut writer) = ws::connect(&url, key, insecure, max_frame).await?;
    let host_id = first_hello(&mut reader, HELLO_TIMEOUT).await?;
    writer
        .send_text(Ready::new(runtimes, None).envelope())
        .await
        .map_err(|e| Failure::Other(format!("sending ready failed: {e}")))?;
    use crate::runtime::transport::FrameWriter;
    // A login queues nothing: an empty outbox for the close.
    writer
        .close(
            "login",
            &crate::runtime::delivery::outbox::Outbox::default(),
        )
        .await;
    Ok(host_id)
}

/// `login`'s check against a server without WebSocket: `POST
/// /v1/daemon/ready` with the same full `ready` the WebSocket check sends
/// (what the daemon's first SSE session sends anyway); no stream is opened
/// and nothing is acknowledged. Returns the host id.
pub async fn verify_key_sse(
    server_url: &str,
    key: &crate::config::Secret,
    insecure: bool,
    runtimes: Vec<Runtime>,
) -> Result<String, Failure> {
    let client = sse::Client::new(server_url, key, insecure)?;
    let answer = sse::ready(&client, &Ready::new(runtimes, None)).await?;
    if answer.host_id.is_empty() {
        return Err(Failure::Other(
            "the server's answer to POST /v1/daemon/ready has no host_id".into(),
        ));
    }
    Ok(answer.host_id)
}

fn kind(frame: &Inbound) -> String {
    match frame {
        Inbound::Hello { .. } => "hello".into(),
        Inbound::Ping => "ping".into(),
        Inbound::Assign(_) => "assign".into(),
        Inbound::Unassign { .. } => "unassign".into(),
        Inbound::Deliver(_) => "deliver".into(),
        Inbound::ToolResult(_) => "tool_result".into(),
        Inbound::Bye { .. } => "bye".into(),
        Inbound::Other(ty) => format!("{ty:?}"),
    }
}

/// Take the backend's host id (PROTOCOL §3.3). A different backend resets
/// the dedup state, and frames queued for the old one do not follow.
/// Returns `last_seq` to resume from.
pub fn adopt_host(shared: &Arc<Shared>, host_id: &str) -> i64 {
    let (changed, last_seq) = shared.with_ledger(|l| (l.adopt_host(host_id), l.last_seq()));
    if changed {
        let dropped = shared.outbox.clear();
        if dropped > 0 {
            tracing::warn!(
                "{dropped} frame(s) queued for the previous host were dropped: they do not concern {host_id:?}"
            );
        }
    }
    shared.with_live(|l| l.host_id = Some(host_id.to_string()).filter(|h| !h.is_empty()));
    last_seq
}

/// The `ready` payload: runtimes detected now (except the first time:
/// `start` has just done it) and the host-level workspace root if set.
async fn ready(
    shared: &Arc<Shared>,
    settings: &Settings,
    startup: &mut Option<Vec<Runtime>>,
) -> Ready {
    let runtimes = match startup.take() {
        Some(r) => r,
        None => detect::detect(&settings.home.home, &child_environment(settings)).await,
    };
    let workspace_root = settings
        .workspace_root
        .as_ref()
        .map(|p| p.display().to_string())
        .or_else(|| shared.with_ledger(|l| l.workspace_root().map(String::from)));
    Ready::new(runtimes, workspace_root)
}

/// Why a connection ended on an oversized frame, and what to do.
pub fn too_large(size: usize, max: usize) -> String {
    format!(
        "the backend sent a frame of {size} bytes, over the limit of {max} bytes; it can be neither acknowledged nor skipped, so the backend will send it again: raise max_frame_mib in the server's section of the config file"
    )
}

impl From<sse::Failed> for Failure {
    fn from(f: sse::Failed) -> Self {
        match f {
            sse::Failed::Auth(code) => Self::Auth(ConnectError::Auth(code)),
            sse::Failed::Retry {
                why,
                after: Some(after),
            } => Self::Later { reason: why, after },
            sse::Failed::Retry { why, after: None } | sse::Failed::Refused(why) => Self::Other(why),
        }
    }
}

/// Open an SSE + POST session: `POST /ready` (host id, where the server
/// has us, its agents), then the event stream from the last seq we hold,
/// then the poster for the outbox (docs/PROTOCOL.md, "SSE + POST").
pub async fn sse(
    shared: &Arc<Shared>,
    settings: &Settings,
    startup: &mut Option<Vec<Runtime>>,
) -> Result<Established<sse::Reader, sse::Writer>, Failure> {
    let client = sse::Client::new(&settings.server_url, &settings.api_key, settings.insecure)?;
    let ready = ready(shared, settings, startup).await;
    let answer =
        within_hello_timeout(shared, "/v1/daemon/ready", sse::ready(&client, &ready)).await?;
    adopt_host(shared, &answer.host_id);
    let last_seq = shared.with_ledger(|l| {
        l.raise_last_seq(answer.last_acked_seq);
        l.last_seq()
    });
    adopt_agents(shared, &answer.agents);
    let stream = sse::stream(&client, last_seq, settings.max_frame_bytes());
    let reader = within_hello_timeout(shared, "/v1/daemon/stream", stream).await?;
    let retry = sse::Retry {
        base: shared.timing.backoff_base,
        max: shared.timing.backoff_max,
    };
    let writer = sse::Writer::start(
        client,
        shared.outbox.clone(),
        retry,
        shared.timing.heartbeat,
    );
    tracing::info!(
        "connected over SSE: host_id={:?} last_seq={last_seq}",
        answer.host_id
    );
    Ok(Established {
        reader,
        writer,
        host_id: answer.host_id,
    })
}

/// `/ready`'s answer and the stream's headers play the part of `hello`
/// over SSE: a server that never gives them is not waited for longer
/// than one would be (docs/PROTOCOL.md, "Handshake").
async fn within_hello_timeout<T>(
    shared: &Arc<Shared>,
    what: &str,
    step: impl Future<Output = Result<T, sse::Failed>>,
) -> Result<T, Failure> {
    let limit = shared.timing.hello_timeout;
    match tokio::time::timeout(limit, step).await {
        Ok(r) => r.map_err(Failure::from),
        Err(_) => Err(Failure::Other(format!(
            "no answer to {what} within {limit:?}"
        ))),
    }
}

/// The agents `/ready` says are bound here go through the same queue and
/// checks as an `assign` (declared agents keep the file's identity and
/// workdir; the agent cap and workdir policy apply), with the default
/// staff identity (PROTOCOL §2.3 of the original, kept).
fn adopt_agents(shared: &Arc<Shared>, agents: &[sse::ReadyAgent]) {
    for a in agents {
        let Ok(agent_id) = AgentId::parse(&a.agent_id) else {
            tracing::warn!(
                "/v1/daemon/ready named an agent with an invalid id {:?}: skipped",
                a.agent_id
            );
            continue;
        };
        shared.assigns.push(Assign {
            agent_name: a.agent_id.clone(),
            agent_id,
            is_chief: false,
            role: "staff".into(),
            workspace_slug: "default".into(),
            reports_to: "(unset)".into(),
            workspace_root: a.workspace_root.clone(),
        });
    }
}
