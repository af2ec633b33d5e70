//! claude's `--output-format stream-json` stdout (PROTOCOL §4.5). Only a
//! handful of event types matter to the daemon; everything else, including
//! lines that are not JSON objects, is skipped so a newer claude that adds
//! events cannot break a wake.

use serde_json::{Map, Value};

use crate::protocol::Usage;

/// claude's final `result` event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ResultEvent {
    /// `is_error` (only a JSON `true` counts).
    pub is_error: bool,
    /// `subtype`, e.g. `success` or `error_during_execution`.
    pub subtype: Option<String>,
    /// The final answer: `result`, else `text`, if a non-empty string.
    pub text: Option<String>,
    /// Names of the tools claude was not allowed to call.
    pub permission_denials: Vec<String>,
    /// Tokens, cost, turns and time of the run, when claude reported them.
    pub usage: Option<Usage>,
}

/// One event the daemon cares about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// claude's own session id (for `--resume` next time).
    SessionInit(String),
    /// A chunk of assistant text, for token streaming.
    TextDelta(String),
    /// The name of a tool claude called.
    ToolUse(String),
    /// The run's outcome.
    Result(ResultEvent),
    /// Prompt-cache token counts of one model call (metrics only).
    Usage {
        /// `cache_read_input_tokens`.
        cache_read: u64,
        /// `cache_creation_input_tokens`.
        cache_creation: u64,
    },
}

/// Parses one stdout line. Lines that are blank, not JSON or not an object
/// yield nothing.
pub fn parse_line(line: &str) -> Vec<Event> {
    let line = line.trim();
    if line.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(event)) => parse_event(&event),
        _ => Vec::new(),
    }
}

fn parse_event(event: &Map<String, Value>) -> Vec<Event> {
    let kind = str_field(event, "type").unwrap_or_default();
    match kind {
        "session_init" => session_id(event)
            .map(Event::SessionInit)
            .into_iter()
            .collect(),
        "system" if str_field(event, "subtype") == Some("init") => session_id(event)
            .map(Event::SessionInit)
            .into_iter()
            .collect(),
        "stream_event" => event
            .get("event")
            .and_then(Value::as_object)
            .and_then(stream_event)
            .into_iter()
            .collect(),
        "assistant" => event
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .filter(|block| str_field(block, "type") == Some("tool_use"))
            .filter_map(tool_name)
            .map(Event::ToolUse)
            .collect(),
        "tool_use" => tool_name(event).map(Event::ToolUse).into_iter().collect(),
        "result" => vec![Event::Result(result_event(event))],
        _ => Vec::new(),
    }
}

fn stream_event(inner: &Map<String, Value>) -> Option<Event> {
    match str_field(inner, "type")? {
        "message_start" => {
            let usage = inner.get("message").and_then(|m| m.get("usage"));
            let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
            Some(Event::Usage {
                cache_read: count("cache_read_input_tokens").unwrap_or(0),
                cache_creation: count("cache_creation_input_tokens").unwrap_or(0),
            })
        }
        "content_block_delta" => {
            let delta = inner.get("delta")?.as_object()?;
            if str_field(delta, "type")? != "text_delta" {
                return None;
            }
            non_empty(delta, "text").map(|t| Event::TextDelta(t.to_string()))
        }
        _ => None,
    }
}

fn result_event(event: &Map<String, Value>) -> ResultEvent {
    let permission_denials = event
        .get("permission_denials")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("tool_name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    ResultEvent {
        is_error: event.get("is_error") == Some(&Value::Bool(true)),
        subtype: str_field(event, "subtype").map(str::to_string),
        text: non_empty(event, "result")
            .or_else(|| non_empty(event, "text"))
            .map(str::to_string),
        permission_denials,
        usage: Usage::from_result(event),
    }
}

fn session_id(event: &Map<String, Value>) -> Option<String> {
    non_empty(event, "session_id")
        .or_else(|| non_empty(event, "sessionId"))
        .map(str::to_string)
}

fn tool_name(block: &Map<String, Value>) -> Option<String> {
    non_empty(block, "name")
        .or_else(|| non_empty(block, "tool_name"))
        .map(str::to_string)
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn non_empty<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    str_field(obj, key).filter(|s| !s.is_empty())
}

/// What one wake's stdout amounted to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Transcript {
    /// The first session id claude announced.
    pub session_id: Option<String>,
    /// Every tool call, in order.
    pub tool_uses: Vec<String>,
    /// The last `result` event.
    pub result: Option<ResultEvent>,
    /// All text deltas so far, concatenated (partial bodies are sent
    /// accumulated, not as deltas: PROTOCOL §2.7).
    pub partial_text: String,
    /// Sum of `cache_read_input_tokens` over all model calls.
    pub cache_read_tokens: u64,
    /// Sum of `cache_creation_input_tokens` over all model calls.
    pub cache_creation_tokens: u64,
}

impl Transcript {
    /// Records one stdout line and returns its events.
    pub fn feed_line(&mut self, line: &str) -> Vec<Event> {
        let events = parse_line(line);
        for event in &events {
            match event {
                Event::SessionInit(id) => {
                    if self.session_id.is_none() {
                        self.session_id = Some(id.clone());
                    }
                }
                Event::TextDelta(text) => self.partial_text.push_str(text),
                Event::ToolUse(name) => self.tool_uses.push(name.clone()),
                Event::Result(result) => self.result = Some(result.clone()),
                Event::Usage {
                    cache_read,
                    cache_creation,
                } => {
                    self.cache_read_tokens = self.cache_read_tokens.saturating_add(*cache_read);
                    self.cache_creation_tokens =
                        self.cache_creation_tokens.saturating_add(*cache_creation);
                }
            }
        }
        events
    }

    /// True when claude reported a result that is not an error.
    pub fn succeeded(&self) -> bool {
        self.result.as_ref().is_some_and(|r| !r.is_error)
    }

    /// The final answer text of the last result, if any.
    pub fn final_text(&self) -> Option<&str> {
        self.result.as_ref().and_then(|r| r.text.as_deref())
    }

    /// Whether claude called the tool with exactly this name.
    pub fn called_tool(&self, name: &str) -> bool {
        self.tool_uses.iter().any(|t| t == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                "../../../tests/fixtures/claude-code-2.1.197/",
                $name
            ))
        };
    }

    fn transcript(text: &str) -> Transcript {
        let mut t = Transcript::default();
        for line in text.lines() {
            t.feed_line(line);
        }
        t
    }

    const SEND: &str = "mcp__cloudagent__send_message";

    #[test]
    fn run1_tool_call() {
        let t = transcript(fixture!("run1-tool-call.stream.jsonl"));
        assert_eq!(
            t.session_id.as_deref(),
            Some("d5ce8afe-41f4-442c-8cd9-7f06547e1359")
        );
        assert_eq!(t.tool_uses, vec![SEND]);
        assert!(t.called_tool(SEND));
        assert!(!t.called_tool("send_message"));
        assert!(t.succeeded());
        assert_eq!(
            t.final_text(),
            Some("Done. Tool said: sent: hi from the mock")
        );
        let result = t.result.unwrap();
        assert_eq!(result.subtype.as_deref(), Some("success"));
        assert!(result.permission_denials.is_empty());
        assert_eq!(t.partial_text, "");
    }

    #[test]
    fn run2_resume_keeps_the_session() {
        let t = transcript(fixture!("run2-resume.stream.jsonl"));
        assert_eq!(
            t.session_id.as_deref(),
            Some("d5ce8afe-41f4-442c-8cd9-7f06547e1359")
        );
        assert_eq!(t.tool_uses, vec![SEND]);
        assert!(t.succeeded());
        assert_eq!(
            t.final_text(),
            Some("Resumed turn done. Tool said: sent: second turn after resume")
        );
    }

    #[test]
    fn run3_stale_session() {
        let t = transcript(fixture!("run3-stale-session.stream.jsonl"));
        // The result carries the stale id, but it is no init event.
        assert_eq!(t.session_id, None);
        assert!(t.tool_uses.is_empty());
        assert!(!t.succeeded());
        assert_eq!(t.final_text(), None);
        let result = t.result.unwrap();
        assert!(result.is_error);
        assert_eq!(result.subtype.as_deref(), Some("error_during_execution"));
        assert!(fixture!("run3-stale-session.stderr.txt").contains("No conversation found"));
    }

    #[test]
    fn run4_permission_denied() {
        let t = transcript(fixture!("run4-permission-denied.stream.jsonl"));
        assert_eq!(
            t.session_id.as_deref(),
            Some("117591aa-04bc-4142-acbb-cd13b3115d5d")
        );
        // A denied call is still a recorded tool use.
        assert!(t.called_tool(SEND));
        assert!(t.succeeded());
        assert_eq!(t.result.unwrap().permission_denials, vec![SEND]);
    }

    #[test]
    fn partial_messages() {
        let text = fixture!("run-partial-messages.stream.jsonl");
        let mut t = Transcript::default();
        let mut deltas = Vec::new();
        let mut usages = 0;
        for line in text.lines() {
            for event in t.feed_line(line) {
                match event {
                    Event::TextDelta(d) => deltas.push(d),
                    Event::Usage { .. } => usages += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(deltas, vec!["Done. Tool said: sent: hi from the mock"]);
        assert_eq!(t.partial_text, "Done. Tool said: sent: hi from the mock");
        assert_eq!(usages, 2);
        assert_eq!(
            t.session_id.as_deref(),
            Some("a26a6747-b3a0-4191-a087-dbe6295c6a06")
        );
        // The tool_use content_block_start is not a tool use; the assistant
        // event that follows is.
        assert_eq!(t.tool_uses, vec![SEND]);
        assert!(t.succeeded());
    }

    #[test]
    fn output_format_json_is_one_result() {
        let t = transcript(fixture!("run-output-format-json.json"));
        assert!(t.succeeded());
        assert_eq!(
            t.final_text(),
            Some("Done. Tool said: sent: hi from the mock")
        );
        assert_eq!(t.session_id, None);
    }

    #[test]
    fn other_fixtures_yield_nothing() {
        for text in [fixture!("mcp-stdio-rpc.jsonl"), fixture!("README.md")] {
            assert_eq!(transcript(text), Transcript::default());
        }
    }

    #[test]
    fn junk_lines_are_ignored() {
        for line in [
            "",
            "   ",
            "not json",
            "[1,2]",
            "42",
            "\"s\"",
            "null",
            "{",
            "{}",
            r#"{"type":7}"#,
            r#"{"type":"assistant","message":{"content":"x"}}"#,
            r#"{"type":"stream_event","event":[]}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"text_delta","text":""}}}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"input_json_delta","text":"x"}}}"#,
            r#"{"type":"system","subtype":"status","session_id":"s"}"#,
            r#"{"type":"system","subtype":"init","session_id":""}"#,
            r#"{"type":"tool_use","name":""}"#,
        ] {
            assert_eq!(parse_line(line), vec![], "{line}");
        }
    }

    #[test]
    fn session_id_variants_and_first_wins() {
        let mut t = Transcript::default();
        t.feed_line(r#"{"type":"system","subtype":"init","session_id":5,"sessionId":"camel"}"#);
        t.feed_line(r#"{"type":"session_init","session_id":"second"}"#);
        assert_eq!(t.session_id.as_deref(), Some("camel"));
        assert_eq!(
            parse_line(r#"  {"type":"session_init","session_id":"a"}  "#),
            vec![Event::SessionInit("a".into())]
        );
    }

    #[test]
    fn several_tool_uses_on_one_line() {
        let line = r#"{"type":"assistant","message":{"content":[
            {"type":"tool_use","name":"a"},{"type":"text","text":"hi"},
            {"type":"tool_use","tool_name":"b"},{"type":"tool_use"},"junk"]}}"#
            .replace('\n', "");
        assert_eq!(
            parse_line(&line),
            vec![Event::ToolUse("a".into()), Event::ToolUse("b".into())]
        );
        assert_eq!(
            parse_line(r#"{"type":"tool_use","tool_name":"c"}"#),
            vec![Event::ToolUse("c".into())]
        );
    }

    #[test]
    fn result_text_fallback_and_last_result_wins() {
        let mut t = Transcript::default();
        t.feed_line(r#"{"type":"result","is_error":false,"result":"first"}"#);
        t.feed_line(r#"{"type":"result","is_error":"yes","result":"","text":"second"}"#);
        assert_eq!(t.final_text(), Some("second"));
        // Only a JSON true is an error.
        assert!(t.succeeded());
        t.feed_line(r#"{"type":"result","is_error":true}"#);
        assert_eq!(t.final_text(), None);
        assert!(!t.succeeded());
    }

    #[test]
    fn usage_adds_up() {
        let mut t = Transcript::default();
        let line = r#"{"type":"stream_event","event":{"type":"message_start","message":{"usage":{"cache_read_input_tokens":7,"cache_creation_input_tokens":3}}}}"#;
        t.feed_line(line);
        t.feed_line(line);
        t.feed_line(r#"{"type":"stream_event","event":{"type":"message_start","message":{}}}"#);
        assert_eq!((t.cache_read_tokens, t.cache_creation_tokens), (14, 6));
    }
}
