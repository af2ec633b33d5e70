//! `tool_call` frames out, `tool_result` frames matched back by
//! `request_id` (PROTOCOL §5.5). Late, unknown and duplicate results are
//! logged and dropped. A call that times out is withdrawn from the outbox
//! if it was not sent yet: its caller was told it failed, so the backend
//! must not perform it later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::delivery::outbox::Outbox;
use super::metrics::Metrics;
use crate::paths::AgentId;
use crate::protocol::Outbound;
use crate::protocol::frames::{ToolError, ToolResult};
use crate::protocol::outbound::{ToolCall, new_request_id};

pub struct ToolCalls {
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    pending: Mutex<HashMap<String, oneshot::Sender<ToolResult>>>,
}

/// One call to make.
pub struct Call<'a> {
    pub agent_id: &'a AgentId,
    pub session_id: Option<&'a str>,
    pub tool_name: &'a str,
    pub args: Value,
    pub timeout: Duration,
}

impl ToolCalls {
    pub fn new(outbox: Arc<Outbox>, metrics: Arc<Metrics>) -> Self {
        Self {
            outbox,
            metrics,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<ToolResult>>> {
        match self.pending.lock() {
            Ok(p) => p,
            Err(_) => super::fatal("the tool call lock is poisoned"),
        }
    }

    /// Send a tool call and wait up to its timeout for the result.
    pub async fn call(&self, call: Call<'_>) -> Result<Value, ToolError> {
        let request_id = new_request_id();
        let (tx, rx) = oneshot::channel();
        self.pending().insert(request_id.clone(), tx);
        self.outbox.push(Outbound::ToolCall(ToolCall {
            request_id: request_id.clone(),
            agent_id: call.agent_id.clone(),
            session_id: call.session_id.map(String::from),
            tool_name: call.tool_name.to_string(),
            args: call.args,
        }));
        let sent = std::time::Instant::now();
        let result = tokio::time::timeout(call.timeout, rx).await;
        self.pending().remove(&request_id);
        self.metrics.tool_call(call.tool_name, sent.elapsed());
        match result {
            Ok(Ok(r)) if r.ok => Ok(r.data.unwrap_or(Value::Null)),
            Ok(Ok(r)) => Err(r
                .error
                .unwrap_or_else(|| ToolError::new("UNKNOWN_ERROR", ""))),
            Ok(Err(_)) => Err(ToolError::new(
                "DAEMON_SHUTDOWN",
                "the daemon stopped before the backend answered",
            )),
            Err(_) => {
                if self.outbox.remove_tool_call(&request_id) {
                    tracing::warn!(
                        "{:?} {}: not sent within {:?} (no connection); withdrawn",
                        call.tool_name,
                        request_id,
                        call.timeout
                    );
                }
                Err(ToolError::new(
                    "SERVER_TIMEOUT",
                    format!(
                        "the backend did not answer {} within {} s",
                        call.tool_name,
                        call.timeout.as_secs_f64()
                    ),
                ))
            }
        }
    }

    /// A `tool_result` arrived.
    pub fn resolve(&self, result: ToolResult) {
        let waiter = self.pending().remove(&result.request_id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => tracing::warn!(
                "tool_result for unknown, late or duplicate request_id {:?}: dropped",
                result.request_id
            ),
        }
    }

    pub fn outstanding(&self) -> usize {
        self.pending().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call<'a>(agent: &'a AgentId, session: Option<&'a str>, tool: &'a str) -> Call<'a> {
        Call {
            agent_id: agent,
            session_id: session,
            tool_name: tool,
            args: json!({"x": 1}),
            timeout: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn result_is_matched_and_a_timed_out_call_is_withdrawn() {
        let outbox = Arc::new(Outbox::default());
        let calls = Arc::new(ToolCalls::new(outbox.clone(), Arc::default()));
        let agent = AgentId::parse("a").unwrap();
        let c = calls.clone();
        let a = agent.clone();
        let task = tokio::spawn(async move { c.call(call(&a, Some("s"), "send_message")).await });
        let Outbound::ToolCall(frame) = outbox.front().await else {
            panic!("not a tool call")
        };
        outbox.pop();
        assert_eq!(frame.session_id.as_deref(), Some("s"));
        calls.resolve(ToolResult {
            request_id: frame.request_id.clone(),
            ok: true,
            data: Some(json!({"message_id": 9})),
            error: None,
        });
        assert_eq!(task.await.unwrap(), Ok(json!({"message_id": 9})));
        // A duplicate is dropped without harm.
        calls.resolve(ToolResult {
            request_id: frame.request_id,
            ok: true,
            data: None,
            error: None,
        });

        // Nobody sends it (no connection): it times out and leaves the
        // outbox, so it can never reach the backend after the fact.
        let out = calls.call(call(&agent, None, "list_messages")).await;
        assert_eq!(out.unwrap_err().code, "SERVER_TIMEOUT");
        assert_eq!(calls.outstanding(), 0);
        assert!(outbox.is_empty(), "the timed-out call was withdrawn");
    }
}
