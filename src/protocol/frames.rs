//! Frames from the backend (docs/PROTOCOL.md, "Frames"), parsed once into
//! types. A malformed frame is an error the caller logs and skips; it never
//! ends the connection or the daemon (the original crashed on them).
//!
//! A `deliver`'s payload is not copied here: it stays a slice of the frame
//! text until the ledger writes it to the journal, where the wake reads it
//! back ([`DeliverPayload`]) when its turn comes.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

use super::message::MessageId;
use crate::paths::AgentId;

/// Longest `request_id`/`wake_id`/`host_id` accepted (they are echoed in
/// logs and kept in memory).
const MAX_TOKEN_BYTES: usize = 512;

/// A frame from the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound<'a> {
    Hello {
        host_id: String,
    },
    Ping,
    Assign(Assign),
    Unassign {
        agent_id: String,
        reason: String,
    },
    Deliver(Deliver<'a>),
    ToolResult(ToolResult),
    Bye {
        reason: String,
    },
    /// A known-harmless or unknown type: logged and ignored.
    Other(String),
}

#[derive(Debug, Clone)]
pub struct Deliver<'a> {
    pub seq: i64,
    pub agent_id: AgentId,
    pub message_id: MessageId,
    pub wake_id: Option<String>,
    /// The payload's JSON text, as received.
    pub payload: &'a RawValue,
}

impl PartialEq for Deliver<'_> {
    fn eq(&self, other: &Self) -> bool {
        (self.seq, &self.agent_id, &self.message_id, &self.wake_id)
            == (
                other.seq,
                &other.agent_id,
                &other.message_id,
                &other.wake_id,
            )
            && self.payload.get() == other.payload.get()
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
    /// Per-agent cwd override as the backend sent it, unchecked (the
    /// workspace policy decides); `None` clears it.
    pub workspace_root: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub request_id: String,
    pub ok: bool,
    pub data: Option<Value>,
    pub error: Option<ToolError>,
}

/// A tool call's failure, as the backend reports it (or the daemon does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    pub code: String,
    pub message: String,
}

impl ToolError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// From the backend's `error` value: `{"code","message"}`, leniently.
    fn from_value(v: &Value) -> Self {
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        let code = text("code");
        Self::new(
            if code.is_empty() {
                "UNKNOWN_ERROR"
            } else {
                code
            },
            text("message"),
        )
    }
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

/// The envelope, borrowing from the frame text.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", default)]
    ty: Option<Value>,
    #[serde(borrow, default)]
    seq: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// A payload's fields as JSON values (missing ones `None`); the payload
/// itself must be an object (or null/absent, which reads as empty).
type Fields = serde_json::Map<String, Value>;

pub fn parse(text: &str) -> Result<Inbound<'_>, FrameError> {
    if !text.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(e) => Err(FrameError::NotJson(e.to_string())),
            Ok(_) => Err(FrameError::NotObject),
        };
    }
    let env: Envelope =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let ty = match env.ty {
        Some(Value::String(t)) => t,
        _ => return Err(FrameError::NoType),
    };
    if let Some(raw) = env.payload
        && !matches!(first_byte(raw), b'{' | b'n')
    {
        return Err(field_err(&ty, "payload", "must be an object"));
    }
    Ok(match ty.as_str() {
        "deliver" => Inbound::Deliver(deliver(&ty, env.seq, env.payload)?),
        "hello" => Inbound::Hello {
            host_id: bounded(
                &ty,
                "payload.host_id",
                text_field(&fields(env.payload)?, "host_id"),
            )?,
        },
        "ping" => Inbound::Ping,
        "assign" => Inbound::Assign(assign(&ty, &fields(env.payload)?)?),
        "unassign" => {
            let p = fields(env.payload)?;
            Inbound::Unassign {
                agent_id: text_field(&p, "agent_id"),
                reason: text_field(&p, "reason"),
            }
        }
        "tool_result" => Inbound::ToolResult(tool_result(&ty, &fields(env.payload)?)?),
        "bye" => Inbound::Bye {
            reason: match fields(env.payload)?.get("reason") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
        },
        _ => Inbound::Other(ty),
    })
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().bytes().next().unwrap_or(b'n')
}

fn fields(payload: Option<&RawValue>) -> Result<Fields, FrameError> {
    match payload {
        Some(raw) if first_byte(raw) == b'{' => {
            serde_json::from_str(raw.get()).map_err(|e| FrameError::NotJson(e.to_string()))
        }
        _ => Ok(Fields::new()),
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn text_field(p: &Fields, key: &str) -> String {
    non_empty_str(p.get(key)).unwrap_or_default()
}

fn bounded(ty: &str, field: &'static str, s: String) -> Result<String, FrameError> {
    if s.len() > MAX_TOKEN_BYTES {
        return Err(field_err(
            ty,
            field,
            format!("longer than {MAX_TOKEN_BYTES} bytes"),
        ));
    }
    Ok(s)
}

/// Python truthiness, as the original read flags (`is_chief`, `ok`).
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

fn agent_id(ty: &str, p: &Fields) -> Result<AgentId, FrameError> {
    let raw = non_empty_str(p.get("agent_id"))
        .ok_or_else(|| field_err(ty, "payload.agent_id", "missing or not a non-empty string"))?;
    AgentId::parse(&raw).map_err(|e| field_err(ty, "payload.agent_id", e))
}

/// The few fields of a deliver the delivery path needs, read without
/// copying the rest of the payload.
#[derive(Deserialize)]
struct DeliverHead<'a> {
    #[serde(default)]
    agent_id: Option<Value>,
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    wake_id: Option<Value>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

fn deliver<'a>(
    ty: &str,
    seq: Option<&RawValue>,
    payload: Option<&'a RawValue>,
) -> Result<Deliver<'a>, FrameError> {
    let seq = match seq.map(|s| serde_json::from_str::<Value>(s.get())) {
        None => return Err(field_err(ty, "seq", "missing")),
        Some(Ok(Value::Number(n))) if n.is_i64() => n.as_i64().unwrap_or_default(),
        Some(Ok(Value::Number(n))) if n.is_u64() => {
            return Err(field_err(ty, "seq", "out of range"));
        }
        Some(_) => return Err(field_err(ty, "seq", "must be an integer")),
    };
    let Some(payload) = payload.filter(|p| first_byte(p) == b'{') else {
        return Err(field_err(ty, "payload.agent_id", "missing (no payload)"));
    };
    let head: DeliverHead =
        serde_json::from_str(payload.get()).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let mut p = Fields::new();
    if let Some(a) = head.agent_id {
        p.insert("agent_id".into(), a);
    }
    let agent_id = agent_id(ty, &p)?;
    let message_id = MessageId::parse(head.message_id.unwrap_or(Value::Null))
        .map_err(|e| field_err(ty, "payload.message_id", e))?;
    let wake_id = match head.wake_id {
        v if !truthy(v.as_ref()) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
        None => None,
    };
    let wake_id = wake_id
        .map(|w| bounded(ty, "payload.wake_id", w))
        .transpose()?;
    if let Some(body) = head.body
        && !matches!(first_byte(body), b'"' | b'n')
    {
        return Err(field_err(ty, "payload.body", "must be a string"));
    }
    Ok(Deliver {
        seq,
        agent_id,
        message_id,
        wake_id,
        payload,
    })
}

fn assign(ty: &str, p: &Fields) -> Result<Assign, FrameError> {
    let agent_id = agent_id(ty, p)?;
    let text =
        |key: &str, default: &str| non_empty_str(p.get(key)).unwrap_or_else(|| default.to_string());
    Ok(Assign {
        agent_name: text("agent_name", agent_id.as_str()),
        is_chief: truthy(p.get("is_chief")),
        role: text("role", "staff"),
        workspace_slug: text("workspace_slug", "default"),
        reports_to: text("reports_to", "(unset)"),
        workspace_root: non_empty_str(p.get("workspace_root")),
        agent_id,
    })
}

fn tool_result(ty: &str, p: &Fields) -> Result<ToolResult, FrameError> {
    let request_id = non_empty_str(p.get("request_id")).ok_or_else(|| {
        field_err(
            ty,
            "payload.request_id",
            "missing or not a non-empty string",
        )
    })?;
    Ok(ToolResult {
        request_id: bounded(ty, "payload.request_id", request_id)?,
        ok: truthy(p.get("ok")),
        data: p.get("data").cloned(),
        error: p
            .get("error")
            .filter(|e| !e.is_null())
            .map(ToolError::from_value),
    })
}

/// What a wake needs of its deliver's payload, read back from the journal
/// when the wake runs (docs/PROTOCOL.md, "deliver"). Lenient: a field of an
/// unexpected type reads as absent, so a newer backend cannot stall a wake.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliverPayload {
    /// The business session (a non-empty string), for the bridge, partial
    /// publishing and the fallback reply.
    pub session_id: Option<String>,
    pub body: String,
    pub append_system_prompt: Option<String>,
    /// The `[meta]` header's fields, in header order: (key, value as text).
    pub meta: Vec<(&'static str, String)>,
    /// Lazy identity for an agent without a workspace (PROTOCOL §4.1).
    pub agent_name: Option<String>,
    pub role: Option<String>,
    pub workspace_slug: Option<String>,
}

/// The `[meta]` keys, in the order they are written (PROTOCOL §4.3).
pub const META_KEYS: [&str; 5] = [
    "dispatch_source",
    "from",
    "sender_role",
    "parent_msg_id",
    "message_id",
];

/// The payload fields a wake reads, besides [`META_KEYS`].
const PAYLOAD_KEYS: [&str; 6] = [
    "session_id",
    "body",
    "append_system_prompt",
    "agent_name",
    "role",
    "workspace_slug",
];

/// A payload's fields that [`DeliverPayload`] reads, each kept only when
/// it reads as a JSON value; every other field is skipped unread. The frame
/// parse checked only the payload's syntax (and its head) before the ack,
/// so a value serde_json cannot hold (a number out of f64 range, nesting
/// past its depth limit) must cost that one field, not the whole message.
/// A later duplicate key wins, as in a map.
struct WakeFields(Fields);

impl<'de> Deserialize<'de> for WakeFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(WakeFieldsVisitor)
    }
}

struct WakeFieldsVisitor;

impl<'de> serde::de::Visitor<'de> for WakeFieldsVisitor {
    type Value = WakeFields;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<WakeFields, A::Error> {
        let mut fields = Fields::new();
        while let Some(key) = map.next_key::<String>()? {
            if !PAYLOAD_KEYS.contains(&key.as_str()) && !META_KEYS.contains(&key.as_str()) {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let raw: &'de RawValue = map.next_value()?;
            match serde_json::from_str(raw.get()) {
                Ok(v) => fields.insert(key, v),
                Err(_) => fields.remove(&key),
            };
        }
        Ok(WakeFields(fields))
    }
}

impl DeliverPayload {
    pub fn parse(json: &str) -> Result<Self, String> {
        let WakeFields(p) = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let meta = META_KEYS
            .iter()
            .filter_map(|key| {
                let value = match p.get(*key)? {
                    Value::Null => return None,
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some((*key, value))
            })
            .collect();
        Ok(Self {
            session_id: non_empty_str(p.get("session_id")),
            body: p
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            append_system_prompt: non_empty_str(p.get("append_system_prompt")),
            meta,
            agent_name: non_empty_str(p.get("agent_name")),
            role: non_empty_str(p.get("role")),
            workspace_slug: non_empty_str(p.get("workspace_slug")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_is_parsed_without_copying_its_payload() {
        let text = r#"{"v":1,"type":"deliver","id":"frm_s","ts":"t","seq":42,"payload":{"agent_id":"agent_x","message_id":"236","wake_id":"wk_9","body":"hi"}}"#;
        let Inbound::Deliver(d) = parse(text).unwrap() else {
            panic!()
        };
        assert_eq!(d.seq, 42);
        assert_eq!(d.agent_id.as_str(), "agent_x");
        assert_eq!(d.message_id.key(), "236");
        assert_eq!(d.wake_id.as_deref(), Some("wk_9"));
        let start = text.find(r#"{"agent_id""#).unwrap();
        assert_eq!(
            d.payload.get().as_ptr(),
            text[start..].as_ptr(),
            "the payload borrows from the frame text"
        );
        let p = DeliverPayload::parse(d.payload.get()).unwrap();
        assert_eq!(p.body, "hi");
        assert_eq!(p.meta, vec![("message_id", "236".to_string())]);
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
                r#"{"type":"deliver","seq":18446744073709551615,"payload":{"agent_id":"a","message_id":"m"}}"#,
                "seq: out of range",
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
            (
                r#"{"type":"deliver","seq":1,"payload":{"agent_id":"a""#,
                "not JSON",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let long = format!(
            r#"{{"type":"tool_result","payload":{{"request_id":"{}","ok":true}}}}"#,
            "r".repeat(MAX_TOKEN_BYTES + 1)
        );
        assert!(
            parse(&long)
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
        assert_eq!(
            parse(r#"{"type":"weird"}"#).unwrap(),
            Inbound::Other("weird".into())
        );
    }

    #[test]
    fn assign_defaults_and_tool_result_errors() {
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
        let Inbound::ToolResult(r) = parse(
            r#"{"type":"tool_result","payload":{"request_id":"r","ok":false,"error":{"code":"NOPE","message":"m"}}}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.error, Some(ToolError::new("NOPE", "m")));
        let Inbound::ToolResult(r) =
            parse(r#"{"type":"tool_result","payload":{"request_id":"r","error":"x"}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.error, Some(ToolError::new("UNKNOWN_ERROR", "")));
    }

    #[test]
    fn an_accepted_payload_always_reads_back() {
        // The frame parse reads only the head of a payload; a number out of
        // f64 range or nesting past serde_json's limit elsewhere in it made
        // the wake's read fail after the ack, and the message never ran
        // (found by the frames fuzz target, fuzz/README.md).
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let text = format!(
            r#"{{"type":"deliver","seq":1,"payload":{{"agent_id":"a","message_id":"m","x":1e400,"parent_msg_id":-1e999,"from":{deep},"sender_role":"chief","body":"hi"}}}}"#
        );
        let Inbound::Deliver(d) = parse(&text).unwrap() else {
            panic!()
        };
        let p = DeliverPayload::parse(d.payload.get()).unwrap();
        assert_eq!(p.body, "hi");
        assert_eq!(
            p.meta,
            vec![
                ("sender_role", "chief".to_string()),
                ("message_id", "m".to_string())
            ]
        );
        // Later duplicates win, as they did.
        let p =
            DeliverPayload::parse(r#"{"body":"a","body":"b","role":"x","role":1e400}"#).unwrap();
        assert_eq!((p.body.as_str(), p.role), ("b", None));
        assert!(DeliverPayload::parse("[1]").is_err());
    }

    #[test]
    fn payload_fields_are_typed_leniently() {
        let p = DeliverPayload::parse(
            r#"{"session_id":"","body":null,"append_system_prompt":7,"from":"user","parent_msg_id":12,"dispatch_source":null,"agent_name":"N"}"#,
        )
        .unwrap();
        assert_eq!(p.session_id, None);
        assert_eq!(p.body, "");
        assert_eq!(p.append_system_prompt, None);
        assert_eq!(
            p.meta,
            vec![
                ("from", "user".to_string()),
                ("parent_msg_id", "12".to_string())
            ]
        );
        assert_eq!(p.agent_name.as_deref(), Some("N"));
    }
}
