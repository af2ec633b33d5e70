//! One wake's usage and cost, from claude's stream-json `result` event
//! (docs/PROTOCOL.md, "agent_status"): read at the edge into a typed value
//! that `last-spawn.json`, `status`, the metrics and the final
//! `agent_status` frame share. claude reports the token counts in `usage`
//! and the rest at the top of the event; each field is read on its own,
//! and one that is missing, negative or of another type reads as 0, so a
//! newer claude that moves a field cannot stall a wake.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Counts are capped here: a bogus value cannot overflow a sum.
const MAX_COUNT: u64 = 1 << 53;
/// A cost above this is not one wake's (claude's budgets are far lower).
const MAX_COST_USD: f64 = 1e6;

/// Keys and their order are the wire shape (`agent_status.usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub total_cost_usd: f64,
    pub num_turns: u64,
    pub duration_ms: u64,
}

impl Usage {
    /// From a `result` event; `None` when it carries none of the fields.
    pub fn from_result(event: &Map<String, Value>) -> Option<Self> {
        let usage = event.get("usage").and_then(Value::as_object);
        let has = |k: &str| usage.is_some_and(|u| u.contains_key(k)) || event.contains_key(k);
        if ![
            "input_tokens",
            "output_tokens",
            "total_cost_usd",
            "num_turns",
            "duration_ms",
        ]
        .iter()
        .any(|k| has(k))
        {
            return None;
        }
        let token = |k: &str| count(usage.and_then(|u| u.get(k)));
        Some(Self {
            input_tokens: token("input_tokens"),
            output_tokens: token("output_tokens"),
            cache_read_input_tokens: token("cache_read_input_tokens"),
            cache_creation_input_tokens: token("cache_creation_input_tokens"),
            total_cost_usd: cost(event.get("total_cost_usd")),
            num_turns: count(event.get("num_turns")),
            duration_ms: count(event.get("duration_ms")),
        })
    }

    /// Sum of two wakes' usage (per agent in `status`).
    pub fn add(&mut self, other: &Usage) {
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        add(&mut self.input_tokens, other.input_tokens);
        add(&mut self.output_tokens, other.output_tokens);
        add(
            &mut self.cache_read_input_tokens,
            other.cache_read_input_tokens,
        );
        add(
            &mut self.cache_creation_input_tokens,
            other.cache_creation_input_tokens,
        );
        add(&mut self.num_turns, other.num_turns);
        add(&mut self.duration_ms, other.duration_ms);
        self.total_cost_usd += other.total_cost_usd;
    }
}

fn count(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0).min(MAX_COUNT)
}

fn cost(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64)
        .filter(|c| c.is_finite() && *c >= 0.0)
        .map_or(0.0, |c| c.min(MAX_COST_USD))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_of(fixture: &str) -> Map<String, Value> {
        let path = format!(
            "{}/tests/fixtures/claude-code-2.1.197/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.as_object().cloned())
            .rfind(|o| o.get("type").and_then(Value::as_str) == Some("result"))
            .unwrap()
    }

    #[test]
    fn a_captured_result_is_read_whole() {
        let u = Usage::from_result(&result_of("run1-tool-call.stream.jsonl")).unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 3426,
                output_tokens: 58,
                cache_read_input_tokens: 0,
                cache_creation_input_tokens: 0,
                total_cost_usd: 0.01858,
                num_turns: 2,
                duration_ms: 178,
            }
        );
        let wire = serde_json::to_string(&u).unwrap();
        assert_eq!(
            wire,
            r#"{"input_tokens":3426,"output_tokens":58,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"total_cost_usd":0.01858,"num_turns":2,"duration_ms":178}"#
        );
    }

    #[test]
    fn missing_or_odd_fields_read_as_zero() {
        let event = |text: &str| serde_json::from_str::<Map<String, Value>>(text).unwrap();
        assert_eq!(Usage::from_result(&event(r#"{"type":"result"}"#)), None);
        let u = Usage::from_result(&event(
            r#"{"type":"result","num_turns":-1,"total_cost_usd":"a lot","duration_ms":1e300,
                "usage":{"input_tokens":18446744073709551615,"output_tokens":null}}"#,
        ))
        .unwrap();
        assert_eq!(u.num_turns, 0);
        assert_eq!(u.total_cost_usd, 0.0);
        assert_eq!(u.duration_ms, 0);
        assert_eq!(u.input_tokens, MAX_COUNT);
        assert_eq!(u.output_tokens, 0);
        let huge = Usage::from_result(&event(r#"{"total_cost_usd":1e308}"#)).unwrap();
        assert_eq!(huge.total_cost_usd, MAX_COST_USD);
    }

    #[test]
    fn sums_saturate() {
        let mut a = Usage {
            input_tokens: u64::MAX,
            total_cost_usd: 0.5,
            ..Usage::default()
        };
        a.add(&Usage {
            input_tokens: 1,
            total_cost_usd: 0.25,
            num_turns: 3,
            ..Usage::default()
        });
        assert_eq!(a.input_tokens, u64::MAX);
        assert_eq!(a.total_cost_usd, 0.75);
        assert_eq!(a.num_turns, 3);
    }
}
