//! One wake (PROTOCOL §4): run claude for one accepted message, report
//! progress to the backend, and record the outcome.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::command::{self, Spec};
use super::process;
use super::prompt;
use super::stream::Transcript;
use super::token::WakeToken;
use crate::config::MAX_WAKE_TIMEOUT_SEC;
use crate::fsutil;
use crate::paths::AgentId;
use crate::protocol::frames::DeliverPayload;
use crate::protocol::outbound::now_ts;
use crate::protocol::tools::{SEND_MESSAGE, claude_name};
use crate::protocol::{AckStatus, Outbound, WakeStatus};
use crate::runtime::agents;
use crate::runtime::delivery::ledger::PendingWake;
use crate::runtime::failpoint;
use crate::runtime::settings::Settings;
use crate::runtime::shared::{Grant, RunningWake, Shared};
use crate::runtime::tool_calls::Call;
use crate::workspace::AgentLayout;

/// Longest stdout line accepted from claude (the original's limit).
const MAX_LINE: usize = 10 * 1024 * 1024;
/// stderr kept for `last-spawn.json` and the stale-session check.
const STDERR_TAIL_CHARS: usize = 2000;
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
            return finish(shared, &wake, WakeStatus::Crashed, -1);
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
    write_last_spawn(&layout, |v| {
        *v = json!({
            "exit_code": attempt.exit_code,
            "session_id": session_id,
            "stderr_tail": tail,
            "ts": now_ts(),
        })
    });

    let status = if attempt.timed_out {
        WakeStatus::Timeout
    } else if succeeded {
        WakeStatus::Idle
    } else {
        WakeStatus::Crashed
    };
    finish(shared, &wake, status, attempt.exit_code)
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
    finish(shared, wake, WakeStatus::Crashed, -1);
}

/// The message is done: never run again, and the backend is told how it
/// ended.
fn finish(shared: &Arc<Shared>, wake: &PendingWake, status: WakeStatus, exit_code: i64) -> WakeEnd {
    shared.with_ledger(|l| l.finish(&wake.message_id));
    shared.want_sync();
    shared.outbox.push(Outbound::Status {
        agent_id: wake.agent_id.clone(),
        status,
        exit_code: Some(exit_code),
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
    match shared.tools.call(call).await {
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
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    process::configure(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "cannot start {} in {}: {e}",
                program.display(),
                cwd.display()
            );
            tracing::error!("{id}: {msg}");
            return Attempt {
                exit_code: 126,
                spawn_error: Some(msg),
                ..Attempt::default()
            };
        }
    };
    let pgid = process::group_of(&child);
    shared.with_live(|l| {
        if let Some(r) = l.running.get_mut(&wake.agent_id) {
            r.pid = child.id();
        }
    });
    // The prompt goes on stdin, which is then closed: an open silent pipe
    // stalls claude.
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = write_prompt(&mut stdin, &prepared.stdin_text).await
    {
        tracing::warn!("{id}: writing the prompt to claude's stdin failed: {e}");
    }
    shared.outbox.push(Outbound::Ack {
        message_id: wake.message_id.clone(),
        status: AckStatus::Started,
        seq: None,
    });
    shared.outbox.push(Outbound::Status {
        agent_id: wake.agent_id.clone(),
        status: WakeStatus::Running,
        exit_code: None,
    });

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stderr_task = tokio::spawn(read_tail(stderr));
    let mut transcript = Transcript::default();
    // Checked: validation caps wake_timeout_sec, but an overflow must
    // never panic a wake.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(s.wake_timeout)
        .unwrap_or(now + Duration::from_secs(MAX_WAKE_TIMEOUT_SEC));

    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        Timeout,
        Cancelled,
    }
    let end = {
        let run = async {
            read_stdout(stdout, &mut transcript, id).await;
            child.wait().await
        };
        tokio::select! {
            status = run => End::Exited(status),
            _ = tokio::time::sleep_until(deadline) => End::Timeout,
            _ = shared.cancel.cancelled() => End::Cancelled,
        }
    };
    let mut result = Attempt::default();
    match end {
        End::Exited(Ok(status)) => {
            result.exit_code = process::exit_code(status);
            process::reap_group(pgid);
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
            let status = process::stop(&mut child, pgid, shared.timing.kill_grace).await;
            result.exit_code = status.map(process::exit_code).unwrap_or(-9);
            result.timed_out = timed_out;
            result.interrupted = !timed_out;
        }
    }
    result.stderr_tail = stderr_task.await.unwrap_or_default();
    result.transcript = transcript;
    result
}

async fn write_prompt(stdin: &mut tokio::process::ChildStdin, prompt: &str) -> std::io::Result<()> {
    stdin.write_all(prompt.as_bytes()).await?;
    stdin.write_all(b"\n").await
}

/// Feed claude's stdout to the transcript, one line at a time, with a cap
/// on line length (a longer line is dropped, not fatal).
async fn read_stdout(
    stdout: Option<impl AsyncRead + Unpin>,
    transcript: &mut Transcript,
    id: &str,
) {
    let Some(mut out) = stdout else { return };
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let n = match out.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            if !skipping {
                line.extend_from_slice(&chunk[..pos]);
                transcript.feed_line(&String::from_utf8_lossy(&line));
            }
            line.clear();
            skipping = false;
            chunk = &chunk[pos + 1..];
        }
        if !skipping {
            line.extend_from_slice(chunk);
            if line.len() > MAX_LINE {
                tracing::warn!("{id}: claude wrote a stdout line over {MAX_LINE} bytes; skipped");
                line.clear();
                skipping = true;
            }
        }
    }
    if !line.is_empty() && !skipping {
        transcript.feed_line(&String::from_utf8_lossy(&line));
    }
}

/// The last `STDERR_TAIL_CHARS` characters of a stream.
async fn read_tail(stderr: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut err) = stderr else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match err.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 64 * 1024 {
                    kept.drain(..kept.len() - 16 * 1024);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&kept);
    let count = text.chars().count();
    text.chars()
        .skip(count.saturating_sub(STDERR_TAIL_CHARS))
        .collect()
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
