//! A message id as the backend sends it: an opaque JSON string or number,
//! echoed back exactly in acks. Dedup compares its key (a string as is, a
//! number's JSON text), so `"236"` and `236` are one message here, where
//! the original told them apart: a backend that changed an id's type would
//! otherwise run a message twice (docs/PROTOCOL.md, "deliver").

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest message id (its JSON text) accepted from the backend: ids are
/// kept in memory for every pending and recently processed message.
pub const MAX_ID_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Value);

impl MessageId {
    /// A non-empty string or a number, at most [`MAX_ID_BYTES`] long.
    pub fn parse(v: Value) -> Result<Self, String> {
        let ok = match &v {
            Value::String(s) => !s.is_empty(),
            Value::Number(_) => true,
            _ => false,
        };
        if !ok {
            return Err("missing or not a non-empty string/number".into());
        }
        let id = Self(v);
        if id.key().len() > MAX_ID_BYTES {
            return Err(format!("longer than {MAX_ID_BYTES} bytes"));
        }
        Ok(id)
    }

    pub fn string(s: &str) -> Self {
        Self(Value::String(s.to_string()))
    }

    /// The dedup key: the string itself, or a number's JSON text.
    pub fn key(&self) -> String {
        match &self.0 {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    pub fn as_value(&self) -> &Value {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escaped: the id comes from the backend and ends up in log lines.
        write!(f, "{:?}", self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_and_a_number_share_a_key_but_are_echoed_as_sent() {
        assert_eq!(MessageId::parse(json!("236")).unwrap().key(), "236");
        assert_eq!(MessageId::parse(json!(236)).unwrap().key(), "236");
        assert_ne!(
            MessageId::parse(json!("236")).unwrap(),
            MessageId::parse(json!(236)).unwrap()
        );
        for bad in [json!(""), json!(null), json!([1]), json!({"a": 1})] {
            assert!(MessageId::parse(bad).is_err());
        }
        assert!(MessageId::parse(json!("x".repeat(MAX_ID_BYTES + 1))).is_err());
        assert_eq!(
            MessageId::string("a\nb").to_string(),
            "\"a\\nb\"",
            "escaped for logs"
        );
    }
}
