//! Turning byte spans into `line:column` and key paths. The toml crate's
//! errors carry a span but neither the file name nor the key path, and our
//! own validation errors know the key path but not the span; a parse of the
//! same text with toml_edit (which keeps spans) bridges the two.

use std::ops::Range;

use toml_edit::{Document, Item};

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The text of a 1-based line.
pub fn line_text(text: &str, line: usize) -> Option<&str> {
    text.lines().nth(line.checked_sub(1)?)
}

/// Span of the value (or, failing that, the key) at `path`.
pub fn span_of_path(doc: &Document<&str>, path: &[String]) -> Option<Range<usize>> {
    let mut item: &Item = doc.as_item();
    let mut last_key_span = None;
    for segment in path {
        let table = item.as_table_like()?;
        let (key, next) = table.get_key_value(segment)?;
        last_key_span = key.span();
        item = next;
    }
    // For a `[table]` the key names the place better than the header does.
    if item.is_table() || item.is_array_of_tables() {
        last_key_span.or_else(|| item.span())
    } else {
        item.span().or(last_key_span)
    }
}

/// The deepest key path whose key or value covers `offset`.
pub fn path_at(doc: &Document<&str>, offset: usize) -> Vec<String> {
    let mut best: Vec<String> = Vec::new();
    let mut current = Vec::new();
    walk(doc.as_item(), offset, &mut current, &mut best);
    best
}

fn walk(item: &Item, offset: usize, current: &mut Vec<String>, best: &mut Vec<String>) {
    let Some(table) = item.as_table_like() else {
        return;
    };
    for (name, child) in table.iter() {
        current.push(name.to_string());
        let key_hit = table
            .get_key_value(name)
            .and_then(|(k, _)| k.span())
            .is_some_and(|s| s.contains(&offset));
        let value_hit = child.span().is_some_and(|s| s.contains(&offset));
        if (key_hit || value_hit) && current.len() > best.len() {
            *best = current.clone();
        }
        walk(child, offset, current, best);
        current.pop();
    }
}

/// Format a key path the way users write it in TOML: dotted, with segments
/// quoted when they are not bare keys.
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            let bare = !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
            if bare { s.clone() } else { format!("{s:?}") }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[servers.prod]\nurl = \"https://x\"\n\n[profiles.fr]\nserver = \"frr\"\n";

    #[test]
    fn line_and_column() {
        assert_eq!(line_col(TEXT, 0), (1, 1));
        let off = TEXT.find("\"frr\"").unwrap();
        assert_eq!(line_col(TEXT, off), (5, 10));
    }

    #[test]
    fn path_to_span_and_back() {
        let doc = Document::parse(TEXT).unwrap();
        let path = vec!["profiles".to_string(), "fr".into(), "server".into()];
        let span = span_of_path(&doc, &path).unwrap();
        assert_eq!(&TEXT[span.clone()], "\"frr\"");
        assert_eq!(path_at(&doc, span.start), path);
    }

    #[test]
    fn dotted_quotes_odd_keys() {
        assert_eq!(dotted(&["a".into(), "b c".into()]), "a.\"b c\"");
    }
}
