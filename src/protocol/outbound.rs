//! Frames the daemon sends (docs/PROTOCOL.md, "Frames"). They stay typed
//! until a transport encodes them: over WebSocket as an envelope
//! `{"v","type","id","ts","payload"}`, over SSE+POST as the payload alone,
//! POSTed to the frame type's path. Keys keep the original's order.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::message::MessageId;
use super::usage::Usage;
use crate::paths::AgentId;

#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Resume {
        last_seq: i64,
    },
    Pong,
    Ack {
        message_id: MessageId,
        status: AckStatus,
        /// Only on the `received` ack.
        seq: Option<i64>,
    },
    Status {
        agent_id: AgentId,
        status: WakeStatus,
        exit_code: Option<i64>,
        /// Only on a final status, when claude reported its usage.
        usage: Option<Usage>,
    },
    SessionStart {
        agent_id: AgentId,
        claude_session_id: String,
    },
    ToolCall(ToolCall),
    /// The text claude has streamed so far in a wake (SSE only).
    Partial {
        session_id: String,
        agent_id: AgentId,
        body: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub request_id: String,
    pub agent_id: AgentId,
    pub session_id: Option<String>,
    pub tool_name: String,
    pub args: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    Received,
    Started,
    QueueFull,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Started => "started",
            Self::QueueFull => "queue_full",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

    pub fn is_final(self) -> bool {
        self != Self::Running
    }
}

/// One installed AI coding CLI, as `ready` lists it (PROTOCOL §11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runtime {
    /// Runtime id, e.g. `claude_code`.
    pub name: String,
    /// First line of its version output, or `unknown`.
    pub version: String,
    /// The binary found.
    pub binary: String,
}

/// The `ready` payload: what this daemon can run (sent as a frame over
/// WebSocket, POSTed to `/v1/daemon/ready` over SSE).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ready {
    pub daemon_ver: &'static str,
    pub runtimes: Vec<Runtime>,
    pub hostname: String,
    pub os: String,
    /// Only when a host-level workspace root is set ("no change" otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_root: Option<String>,
}

impl Ready {
    pub fn new(runtimes: Vec<Runtime>, workspace_root: Option<String>) -> Self {
        let uname = rustix::system::uname();
        Self {
            daemon_ver: env!("CARGO_PKG_VERSION"),
            runtimes,
            hostname: uname.nodename().to_string_lossy().into_owned(),
            os: uname.sysname().to_string_lossy().to_lowercase(),
            workspace_root,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable_serialize(e))
    }

    /// The `ready` frame of the WebSocket handshake.
    pub fn envelope(&self) -> String {
        let payload = serde_json::to_value(self).unwrap_or_else(|e| unreachable_serialize(e));
        envelope("ready", payload)
    }
}

/// Serialising our own plain structs cannot fail (no maps with non-string
/// keys, no custom serializers); if it ever did, sending a half frame would
/// be worse than stopping.
fn unreachable_serialize(e: serde_json::Error) -> ! {
    panic!("serialising an outbound frame failed: {e}")
}

impl Outbound {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Resume { .. } => "resume",
            Self::Pong => "pong",
            Self::Ack { .. } => "delivery_ack",
            Self::Status { .. } => "agent_status",
            Self::SessionStart { .. } => "agent_session_start",
            Self::ToolCall(_) => "tool_call",
            Self::Partial { .. } => "publish_partial",
        }
    }

    /// Where the SSE+POST transport sends it; `None` for frames that only
    /// exist on WebSocket (PROTOCOL §2.1).
    pub fn http_path(&self) -> Option<&'static str> {
        Some(match self {
            Self::Resume { .. } | Self::Pong => return None,
            Self::Ack { .. } => "/v1/daemon/delivery-ack",
            Self::Status { .. } => "/v1/daemon/agent-status",
            Self::SessionStart { .. } => "/v1/daemon/agent-session-start",
            Self::ToolCall(_) => "/v1/daemon/tool-call",
            Self::Partial { .. } => "/v1/daemon/publish-partial",
        })
    }

    pub fn payload(&self) -> Value {
        match self {
            Self::Resume { last_seq } => json!({"last_seq": last_seq}),
            Self::Pong => json!({}),
            Self::Ack {
                message_id,
                status,
                seq,
            } => {
                let mut p = Map::new();
                p.insert("message_id".into(), message_id.as_value().clone());
                p.insert("status".into(), Value::from(status.as_str()));
                if let Some(seq) = seq {
                    p.insert("seq".into(), Value::from(*seq));
                }
                Value::Object(p)
            }
            Self::Status {
                agent_id,
                status,
                exit_code,
                usage,
            } => {
                let mut p = Map::new();
                p.insert("agent_id".into(), Value::from(agent_id.as_str()));
                p.insert("status".into(), Value::from(status.as_str()));
                if let Some(code) = exit_code {
                    p.insert("exit_code".into(), Value::from(*code));
                }
                if let Some(usage) = usage {
                    p.insert(
                        "usage".into(),
                        serde_json::to_value(usage).unwrap_or_else(|e| unreachable_serialize(e)),
                    );
                }
                Value::Object(p)
            }
            Self::SessionStart {
                agent_id,
                claude_session_id,
            } => json!({"agent_id": agent_id.as_str(), "claude_session_id": claude_session_id}),
            Self::ToolCall(c) => json!({
                "request_id": c.request_id,
                "agent_id": c.agent_id.as_str(),
                "session_id": c.session_id,
                "tool_name": c.tool_name,
                "args": c.args,
            }),
            Self::Partial {
                session_id,
                agent_id,
                body,
            } => json!({"session_id": session_id, "agent_id": agent_id.as_str(), "body": body}),
        }
    }

    /// The complete WebSocket frame.
    pub fn envelope(&self) -> String {
        envelope(self.type_name(), self.payload())
    }

    /// Approximate size in memory, for the outbox's bound.
    pub fn weight(&self) -> usize {
        64 + match self {
            Self::ToolCall(c) => c.args.to_string().len() + c.tool_name.len(),
            Self::Partial { body, .. } => body.len(),
            _ => 0,
        }
    }
}

/// `frm_` + 16 lowercase hex digits (PROTOCOL §1.1).
pub fn new_frame_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("frm_{}", &hex[..16])
}

/// `req_` + 32 lowercase hex digits (PROTOCOL §1.2).
pub fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

/// UTC ISO-8601 with microseconds and `+00:00` (always with the fraction,
/// unlike the original when microseconds were 0).
pub fn now_ts() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

fn envelope(ty: &str, payload: Value) -> String {
    json!({"v": 1, "type": ty, "id": new_frame_id(), "ts": now_ts(), "payload": payload})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentId {
        AgentId::parse("agent_x").unwrap()
    }

    #[test]
    fn ack_key_order_matches_the_original() {
        let ack = Outbound::Ack {
            message_id: MessageId::string("236"),
            status: AckStatus::Received,
            seq: Some(42),
        };
        assert_eq!(
            ack.payload().to_string(),
            r#"{"message_id":"236","status":"received","seq":42}"#
        );
        let a: Value = serde_json::from_str(&ack.envelope()).unwrap();
        let keys: Vec<&String> = a.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["v", "type", "id", "ts", "payload"]);
        let id = a["id"].as_str().unwrap();
        assert!(id.starts_with("frm_") && id.len() == 20);
        assert!(a["ts"].as_str().unwrap().ends_with("+00:00"));
        let started = Outbound::Ack {
            message_id: MessageId::string("236"),
            status: AckStatus::Started,
            seq: None,
        };
        assert_eq!(
            started.payload().to_string(),
            r#"{"message_id":"236","status":"started"}"#
        );
    }

    #[test]
    fn status_tool_call_and_paths() {
        let s = Outbound::Status {
            agent_id: agent(),
            status: WakeStatus::Idle,
            exit_code: Some(0),
            usage: None,
        };
        assert_eq!(
            s.payload().to_string(),
            r#"{"agent_id":"agent_x","status":"idle","exit_code":0}"#
        );
        let with_usage = Outbound::Status {
            agent_id: agent(),
            status: WakeStatus::Idle,
            exit_code: Some(0),
            usage: Some(crate::protocol::Usage {
                input_tokens: 3,
                total_cost_usd: 0.5,
                ..Default::default()
            }),
        };
        assert_eq!(
            with_usage.payload().to_string(),
            r#"{"agent_id":"agent_x","status":"idle","exit_code":0,"usage":{"input_tokens":3,"output_tokens":0,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"total_cost_usd":0.5,"num_turns":0,"duration_ms":0}}"#
        );
        assert_eq!(s.http_path(), Some("/v1/daemon/agent-status"));
        let c = Outbound::ToolCall(ToolCall {
            request_id: "req_1".into(),
            agent_id: agent(),
            session_id: None,
            tool_name: "send_message".into(),
            args: json!({"target": "user"}),
        });
        assert_eq!(
            c.payload().to_string(),
            r#"{"request_id":"req_1","agent_id":"agent_x","session_id":null,"tool_name":"send_message","args":{"target":"user"}}"#
        );
        assert_eq!(Outbound::Pong.http_path(), None);
        assert_eq!(Outbound::Resume { last_seq: 1 }.http_path(), None);
    }

    #[test]
    fn ready_omits_an_unset_workspace_root() {
        let r = Ready::new(Vec::new(), None);
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["daemon_ver", "runtimes", "hostname", "os"]);
        let r = Ready::new(Vec::new(), Some("/w".into()));
        assert!(r.to_json().ends_with(r#""workspace_root":"/w"}"#));
    }
}
