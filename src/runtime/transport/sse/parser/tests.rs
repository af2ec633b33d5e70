use super::*;

fn parse_chunks(chunks: &[&[u8]]) -> Vec<Item> {
    let mut p = Parser::new(1 << 20);
    let mut out = VecDeque::new();
    for c in chunks {
        p.feed(c, &mut out).unwrap();
    }
    out.into_iter().collect()
}

fn events(items: Vec<Item>) -> Vec<SseEvent> {
    items
        .into_iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn event(name: Option<&str>, id: Option<&str>, data: &str) -> SseEvent {
    SseEvent {
        name: name.map(String::from),
        id: id.map(String::from),
        data: data.into(),
    }
}

#[test]
fn a_complete_event_with_name_and_id() {
    let items = parse_chunks(&[b"event: deliver\nid: 42\ndata: {\"a\":1}\n\n"]);
    assert_eq!(
        items,
        vec![Item::Event(event(Some("deliver"), Some("42"), "{\"a\":1}"))]
    );
}

#[test]
fn an_event_split_at_every_byte_is_the_same_event() {
    let text = b"event: deliver\r\nid: 7\r\ndata: one\r\ndata: two\r\n\r\n";
    let chunks: Vec<&[u8]> = text.chunks(1).collect();
    assert_eq!(
        events(parse_chunks(&chunks)),
        vec![event(Some("deliver"), Some("7"), "one\ntwo")]
    );
    // Split in the middle of a CRLF and of a field name, too.
    for at in 1..text.len() {
        let (a, b) = text.split_at(at);
        assert_eq!(
            events(parse_chunks(&[a, b])),
            vec![event(Some("deliver"), Some("7"), "one\ntwo")],
            "split at {at}"
        );
    }
}

#[test]
fn multi_line_data_is_joined_with_newlines() {
    let items = parse_chunks(&[b"data: {\"x\":\ndata:1}\ndata\n\n"]);
    // A `data` line without a colon adds an empty line.
    assert_eq!(events(items), vec![event(None, None, "{\"x\":\n1}\n")]);
}

#[test]
fn lf_crlf_and_cr_line_ends_all_work() {
    for text in [
        &b"data: a\n\ndata: b\n\n"[..],
        b"data: a\r\n\r\ndata: b\r\n\r\n",
        b"data: a\r\rdata: b\r\r",
        b"data: a\r\n\ndata: b\r\r\n",
    ] {
        assert_eq!(
            events(parse_chunks(&[text])),
            vec![event(None, None, "a"), event(None, None, "b")],
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn a_cr_at_the_end_of_a_chunk_and_lf_at_the_start_of_the_next_end_one_line() {
    let items = parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
    assert_eq!(
        events(items),
        vec![event(None, None, "a"), event(None, None, "b")]
    );
}

#[test]
fn comments_are_reported_and_do_not_disturb_an_event() {
    let items = parse_chunks(&[b":hb\n\ndata: x\n:inside\ndata: y\n\n"]);
    assert_eq!(
        items,
        vec![
            Item::Comment,
            Item::Comment,
            Item::Event(event(None, None, "x\ny")),
        ]
    );
}

#[test]
fn retry_is_reported_only_when_all_digits() {
    let items = parse_chunks(&[b"retry: 1500\nretry: 1x\nretry: -1\n\n"]);
    // The blank line ends an event without data: alive, not an event.
    assert_eq!(items, vec![Item::Retry(1500), Item::Comment]);
}

#[test]
fn events_without_data_are_not_events_and_the_name_does_not_leak() {
    let items = parse_chunks(&[b"event: ping\nid: 3\n\ndata: d\n\n"]);
    assert_eq!(
        events(items),
        vec![event(None, None, "d")],
        "the id and name of a data-less event must not stick to the next"
    );
}

#[test]
fn only_one_space_after_the_colon_is_removed_and_unknown_fields_are_ignored() {
    let items = parse_chunks(&[b"data:  two spaces\nfoo: bar\ndata:none\n\n"]);
    assert_eq!(events(items), vec![event(None, None, " two spaces\nnone")]);
}

#[test]
fn a_leading_bom_is_skipped_even_in_pieces_but_only_at_the_start() {
    let items = parse_chunks(&[b"\xEF\xBB", b"\xBFdata: a\n\n"]);
    assert_eq!(events(items), vec![event(None, None, "a")]);
    // Not a BOM after all: the bytes are the start of a line.
    let items = parse_chunks(&[b"\xEFdata: a\n\ndata: b\n\n"]);
    assert_eq!(events(items), vec![event(None, None, "b")]);
}

#[test]
fn an_unfinished_event_is_not_yielded() {
    assert_eq!(parse_chunks(&[b"data: half\n"]), vec![]);
    assert_eq!(parse_chunks(&[b"data: half"]), vec![]);
}

#[test]
fn an_event_over_the_limit_is_refused_while_it_grows() {
    let mut p = Parser::new(64);
    let mut out = VecDeque::new();
    p.feed(b"data: ", &mut out).unwrap();
    let big = vec![b'x'; 100];
    // Refused before the line ends: the buffer never holds more than the
    // limit plus one chunk.
    let err = p.feed(&big, &mut out).unwrap_err();
    assert_eq!(err.max, 64);
    assert!(err.size > 64, "{err:?}");
    assert!(out.is_empty());
}

#[test]
fn many_data_lines_count_towards_the_limit() {
    let mut p = Parser::new(64);
    let mut out = VecDeque::new();
    let line = b"data: 0123456789\n";
    p.feed(line, &mut out).unwrap();
    p.feed(line, &mut out).unwrap();
    p.feed(line, &mut out).unwrap();
    assert!(p.feed(line, &mut out).is_err());
}

#[test]
fn events_at_the_limit_pass_and_the_count_restarts_per_event() {
    let mut p = Parser::new(32);
    let mut out = VecDeque::new();
    // "data: " + 25 bytes + LF = 32 bytes.
    let one = format!("data: {}\n\n", "y".repeat(25));
    for _ in 0..3 {
        p.feed(one.as_bytes(), &mut out).unwrap();
    }
    assert_eq!(events(out.into_iter().collect()).len(), 3);
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let items = parse_chunks(&[b"data: a\xFFb\n\n"]);
    assert_eq!(events(items), vec![event(None, None, "a\u{FFFD}b")]);
}
