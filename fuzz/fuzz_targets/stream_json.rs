//! claude's stream-json stdout (src/runtime/wake/stream.rs), fed line by
//! line to a `Transcript` the way the wake runner does (split on `\n`,
//! decoded lossily).
//!
//! Beyond "never panics": the transcript is exactly the sum of the events
//! it reported, and it never calls a run successful without a `result`
//! event that was not an error.
#![no_main]

use cloudagent_daemon::runtime::wake::stream::{Event, Transcript};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut t = Transcript::default();
    let mut last_result = None;
    let mut text = String::new();
    let mut tools = Vec::new();
    let mut first_session = None;
    for line in data.split(|b| *b == b'\n') {
        for event in t.feed_line(&String::from_utf8_lossy(line)) {
            match event {
                Event::SessionInit(id) => {
                    assert!(!id.is_empty());
                    first_session.get_or_insert(id);
                }
                Event::TextDelta(d) => {
                    assert!(!d.is_empty());
                    text.push_str(&d);
                }
                Event::ToolUse(name) => {
                    assert!(!name.is_empty());
                    tools.push(name);
                }
                Event::Result(r) => last_result = Some(r),
                Event::Usage { .. } => {}
            }
        }
    }
    assert_eq!(t.result, last_result);
    if t.succeeded() {
        let r = last_result
            .as_ref()
            .expect("success without a result event");
        assert!(!r.is_error);
    }
    assert_eq!(
        t.final_text(),
        last_result.as_ref().and_then(|r| r.text.as_deref())
    );
    assert!(t.final_text().is_none_or(|s| !s.is_empty()));
    assert_eq!(t.partial_text, text);
    assert_eq!(t.tool_uses, tools);
    assert_eq!(t.session_id, first_session);
});
