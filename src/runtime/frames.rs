//! Wire frames (PROTOCOL §1): parsing what the backend sends, strictly
//! enough that a malformed frame is reported and skipped instead of killing
//! the daemon, and building what the daemon sends with the original's exact
//! key sets and order.

use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::paths::AgentId;

/// A frame from the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Hello {
        host_id: String,
    },
    Ping,
    Assign(Assign),
    Unassign {
        agent_id: String,
        reason: Option<String>,
    },
    Deliver(Deliver),
    ToolResult(ToolResult),
    Bye {
        reason: String,
    },
    /// A known-harmless or unknown type: logged and ignored.
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deliver {
    pub seq: i64,
    pub agent_id: AgentId,
    /// Opaque JSON value (normally a string), echoed in acks as received.
    pub message_id: Value,
    pub wake_id: Option<String>,
    pub payload: Map<String, Value>,
}

impl Deliver {
    /// Dedup key: the message id's JSON text, so `"236"` and `236` differ as
    /// they did in the original.
    pub fn message_key(&self) -> String {
        message_key(&self.message_id)
    }
}

pub fn message_key(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub agent_id: AgentId,
    pub agent_name: String,
    pub is_chief: bool,
    pub role: String,
    pub workspace_slug: String,
    pub reports_to: String,
    /// Per-agent cwd override; `None` clears it (PROTOCOL §1.4).
    pub workspace_root: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub request_id: String,
    pub ok: bool,
    pub data: Option<Value>,
    pub error: Option<Value>,
}

#[derive(Debug, Error, PartialEq)]
pub enum FrameError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("no string `type`")]
    NoType,
    #[error("{ty} frame: {field}: {why}")]
    Field {
        ty: String,
        field: &'static str,
        why: String,
    },
}

fn field_err(ty: &str, field: &'static str, why: impl Into<String>) -> FrameError {
    FrameError::Field {
        ty: ty.to_string(),
        field,
        why: why.into(),
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

pub fn parse(text: &str) -> Result<Inbound, FrameError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let Value::Object(mut frame) = value else {
        return Err(FrameError::NotObject);
    };
    let ty = match frame.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(FrameError::NoType),
    };
    let payload = match frame.remove("payload") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(field_err(&ty, "payload", "must be an object")),
    };
    let agent_id = |p: &Map<String, Value>| -> Result<AgentId, FrameError> {
        let raw = non_empty_str(p.get("agent_id")).ok_or_else(|| {
            field_err(&ty, "payload.agent_id", "missing or not a non-empty string")
        })?;
        AgentId::parse(&raw).map_err(|e| field_err(&ty, "payload.agent_id", e))
    };
    Ok(match ty.as_str() {
        "hello" => Inbound::Hello {
            host_id: payload
                .get("host_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        "ping" => Inbound::Ping,
        "deliver" => {
            let seq = match frame.get("seq") {
                Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or_default(),
                Some(Value::Number(n)) if n.is_u64() => {
                    return Err(field_err(&ty, "seq", "out of range"));
                }
                Some(_) => return Err(field_err(&ty, "seq", "must be an integer")),
                None => return Err(field_err(&ty, "seq", "missing")),
            };
            let agent_id = agent_id(&payload)?;
            let message_id = match payload.get("message_id") {
                Some(v @ Value::String(s)) if !s.is_empty() => v.clone(),
                Some(v @ Value::Number(_)) => v.clone(),
                _ => {
                    return Err(field_err(
                        &ty,
                        "payload.message_id",
                        "missing or not a non-empty string/number",
                    ));
                }
            };
            let wake_id = match payload.get("wake_id") {
                v if !truthy(v) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            };
            if let Some(body) = payload.get("body")
                && !body.is_null()
                && !body.is_string()
            {
                return Err(field_err(&ty, "payload.body", "must be a string"));
            }
            Inbound::Deliver(Deliver {
                seq,
                agent_id,
                message_id,
                wake_id,
                payload,
            })
        }
        "assign" => {
            let agent_id = agent_id(&payload)?;
            let text = |key: &str, default: &str| {
                non_empty_str(payload.get(key)).unwrap_or_else(|| default.to_string())
            };
            Inbound::Assign(Assign {
                agent_name: text("agent_name", agent_id.as_str()),
                is_chief: truthy(payload.get("is_chief")),
                role: text("role", "staff"),
                workspace_slug: text("workspace_slug", "default"),
                reports_to: text("reports_to", "(unset)"),
                workspace_root: non_empty_str(payload.get("workspace_root")),
                agent_id,
            })
        }
        "unassign" => Inbound::Unassign {
            agent_id: payload
                .get("agent_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            reason: payload
                .get("reason")
                .and_then(Value::as_str)
                .map(String::from),
        },
        "tool_result" => {
            let request_id = non_empty_str(payload.get("request_id")).ok_or_else(|| {
                field_err(
                    &ty,
                    "payload.request_id",
                    "missing or not a non-empty string",
                )
            })?;
            Inbound::ToolResult(ToolResult {
                request_id,
                ok: truthy(payload.get("ok")),
                data: payload.get("data").cloned(),
                error: payload.get("error").cloned().filter(|e| !e.is_null()),
            })
        }
        "bye" => Inbound::Bye {
            reason: match payload.get("reason") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
        },
        _ => Inbound::Other(ty),
    })
}

/// `frm_` + 16 lowercase hex digits (PROTOCOL §1.1).
pub fn new_frame_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("frm_{}", &hex[..16])
}

/// UTC ISO-8601 with microseconds and `+00:00` (always with the fraction,
/// unlike the original when microseconds were 0).
pub fn now_ts() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

/// A complete outbound frame, serialised.
pub fn envelope(ty: &str, payload: Value) -> String {
    json!({"v": 1, "type": ty, "id": new_frame_id(), "ts": now_ts(), "payload": payload})
        .to_string()
}

pub fn pong() -> String {
    envelope("pong", json!({}))
}

pub fn resume(last_seq: i64) -> String {
    envelope("resume", json!({"last_seq": last_seq}))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    Received,
    Started,
    QueueFull,
}

pub fn delivery_ack(message_id: &Value, status: AckStatus, seq: Option<i64>) -> String {
    let mut p = Map::new();
    p.insert("message_id".into(), message_id.clone());
    p.insert(
        "status".into(),
        Value::from(match status {
            AckStatus::Received => "received",
            AckStatus::Started => "started",
            AckStatus::QueueFull => "queue_full",
        }),
    );
    if let Some(seq) = seq {
        p.insert("seq".into(), Value::from(seq));
    }
    envelope("delivery_ack", Value::Object(p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeStatus {
    Running,
    Idle,
    Crashed,
    Timeout,
}

impl WakeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Idle => "idle",
            Self::Crashed => "crashed",
            Self::Timeout => "timeout",
        }
    }
}

pub fn agent_status(agent_id: &str, status: WakeStatus, exit_code: Option<i64>) -> String {
    let mut p = Map::new();
    p.insert("agent_id".into(), Value::from(agent_id));
    p.insert("status".into(), Value::from(status.as_str()));
    if let Some(code) = exit_code {
        p.insert("exit_code".into(), Value::from(code));
    }
    envelope("agent_status", Value::Object(p))
}

pub fn agent_session_start(agent_id: &str, claude_session_id: &str) -> String {
    envelope(
        "agent_session_start",
        json!({"agent_id": agent_id, "claude_session_id": claude_session_id}),
    )
}

pub fn tool_call(
    request_id: &str,
    agent_id: &str,
    session_id: Option<&str>,
    tool_name: &str,
    args: Value,
) -> String {
    envelope(
        "tool_call",
        json!({"request_id": request_id, "agent_id": agent_id, "session_id": session_id, "tool_name": tool_name, "args": args}),
    )
}

/// `req_` + 32 lowercase hex digits (PROTOCOL §1.2).
pub fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_is_parsed() {
        let f = parse(r#"{"v":1,"type":"deliver","id":"frm_s","ts":"t","seq":42,"payload":{"agent_id":"agent_x","message_id":"236","wake_id":"wk_9","body":"hi"}}"#).unwrap();
        let Inbound::Deliver(d) = f else { panic!() };
        assert_eq!(d.seq, 42);
        assert_eq!(d.agent_id.as_str(), "agent_x");
        assert_eq!(d.message_key(), "236");
        assert_eq!(d.wake_id.as_deref(), Some("wk_9"));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let cases = [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            ("{\"payload\":{}}", "no string `type`"),
            (
                r#"{"type":"deliver","payload":{"agent_id":"a","message_id":"m"}}"#,
                "seq: missing",
            ),
            (
                r#"{"type":"deliver","seq":"4","payload":{"agent_id":"a","message_id":"m"}}"#,
                "seq: must be an integer",
            ),
            (
                r#"{"type":"deliver","seq":4.5,"payload":{"agent_id":"a","message_id":"m"}}"#,
                "seq: must be an integer",
            ),
            (
                r#"{"type":"deliver","seq":4,"payload":null}"#,
                "payload.agent_id",
            ),
            (
                r#"{"type":"deliver","seq":4,"payload":{"agent_id":"a"}}"#,
                "payload.message_id",
            ),
            (
                r#"{"type":"deliver","seq":4,"payload":{"agent_id":"../x","message_id":"m"}}"#,
                "invalid agent id",
            ),
            (
                r#"{"type":"deliver","seq":4,"payload":{"agent_id":"a","message_id":"m","body":5}}"#,
                "payload.body",
            ),
            (
                r#"{"type":"deliver","seq":4,"payload":[1]}"#,
                "payload: must be an object",
            ),
            (
                r#"{"type":"tool_result","payload":{"ok":true}}"#,
                "payload.request_id",
            ),
            (r#"{"type":"assign","payload":{}}"#, "payload.agent_id"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert_eq!(
            parse(r#"{"type":"weird"}"#).unwrap(),
            Inbound::Other("weird".into())
        );
    }

    #[test]
    fn ack_key_order_matches_the_original() {
        let a: Value =
            serde_json::from_str(&delivery_ack(&json!("236"), AckStatus::Received, Some(42)))
                .unwrap();
        assert_eq!(
            a["payload"].to_string(),
            r#"{"message_id":"236","status":"received","seq":42}"#
        );
        let a: Value =
            serde_json::from_str(&delivery_ack(&json!("236"), AckStatus::Started, None)).unwrap();
        assert_eq!(
            a["payload"].to_string(),
            r#"{"message_id":"236","status":"started"}"#
        );
        let keys: Vec<&String> = a.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["v", "type", "id", "ts", "payload"]);
        let id = a["id"].as_str().unwrap();
        assert!(id.starts_with("frm_") && id.len() == 20);
        assert!(a["ts"].as_str().unwrap().ends_with("+00:00"));
    }

    #[test]
    fn assign_defaults() {
        let Inbound::Assign(a) =
            parse(r#"{"type":"assign","payload":{"agent_id":"a1","is_chief":1}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.agent_name, "a1");
        assert!(a.is_chief);
        assert_eq!(a.role, "staff");
        assert_eq!(a.reports_to, "(unset)");
        assert_eq!(a.workspace_root, None);
    }
}
