//! The SSE + POST transport (docs/PROTOCOL.md, "SSE + POST"): the daemon
//! announces itself with `POST /v1/daemon/ready`, frames from the backend
//! arrive as server-sent events on `GET /v1/daemon/stream`, and frames to
//! it are POSTed one by one, payload only, to their endpoints.

pub mod http;
pub mod parser;
pub mod poster;
pub mod reader;

use serde_json::Value;

pub use http::{Client, Failed};
pub use poster::{Retry, Writer};
pub use reader::Reader;

use crate::protocol::outbound::Ready;

const READY_PATH: &str = "/v1/daemon/ready";
const STREAM_PATH: &str = "/v1/daemon/stream";

/// What the backend answers to `/ready` (fields it omits take their
/// defaults; fields of the wrong type are read as absent).
#[derive(Debug, Default, PartialEq)]
pub struct ReadyAnswer {
    pub host_id: String,
    pub last_acked_seq: i64,
    pub agents: Vec<ReadyAgent>,
}

#[derive(Debug, PartialEq)]
pub struct ReadyAgent {
    pub agent_id: String,
    pub workspace_root: Option<String>,
}

/// `POST /v1/daemon/ready` with our `ready` payload.
pub async fn ready(client: &Client, payload: &Ready) -> Result<ReadyAnswer, Failed> {
    let url = client.url(READY_PATH);
    let resp = client
        .http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(http::POST_TIMEOUT)
        .body(payload.to_json())
        .send()
        .await
        .map_err(|e| http::request_failure(&url, &e))?;
    if !resp.status().is_success() {
        return Err(http::status_failure(&url, &resp));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| http::request_failure(&url, &e))?;
    Ok(parse_ready(&body))
}

/// An empty or non-JSON answer reads as all defaults (the original did
/// the same), with a warning.
pub fn parse_ready(body: &[u8]) -> ReadyAnswer {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if !body.is_empty() => {
            tracing::warn!("the answer to /v1/daemon/ready is not JSON ({e}); using defaults");
            return ReadyAnswer::default();
        }
        Err(_) => return ReadyAnswer::default(),
    };
    let agents = value["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(ready_agent).collect())
        .unwrap_or_default();
    ReadyAnswer {
        host_id: value["host_id"].as_str().unwrap_or_default().to_string(),
        last_acked_seq: value["last_acked_seq"].as_i64().unwrap_or_default().max(0),
        agents,
    }
}

fn ready_agent(v: &Value) -> Option<ReadyAgent> {
    let agent_id = v["agent_id"].as_str().filter(|s| !s.is_empty())?;
    Some(ReadyAgent {
        agent_id: agent_id.to_string(),
        workspace_root: v["workspace_root"].as_str().map(String::from),
    })
}

/// `GET /v1/daemon/stream`, resuming after `last_event_id`.
pub async fn stream(
    client: &Client,
    last_event_id: i64,
    max_frame: usize,
) -> Result<Reader, Failed> {
    let url = client.url(STREAM_PATH);
    let resp = client
        .http
        .get(&url)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .header(reqwest::header::CACHE_CONTROL, "no-store")
        .header("Last-Event-ID", last_event_id.to_string())
        .send()
        .await
        .map_err(|e| http::request_failure(&url, &e))?;
    if !resp.status().is_success() {
        return Err(http::status_failure(&url, &resp));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.trim_start().starts_with("text/event-stream") {
        return Err(Failed::Retry {
            why: format!("{url} answered with {content_type:?}, not text/event-stream"),
            after: None,
        });
    }
    Ok(Reader::new(resp, max_frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_answers_are_read_leniently() {
        let a = parse_ready(
            br#"{"host_id":"host_1","last_acked_seq":17,"agents":[{"agent_id":"a1","workspace_root":"/w"},{"agent_id":""},{"x":1},{"agent_id":"a2","workspace_root":7}]}"#,
        );
        assert_eq!(a.host_id, "host_1");
        assert_eq!(a.last_acked_seq, 17);
        assert_eq!(
            a.agents,
            vec![
                ReadyAgent {
                    agent_id: "a1".into(),
                    workspace_root: Some("/w".into())
                },
                ReadyAgent {
                    agent_id: "a2".into(),
                    workspace_root: None
                },
            ]
        );
        assert_eq!(parse_ready(b""), ReadyAnswer::default());
        assert_eq!(parse_ready(b"<html>"), ReadyAnswer::default());
        assert_eq!(
            parse_ready(br#"{"last_acked_seq":null,"host_id":5}"#),
            ReadyAnswer::default()
        );
    }
}
