//! Frames from the backend (src/protocol/frames.rs): the typed `Inbound`
//! parse of a WebSocket text frame, and `DeliverPayload::parse` of a
//! payload read back from the journal.
//!
//! Beyond "never panics": what the parser accepts honours the bounds the
//! rest of the daemon relies on, and an accepted `deliver` becomes exactly
//! one journal line that replays to the same payload (the ledger splits the
//! journal on newlines).
#![no_main]

use std::collections::HashMap;

use cloudagent_daemon::paths::AgentId;
use cloudagent_daemon::protocol::frames::{self, Deliver, DeliverPayload, Inbound};
use cloudagent_daemon::protocol::message::MAX_ID_BYTES;
use cloudagent_daemon::runtime::delivery::ledger::fuzz_accept_record;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;

/// `frames::MAX_TOKEN_BYTES`: the longest request/wake/host id accepted.
const MAX_TOKEN_BYTES: usize = 512;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time they reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The payload parse reads journal text: any input may reach it.
    let _ = DeliverPayload::parse(text);
    match frames::parse(text) {
        Ok(Inbound::Deliver(d)) => check_deliver(text, &d),
        Ok(Inbound::Hello { host_id }) => assert!(host_id.len() <= MAX_TOKEN_BYTES),
        Ok(Inbound::Assign(a)) => {
            assert!(AgentId::parse(a.agent_id.as_str()).is_ok());
            assert!(a.workspace_root.is_none_or(|w| !w.is_empty()));
        }
        Ok(Inbound::ToolResult(r)) => {
            assert!(!r.request_id.is_empty() && r.request_id.len() <= MAX_TOKEN_BYTES);
        }
        Ok(_) | Err(_) => {}
    }
});

fn check_deliver(text: &str, d: &Deliver) {
    let payload = d.payload.get();
    // Borrowed from the frame, not copied.
    let range = text.as_bytes().as_ptr_range();
    assert!(range.contains(&payload.as_ptr()));
    assert!(payload.starts_with('{'));
    assert!(AgentId::parse(d.agent_id.as_str()).is_ok());
    assert!(d.message_id.key().len() <= MAX_ID_BYTES);
    assert!(
        d.wake_id
            .as_ref()
            .is_none_or(|w| w.len() <= MAX_TOKEN_BYTES)
    );
    // The wake reads the payload back when its turn comes: it must parse.
    let parsed = DeliverPayload::parse(payload);
    assert!(parsed.is_ok(), "accepted payload unreadable: {parsed:?}");

    let (record, payload_start) = fuzz_accept_record(d);
    assert_eq!(
        record.iter().filter(|b| **b == b'\n').count(),
        1,
        "a journal record must be one line"
    );
    assert_eq!(record.last(), Some(&b'\n'));
    assert!(!record.contains(&0), "a NUL ends the journal's records");
    // Read as raw JSON: a payload may hold values (numbers out of f64
    // range) that a `Value` cannot, and the journal keeps them as sent.
    let stored = &record[payload_start..payload_start + payload.len()];
    assert!(
        serde_json::from_slice::<&RawValue>(stored).is_ok(),
        "journaled payload is JSON"
    );
    if let Ok(sent) = serde_json::from_str::<Value>(payload) {
        let stored: Value = serde_json::from_slice(stored).expect("readable as sent");
        assert_eq!(stored, sent, "the journal keeps the payload's value");
    }
    let line: HashMap<String, &RawValue> =
        serde_json::from_slice(&record).expect("a record is a JSON object");
    assert_eq!(line.get("op").map(|op| op.get()), Some("\"accept\""));
}
