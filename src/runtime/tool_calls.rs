//! `tool_call` frames out, `tool_result` frames matched back by
//! `request_id` (PROTOCOL §5.5). Late, unknown and duplicate results are
//! logged and dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::frames::{self, ToolResult};
use super::outbox::Outbox;

/// What the daemon hands back to the caller of a tool.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    Ok(Value),
    /// `{"code": …, "message": …}` as the backend sent it (or ours).
    Err(Value),
}

pub struct ToolCalls {
    outbox: Arc<Outbox>,
    pending: Mutex<HashMap<String, oneshot::Sender<ToolResult>>>,
}

impl ToolCalls {
    pub fn new(outbox: Arc<Outbox>) -> Self {
        Self {
            outbox,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Send a tool call and wait up to `timeout` for its result.
    pub async fn call(
        &self,
        agent_id: &str,
        session_id: Option<&str>,
        tool_name: &str,
        args: Value,
        timeout: Duration,
    ) -> ToolOutcome {
        let request_id = frames::new_request_id();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(request_id.clone(), tx);
        }
        self.outbox.push(frames::tool_call(
            &request_id,
            agent_id,
            session_id,
            tool_name,
            args,
        ));
        let result = tokio::time::timeout(timeout, rx).await;
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&request_id);
        }
        match result {
            Ok(Ok(r)) if r.ok => ToolOutcome::Ok(r.data.unwrap_or(Value::Null)),
            Ok(Ok(r)) => {
                ToolOutcome::Err(r.error.unwrap_or_else(|| json!({"code": "UNKNOWN_ERROR"})))
            }
            Ok(Err(_)) => ToolOutcome::Err(
                json!({"code": "DAEMON_SHUTDOWN", "message": "the daemon stopped before the backend answered"}),
            ),
            Err(_) => ToolOutcome::Err(json!({
                "code": "SERVER_TIMEOUT",
                "message": format!("the backend did not answer {tool_name} within {} s", timeout.as_secs_f64())
            })),
        }
    }

    /// A `tool_result` arrived.
    pub fn resolve(&self, result: ToolResult) {
        let waiter = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&result.request_id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => tracing::warn!(
                "tool_result for unknown, late or duplicate request_id {}: dropped",
                result.request_id
            ),
        }
    }

    pub fn outstanding(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn result_is_matched_and_timeout_is_reported() {
        let outbox = Arc::new(Outbox::default());
        let calls = Arc::new(ToolCalls::new(outbox.clone()));
        let c = calls.clone();
        let task = tokio::spawn(async move {
            c.call(
                "a",
                Some("s"),
                "send_message",
                json!({"x":1}),
                Duration::from_secs(30),
            )
            .await
        });
        let frame: Value = serde_json::from_str(&outbox.front().await).unwrap();
        assert_eq!(frame["type"], "tool_call");
        assert_eq!(frame["payload"]["session_id"], "s");
        let rid = frame["payload"]["request_id"].as_str().unwrap().to_string();
        calls.resolve(ToolResult {
            request_id: rid.clone(),
            ok: true,
            data: Some(json!({"message_id": 9})),
            error: None,
        });
        assert_eq!(
            task.await.unwrap(),
            ToolOutcome::Ok(json!({"message_id": 9}))
        );
        // A duplicate is dropped without harm.
        calls.resolve(ToolResult {
            request_id: rid,
            ok: true,
            data: None,
            error: None,
        });

        let out = calls
            .call(
                "a",
                None,
                "list_messages",
                json!({}),
                Duration::from_secs(30),
            )
            .await;
        let ToolOutcome::Err(e) = out else { panic!() };
        assert_eq!(e["code"], "SERVER_TIMEOUT");
        assert_eq!(calls.outstanding(), 0);
    }
}
