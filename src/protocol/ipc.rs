//! Requests and replies between the MCP bridge (and `status`) and the
//! daemon over the profile's socket (docs/PROTOCOL.md, "IPC"): one compact
//! JSON object per line each way,
//! `{"request_id","op","args"}` → `{"request_id","result"}` or
//! `{"request_id","error":{"code","message"}}`. The operation and its
//! arguments are parsed into a [`Request`] before anything acts on them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a peer asks the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A tool call from claude, through its bridge.
    ToolCall(ToolCallArgs),
    /// The business session of the agent's running wake.
    GetCurrentSession(SessionArgs),
    /// The daemon's status report (for `status`).
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallArgs {
    pub agent_id: String,
    pub tool_name: String,
    #[serde(default = "empty_object")]
    pub tool_args: Value,
    /// The business session, when the bridge knows it (the daemon fills
    /// in the running wake's otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The running wake's token, from the file the daemon wrote for it
    /// (SECURITY.md, "The bridge socket").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionArgs {
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A request line as it arrives, before its operation is known.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestLine {
    pub request_id: String,
    pub op: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl IpcError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<IpcError>,
}

impl Request {
    pub fn op(&self) -> &'static str {
        match self {
            Self::ToolCall(_) => "tool_call",
            Self::GetCurrentSession(_) => "get_current_session",
            Self::Status => "status",
        }
    }

    /// The request's `args` as sent.
    pub fn args(&self) -> Value {
        let v = match self {
            Self::ToolCall(a) => serde_json::to_value(a),
            Self::GetCurrentSession(a) => serde_json::to_value(a),
            Self::Status => Ok(empty_object()),
        };
        v.unwrap_or_else(|_| empty_object())
    }

    /// Type the operation and its arguments; an unknown operation or bad
    /// arguments is an error the peer gets back.
    pub fn parse(op: &str, args: Value) -> Result<Self, IpcError> {
        let bad = |e: serde_json::Error| IpcError::new("BAD_ARGS", format!("{op}: {e}"));
        Ok(match op {
            "tool_call" => Self::ToolCall(serde_json::from_value(args).map_err(bad)?),
            "get_current_session" => {
                Self::GetCurrentSession(serde_json::from_value(args).map_err(bad)?)
            }
            "status" => Self::Status,
            other => {
                return Err(IpcError::new(
                    "UNKNOWN_OP",
                    format!("{:?}", other.chars().take(64).collect::<String>()),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_cross_the_socket_unchanged() {
        // A tool's result passes through the daemon as a JSON value: a
        // number must be read exactly (serde_json's `float_roundtrip`), or
        // its re-encoding differs from what the backend sent (found by the
        // ipc fuzz target, fuzz/README.md).
        let line = br#"{"request_id":"ipc_","result":[21e+300,0.1,5e-324,1.7976931348623157e308]}"#;
        let resp: Response = serde_json::from_slice(line).unwrap();
        let result = resp.result.clone().unwrap();
        assert_eq!(result[0].as_f64(), Some(2.1e301));
        let again: Response = serde_json::from_slice(&serde_json::to_vec(&resp).unwrap()).unwrap();
        assert_eq!(again.result, Some(result));
    }

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        let r = Request::ToolCall(ToolCallArgs {
            agent_id: "a".into(),
            tool_name: "send_message".into(),
            tool_args: json!({"target": "user"}),
            session_id: None,
            token: Some("t".into()),
        });
        assert_eq!(Request::parse(r.op(), r.args()).unwrap(), r);
        assert_eq!(
            Request::parse("status", Value::Null).unwrap(),
            Request::Status
        );
        let e = Request::parse("tool_call", json!({"agent_id": "a"})).unwrap_err();
        assert_eq!(e.code, "BAD_ARGS");
        assert!(e.message.contains("tool_name"), "{e:?}");
        let e = Request::parse(
            "tool_call",
            json!({"agent_id": "a", "tool_name": "x", "op": 1}),
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e:?}");
        let e = Request::parse("rm\n-rf", json!({})).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("UNKNOWN_OP", "\"rm\\n-rf\"")
        );
    }
}
