//! The SSE parser (src/runtime/transport/sse/parser.rs): the stream body in
//! arbitrary chunks, as TCP delivers it.
//!
//! Beyond "never panics": how the bytes are split never changes what is
//! parsed (the first byte of the input chooses the split points), and no
//! event ever exceeds the limit — an oversized one is an error instead.
#![no_main]

use std::collections::VecDeque;

use cloudagent_daemon::runtime::transport::sse::parser::{Item, Parser};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = parse(body, &[body.len().max(1)]);
    let sizes = [usize::from(step % 7) + 1, usize::from(step % 3) + 1];
    let chunked = parse(body, &sizes);
    assert_eq!(whole, chunked, "the split changed the result");
    if let Ok(items) = &whole {
        for item in items {
            if let Item::Event(e) = item {
                assert!(e.data.len() <= MAX, "an event over the limit got through");
            }
        }
    }
});

/// Items parsed from `body` fed in chunks of the given sizes, in turn.
fn parse(body: &[u8], sizes: &[usize]) -> Result<Vec<Item>, ()> {
    let mut parser = Parser::new(MAX);
    let mut out = VecDeque::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        if parser.feed(chunk, &mut out).is_err() {
            return Err(());
        }
        rest = tail;
        i += 1;
    }
    Ok(out.into_iter().collect())
}
