//! One wake (PROTOCOL §4): run claude for one accepted message, report
//! progress to the backend, and record the outcome.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::command::{self, Spec};
use super::leftover;
use super::output::Readers;
use super::prompt;
use super::stream::Transcript;
use super::supervised::{self, Launch, Supervised};
use super::token::WakeToken;
use crate::config::MAX_WAKE_TIMEOUT_SEC;
use crate::fsutil;
use crate::paths::AgentId;
use crate::protocol::frames::DeliverPayload;
use crate::protocol::outbound::now_ts;
use crate::protocol::tools::{SEND_MESSAGE, claude_name};
use crate::protocol::{AckStatus, Outbound, Usage, WakeStatus};
use crate::runtime::agents;
use crate::runtime::delivery::ledger::PendingWake;
use crate::runtime::failpoint;
use crate::runtime::settings::Settings;
use crate::runtime::shared::{Grant, LastWake, RunningWake, Shared};
use crate::runtime::tool_calls::Call;
use crate::workspace::AgentLayout;

const STALE_SESSION: &str = "No conversation found";

#[derive(Debug, PartialEq, Eq)]
pub enum WakeEnd {
    /// Ran to a final status; the message is done.
    Finished(WakeStatus),
    /// Stopped by shutdown: the message stays pending and runs again after
    /// a restart.
    Interrupted,
}

#[derive(Debug, Default)]
struct Attempt {
    exit_code: i64,
    timed_out: bool,
    interrupted: bool,
    spawn_error: Option<String>,
    transcript: Transcript,
    stderr_tail: String,
}

pub async fn run(shared: &Arc<Shared>, wake: PendingWake) -> WakeEnd {
    let began = std::time::Instant::now();
    let s = shared.settings();
    let id = wake.agent_id.clone();
    let layout = AgentLayout::new(&s.paths, &id);
    let payload = shared
        .with_ledger(|l| l.load_payload(&wake))
        .map_err(|e| e.to_string())
        .and_then(|text| DeliverPayload::parse(&text));
    let mut payload = match payload {
        Ok(p) => p,
        Err(e) => {
            // Written by us and synced before the ack: unreadable means the
            // disk lies. Report the wake as crashed rather than run it blind.
            tracing::error!(
                "{id}: message {}: cannot read its payload back: {e}",
                wake.message_id
            );
            let took = Some(began.elapsed());
            return finish(shared, &wake, WakeStatus::Crashed, -1, None, took);
        }
    };
    // The body is the bulk of a large message: it moves into the prompt,
    // and nothing else holds a copy of it (the payload is cloned below).
    let prompt = prompt::wake_prompt(&payload);
    payload.body = String::new();
    let session = payload.session_id.clone();
    if failpoint::is("wake_panic", &wake.message_id.key()) {
        panic!("failpoint wake_panic for message {}", wake.message_id);
    }

    // The agent's assign, if one came before this message, is in place.
    tokio::select! {
        () = shared.assigns.settled() => {}
        () = shared.cancel.cancelled() => return WakeEnd::Interrupted,
    }
    // Workspace checks and small file writes: off the async workers, so
    // they never delay the acks of other messages.
    let prep = {
        let (shared, s, id, payload, layout, session) = (
            shared.clone(),
            s.clone(),
            id.clone(),
            payload.clone(),
            layout.clone(),
            session.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let ready =
                agents::ensure_for_wake(&shared, &s, &id, &payload).and_then(|(identity, cwd)| {
                    let token = WakeToken::generate();
                    token.write(&layout.claude_token()).map_err(|e| {
                        format!("cannot write {}: {e}", layout.claude_token().display())
                    })?;
                    Ok((identity, cwd, token))
                });
            set_current_session(&layout, session.as_deref());
            let stored = read_last_spawn(&layout).and_then(|v| {
                v.get("session_id")
                    .and_then(Value::as_str)
                    .map(String::from)
            });
            (ready, stored)
        })
        .await
    };
    let (prepared, stored) = match prep {
        Ok(p) => p,
        Err(e) => (Err(format!("workspace preparation failed: {e}")), None),
    };
    let grant = prepared.as_ref().ok().map(|(identity, _, token)| Grant {
        token: token.clone(),
        chief: identity.is_chief,
    });
    shared.with_live(|l| {
        l.running.insert(
            id.clone(),
            RunningWake {
                message_id: wake.message_id.clone(),
                session_id: session.clone(),
                started_at: now_ts(),
                pid: None,
                grant,
            },
        )
    });

    let prepared = prepared.map(|(identity, cwd, _)| Prepared {
        chief: identity.is_chief,
        system_prompt: prompt::system_prompt(
            id.as_str(),
            identity.is_chief,
            s.agents
                .get(&id)
                .and_then(|a| a.append_system_prompt.as_deref()),
            payload.append_system_prompt.as_deref(),
        ),
        cwd,
        stdin_text: prompt,
        session: session.clone(),
    });

    let mut attempt = match &prepared {
        Err(e) => Attempt {
            exit_code: 126,
            spawn_error: Some(format!("cannot prepare the workspace of {id}: {e}")),
            ..Attempt::default()
        },
        Ok(p) => run_attempt(shared, &s, &wake, &layout, p, stored.as_deref()).await,
    };
    let mut session_id = stored.clone();
    if let Ok(p) = &prepared
        && !attempt.interrupted
        && attempt.exit_code != 0
        && stored.is_some()
        && attempt.stderr_tail.contains(STALE_SESSION)
    {
        tracing::info!(
            "{id}: claude does not know session {:?}; retrying without --resume",
            stored.as_deref().unwrap_or_default()
        );
        session_id = None;
        write_last_spawn(&layout, |v| v["session_id"] = Value::Null);
        attempt = run_attempt(shared, &s, &wake, &layout, p, None).await;
    }
    set_current_session(&layout, None);
    shared.with_live(|l| l.running.remove(&id));
    WakeToken::remove(&layout.claude_token());

    if attempt.interrupted {
        tracing::info!(
            "{id}: wake for message {} interrupted by shutdown; it runs again after restart",
            wake.message_id
        );
        return WakeEnd::Interrupted;
    }

    if let Some(sid) = attempt.transcript.session_id.clone() {
        if Some(&sid) != stored.as_ref() {
            shared.outbox.push(Outbound::SessionStart {
                agent_id: id.clone(),
                claude_session_id: sid.clone(),
            });
        }
        session_id = Some(sid);
    }

    let succeeded = attempt.exit_code == 0 && !attempt.timed_out && attempt.transcript.succeeded();
    if succeeded
        && let (Some(text), Some(session)) = (attempt.transcript.final_text(), session.as_deref())
        && !text.trim().is_empty()
        && !attempt.transcript.called_tool(&claude_name(SEND_MESSAGE))
    {
        fallback_reply(shared, &id, session, text).await;
    }

    let tail = match &attempt.spawn_error {
        Some(e) => e.clone(),
        None => attempt.stderr_tail.clone(),
    };
    let usage = attempt.transcript.result.as_ref().and_then(|r| r.usage);
    let t = &attempt.transcript;
    shared.metrics.usage(
        id.as_str(),
        usage.as_ref(),
        (t.cache_read_tokens, t.cache_creation_tokens),
    );
    write_last_spawn(&layout, |v| {
        *v = json!({
            "exit_code": attempt.exit_code,
            "session_id": session_id,
            "stderr_tail": tail,
            "ts": now_ts(),
            "usage": usage,
        })
    });

    let status = if attempt.timed_out {
        WakeStatus::Timeout
    } else if succeeded {
        WakeStatus::Idle
    } else {
        WakeStatus::Crashed
    };
    let took = Some(began.elapsed());
    finish(shared, &wake, status, attempt.exit_code, usage, took)
}

/// A wake's task panicked (a bug): the message is reported `crashed` and
/// never run again — running it again would likely panic again — and the
/// agent's state is cleared so its next message runs.
pub fn panicked(shared: &Arc<Shared>, wake: &PendingWake) {
    tracing::error!(
        "{}: the wake for message {} panicked (a bug; please report it with the log); reported as crashed",
        wake.agent_id,
        wake.message_id
    );
    shared.with_live(|l| l.running.remove(&wake.agent_id));
    let layout = AgentLayout::new(&shared.settings().paths, &wake.agent_id);
    WakeToken::remove(&layout.claude_token());
    finish(shared, wake, WakeStatus::Crashed, -1, None, None);
}

/// Over SSE, the text claude streams is published as it grows (PROTOCOL
/// §2.7: the accumulated text, only for a message with a business
/// session). The outbox keeps only the latest of them queued.
fn partial_publisher(
    shared: &Arc<Shared>,
    wake: &PendingWake,
    session: Option<&str>,
) -> Option<super::output::OnPartial> {
    let session = session?.to_string();
    let shared = shared.clone();
    let agent_id = wake.agent_id.clone();
    Some(Box::new(move |text: &str| {
        if shared.with_live(|l| l.streams_partials) {
            shared.outbox.push(Outbound::Partial {
                session_id: session.clone(),
                agent_id: agent_id.clone(),
                body: text.to_string(),
            });
        }
    }))
}

/// The message is done: never run again, and the backend is told how it
/// ended (with claude's usage, when it reported it).
fn finish(
    shared: &Arc<Shared>,
    wake: &PendingWake,
    status: WakeStatus,
    exit_code: i64,
    usage: Option<Usage>,
    took: Option<std::time::Duration>,
) -> WakeEnd {
    shared.with_ledger(|l| l.finish(&wake.message_id));
    shared.want_sync();
    shared.metrics.wake_finished(status, took);
    let last = LastWake {
        message_id: wake.message_id.clone(),
        status,
        exit_code,
        finished_at: now_ts(),
        usage,
    };
    shared.with_live(|l| {
        l.wakes
            .entry(wake.agent_id.clone())
            .or_default()
            .record(last)
    });
    shared.outbox.push(Outbound::Status {
        agent_id: wake.agent_id.clone(),
        status,
        exit_code: Some(exit_code),
        usage,
    });
    WakeEnd::Finished(status)
}

/// The daemon answers for claude when it finished without calling
/// send_message (PROTOCOL §4.9).
async fn fallback_reply(shared: &Arc<Shared>, agent_id: &AgentId, session: &str, text: &str) {
    let call = Call {
        agent_id,
        session_id: Some(session),
        tool_name: SEND_MESSAGE,
        args: json!({"target": "user", "body": text, "kind": "reply"}),
        timeout: shared.timing.fallback_timeout,
    };
    let answer = shared.tools.call(call).await;
    shared.metrics.fallback_sent();
    match answer {
        Ok(_) => tracing::info!(
            "{agent_id}: claude did not call send_message; the daemon sent its final text"
        ),
        Err(e) => tracing::warn!(
            "{agent_id}: fallback send_message failed: {} {:?}",
            e.code,
            e.message
        ),
    }
}

/// What every attempt of a wake needs, worked out once.
struct Prepared {
    chief: bool,
    system_prompt: String,
    /// Where claude runs.
    cwd: PathBuf,
    /// The wake prompt, written to claude's stdin (then a newline).
    stdin_text: String,
    /// The message's business session (for partial texts).
    session: Option<String>,
}

async fn run_attempt(
    shared: &Arc<Shared>,
    s: &Settings,
    wake: &PendingWake,
    layout: &AgentLayout,
    prepared: &Prepared,
    resume: Option<&str>,
) -> Attempt {
    let id = wake.agent_id.as_str();
    let cwd = prepared.cwd.as_path();
    let mcp_config = layout.mcp_config();
    let args = command::args(&Spec {
        resume,
        mcp_config: &mcp_config,
        chief: prepared.chief,
        system_prompt: &prepared.system_prompt,
        permission_mode: s.permission_mode,
    });
    let env = command::child_environment(s);
    let path_env = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let Some(program) = command::resolve_binary(&s.claude_binary, path_env.as_deref()) else {
        let msg = format!(
            "claude binary {:?} not found (set [daemon] claude_binary to its absolute path, or add it to PATH)",
            s.claude_binary
        );
        tracing::error!("{id}: {msg}");
        return Attempt {
            exit_code: 127,
            spawn_error: Some(msg),
            ..Attempt::default()
        };
    };
    let launch = Launch {
        exe: &s.exe,
        program: &program,
        args: &args,
        cwd,
        env,
        grace: shared.timing.kill_grace,
    };
    match Supervised::spawn(launch) {
        Ok(sup) => watch(shared, s, wake, prepared, sup).await,
        Err(e) => {
            let msg = format!(
                "cannot start {} in {}: {e}",
                program.display(),
                cwd.display()
            );
            tracing::error!("{id}: {msg}");
            Attempt {
                exit_code: 126,
                spawn_error: Some(msg),
                ..Attempt::default()
            }
        }
    }
}

/// How waiting for claude ended.
enum End {
    Exited(std::io::Result<std::process::ExitStatus>),
    Timeout,
    Cancelled,
}

/// `work`, unless the wake's deadline passes or the daemon stops first.
async fn until<T>(
    shared: &Shared,
    deadline: tokio::time::Instant,
    work: impl Future<Output = T>,
) -> Result<T, End> {
    tokio::select! {
        v = work => Ok(v),
        _ = tokio::time::sleep_until(deadline) => Err(End::Timeout),
        _ = shared.cancel.cancelled() => Err(End::Cancelled),
    }
}

/// From the supervisor's start to the end of the attempt: every wait is
/// bounded, by the wake's deadline, the daemon's shutdown, or (for the
/// output once claude has exited) `output_drain`.
async fn watch(
    shared: &Arc<Shared>,
    s: &Settings,
    wake: &PendingWake,
    prepared: &Prepared,
    mut sup: Supervised,
) -> Attempt {
    let id = wake.agent_id.as_str();
    let (grace, drain) = (shared.timing.kill_grace, shared.timing.output_drain);
    // Checked: validation caps wake_timeout_sec, but an overflow must
    // never panic a wake.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(s.wake_timeout)
        .unwrap_or(now + Duration::from_secs(MAX_WAKE_TIMEOUT_SEC));
    let readers = Readers::start(
        sup.child.stdout.take(),
        sup.child.stderr.take(),
        id,
        partial_publisher(shared, wake, prepared.session.as_deref()),
    );
    let records = s.paths.wakes_dir();
    let end = match until(shared, deadline, sup.claude_started()).await {
        Ok(Ok(pid)) => {
            started(shared, &records, wake, prepared, &mut sup, pid).await;
            match until(shared, deadline, sup.wait()).await {
                Ok(status) => End::Exited(status),
                Err(end) => end,
            }
        }
        Ok(Err(why)) => {
            tracing::error!("{id}: {why}");
            let status = sup.stop(grace).await;
            let (_, tail) = readers.finish(drain, id).await;
            return Attempt {
                exit_code: status.map(supervised::exit_code).unwrap_or(126),
                spawn_error: Some(format!("{why}\n{tail}").trim_end().to_string()),
                ..Attempt::default()
            };
        }
        Err(end) => end,
    };
    let mut result = Attempt::default();
    match end {
        End::Exited(Ok(status)) => {
            result.exit_code = supervised::exit_code(status);
            sup.stop_orphaned(grace).await;
        }
        End::Exited(Err(e)) => {
            tracing::error!("{id}: waiting for claude failed: {e}");
            result.exit_code = -1;
        }
        End::Timeout | End::Cancelled => {
            let timed_out = matches!(end, End::Timeout);
            if timed_out {
                tracing::warn!(
                    "{id}: claude ran longer than {:?}; stopping it",
                    s.wake_timeout
                );
            }
            let status = sup.stop(grace).await;
            result.exit_code = status.map(supervised::exit_code).unwrap_or(-9);
            result.timed_out = timed_out;
            result.interrupted = !timed_out;
        }
    }
    leftover::remove(&records, &wake.agent_id);
    (result.transcript, result.stderr_tail) = readers.finish(drain, id).await;
    result
}

/// claude runs: record it (see `leftover`), show its pid in `status`, give
/// it the prompt and tell the backend.
async fn started(
    shared: &Arc<Shared>,
    records: &Path,
    wake: &PendingWake,
    prepared: &Prepared,
    sup: &mut Supervised,
    pid: u32,
) {
    let id = wake.agent_id.as_str();
    if let Some(record) = sup
        .supervisor_pid()
        .and_then(|p| leftover::Record::capture(p, pid))
        && let Err(e) = leftover::write(records, &wake.agent_id, &record)
    {
        tracing::warn!(
            "{id}: cannot record the running wake in {}: {e}",
            records.display()
        );
    }
    shared.with_live(|l| {
        if let Some(r) = l.running.get_mut(&wake.agent_id) {
            r.pid = Some(pid);
        }
    });
    // The prompt goes on stdin, which is then closed: an open silent pipe
    // stalls claude.
    if let Some(mut stdin) = sup.child.stdin.take()
        && let Err(e) = write_prompt(&mut stdin, &prepared.stdin_text).await
    {
        tracing::warn!("{id}: writing the prompt to claude's stdin failed: {e}");
    }
    shared.metrics.ack(AckStatus::Started);
    shared.outbox.push(Outbound::Ack {
        message_id: wake.message_id.clone(),
        status: AckStatus::Started,
        seq: None,
    });
    shared.outbox.push(Outbound::Status {
        agent_id: wake.agent_id.clone(),
        status: WakeStatus::Running,
        exit_code: None,
        usage: None,
    });
}

async fn write_prompt(stdin: &mut tokio::process::ChildStdin, prompt: &str) -> std::io::Result<()> {
    stdin.write_all(prompt.as_bytes()).await?;
    stdin.write_all(b"\n").await
}

fn set_current_session(layout: &AgentLayout, session: Option<&str>) {
    let path = layout.current_session();
    let result = match session {
        Some(s) => fsutil::write_replace(&path, s.as_bytes(), 0o600),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = result {
        tracing::warn!("cannot update {}: {e}", path.display());
    }
}

fn read_last_spawn(layout: &AgentLayout) -> Option<Value> {
    let bytes = std::fs::read(layout.last_spawn()).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// Update `last-spawn.json` (2-space JSON, no trailing newline, as the
/// original), atomically and 0600: stderr may carry paths and tokens.
fn write_last_spawn(layout: &AgentLayout, update: impl FnOnce(&mut Value)) {
    let mut v = read_last_spawn(layout).unwrap_or_else(|| json!({}));
    update(&mut v);
    let text = fsutil::json_pretty("last-spawn.json", &v);
    if let Err(e) = fsutil::write_replace(&layout.last_spawn(), text.as_bytes(), 0o600) {
        tracing::warn!("cannot write {}: {e}", layout.last_spawn().display());
    }
}
