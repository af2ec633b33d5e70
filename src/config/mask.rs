//! Config text as it may be shown back to the user: the value of every
//! `api_key*` key hidden. Errors quote the offending line of the file; a
//! key written inline, or pasted into `api_key_file` or `api_key_env` by
//! mistake, must not come back with it (README, "The config file": a key's
//! value never appears in plan output, logs or errors).
//!
//! The values are found by their parsed spans, not by what a line looks
//! like: TOML spells one key many ways (`"api_key"`, `default. api_key`,
//! `{ api_key = … }`, multi-line and literal strings), and a text pattern
//! misses some of them.

use std::ops::Range;

use toml_edit::{Document, Item, Value};

/// What a hidden value shows as (as for a `Secret`).
pub const MASK: &str = "(sensitive)";

/// Shown instead of a line that cannot be shown safely.
pub const HIDDEN_LINE: &str = "(line not shown: it may hold an API key)";

/// A key whose value is, names or may be mistaken for the machine key:
/// `api_key`, `api_key_file`, `api_key_env`, in any case or spelling with
/// `-`/`_` (a misspelt key is still reported, with its line).
pub fn is_secret_key(name: &str) -> bool {
    normalized(name).contains("apikey")
}

fn normalized(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The config text with secret values replaced by [`MASK`], keeping the
/// newlines a value spanned so line numbers do not move.
pub struct Masked {
    text: String,
    /// Original spans, sorted, with the length of their replacement.
    spans: Vec<(Range<usize>, usize)>,
}

impl Masked {
    /// `None` when the text is not valid TOML (its spans are unknown).
    pub fn new(text: &str) -> Option<Self> {
        let doc = Document::parse(text).ok()?;
        let mut found = Vec::new();
        walk(doc.as_item(), false, &mut found);
        found.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(text.len());
        let mut spans = Vec::with_capacity(found.len());
        let mut at = 0;
        for span in found {
            if span.start < at || span.end > text.len() {
                continue;
            }
            out.push_str(&text[at..span.start]);
            let newlines = text[span.clone()].matches('\n').count();
            let replacement = format!("{MASK}{}", "\n".repeat(newlines));
            out.push_str(&replacement);
            at = span.end;
            spans.push((span, replacement.len()));
        }
        out.push_str(&text[at..]);
        Some(Self { text: out, spans })
    }

    /// The masked text of a 1-based line.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }

    /// Where a byte offset of the original text lands in the masked text
    /// (inside a hidden value: at its start).
    pub fn offset(&self, original: usize) -> usize {
        let mut shift: isize = 0;
        for (span, len) in &self.spans {
            if original < span.start {
                break;
            }
            if original < span.end {
                return (span.start as isize + shift) as usize;
            }
            shift += *len as isize - span.len() as isize;
        }
        (original as isize + shift).max(0) as usize
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Spans of every value under a secret key, at any depth (a secret key
/// holding a table hides everything in it).
fn walk(item: &Item, secret: bool, out: &mut Vec<Range<usize>>) {
    match item {
        Item::None => {}
        Item::Value(v) => value(v, secret, out),
        Item::Table(t) => {
            for (name, child) in t.iter() {
                walk(child, secret || is_secret_key(name), out);
            }
        }
        Item::ArrayOfTables(tables) => {
            for t in tables.iter() {
                for (name, child) in t.iter() {
                    walk(child, secret || is_secret_key(name), out);
                }
            }
        }
    }
}

fn value(v: &Value, secret: bool, out: &mut Vec<Range<usize>>) {
    if secret && let Some(span) = v.span() {
        out.push(span);
        return;
    }
    match v {
        Value::InlineTable(t) => {
            for (name, child) in t.iter() {
                value(child, secret || is_secret_key(name), out);
            }
        }
        Value::Array(items) => {
            for child in items.iter() {
                value(child, secret, out);
            }
        }
        _ => {}
    }
}

/// A line of a file that does not parse, when it can be shown: everything
/// before it parses (so the line does not continue a string) and the line
/// itself names no secret key and has no escapes that could spell one.
pub fn unparsed_line(text: &str, line: usize) -> Option<String> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let shown = text.lines().nth(line - 1)?;
    let safe = Document::parse(&text[..start]).is_ok()
        && !normalized(shown).contains("apikey")
        && !shown.contains('\\');
    Some(if safe {
        shown.to_string()
    } else {
        HIDDEN_LINE.to_string()
    })
}

/// serde's type errors quote the value they got ("invalid type: integer
/// `123`, expected a string"); for a secret key keep only what was
/// expected.
pub fn without_value(message: &str) -> String {
    for kind in ["invalid type", "invalid value", "invalid length"] {
        if let Some(rest) = message.strip_prefix(kind) {
            let expected = rest
                .find(", expected")
                .map(|i| &rest[i..])
                .unwrap_or_default();
            return format!("{kind}: (value not shown){expected}");
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        Masked::new(text).unwrap().text().to_string()
    }

    #[test]
    fn every_spelling_of_the_key_is_masked() {
        let cases = [
            "[profiles.default]\napi_key = \"sk_machine_x1\"\n",
            "[profiles.default]\n\"api_key\" = 'sk_machine_x1'\n",
            "[profiles]\ndefault.\"api_key\" = \"sk_machine_x1\"\n",
            "[profiles]\ndefault. api_key = \"sk_machine_x1\"\n",
            "[profiles]\ndefault = { server = \"p\", api_key = \"sk_machine_x1\" }\n",
            "profiles = { default = { api_key = \"sk_machine_x1\" } }\n",
            "[profiles.default]\napi_key = '''\nsk_machine_x1'''\n",
            "[profiles.default]\napi_key = \"\"\"\nsk_machine_\\\n  x1\"\"\"\n",
            "[profiles.default]\napi_key_file = \"sk_machine_x1\"\n",
            "[profiles.default]\nAPI-KEY = \"sk_machine_x1\"\n",
            "[profiles.default.api_key]\nvalue = \"sk_machine_x1\"\n",
            "[[profiles.default.list]]\napi_key = [\"sk_machine_x1\"]\n",
        ];
        for text in cases {
            let m = masked(text);
            assert!(!m.contains("x1"), "{text:?} -> {m:?}");
            assert!(m.contains(MASK), "{text:?} -> {m:?}");
            assert_eq!(m.lines().count(), text.lines().count(), "{text:?}");
        }
    }

    #[test]
    fn other_values_and_line_numbers_are_kept() {
        let text = "[p]\napi_key = \"\"\"\nsecret\n\"\"\"\nserver = \"frr\"\n";
        let m = Masked::new(text).unwrap();
        assert_eq!(m.line(5), Some("server = \"frr\""));
        assert_eq!(m.line(2), Some("api_key = (sensitive)"));
        let frr = text.find("\"frr\"").unwrap();
        assert_eq!(&m.text()[m.offset(frr)..][..5], "\"frr\"");
        let inside = text.find("secret").unwrap();
        assert_eq!(m.offset(inside), text.find("\"\"\"").unwrap());
    }

    #[test]
    fn a_caret_after_a_masked_value_on_the_same_line_still_points_right() {
        let text = "d = { api_key = \"sk_machine_long_value\", server = \"frr\" }\n";
        let m = Masked::new(text).unwrap();
        let frr = text.find("\"frr\"").unwrap();
        assert_eq!(&m.text()[m.offset(frr)..][..5], "\"frr\"");
    }

    #[test]
    fn lines_of_unparsable_files_are_shown_only_when_safe() {
        let text = "[p]\nname = \"ok\nx = 1\n";
        assert_eq!(unparsed_line(text, 2).unwrap(), "name = \"ok");
        let text = "[p]\napi_key = \"sk_machine_x1\nx = 1\n";
        assert_eq!(unparsed_line(text, 2).unwrap(), HIDDEN_LINE);
        let text = "[p]\napi_key = \"\"\"\nsk_machine_x1\n";
        assert_eq!(unparsed_line(text, 3).unwrap(), HIDDEN_LINE);
        let text = "[p]\n\"api\\u005fkey\" = \"sk_machine_x1\n";
        assert_eq!(unparsed_line(text, 2).unwrap(), HIDDEN_LINE);
    }

    #[test]
    fn type_errors_lose_the_value() {
        assert_eq!(
            without_value("invalid type: integer `12345`, expected a string"),
            "invalid type: (value not shown), expected a string"
        );
        assert_eq!(without_value("missing field `x`"), "missing field `x`");
    }
}
