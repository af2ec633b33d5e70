//! The last line of defence against a key reaching a log line, an error
//! message or a status report: anything shaped like a machine API key
//! (`sk_machine_…`) or a bearer credential is replaced, whatever produced
//! the text. Secrets are kept out of messages by construction (`Secret`
//! prints `(sensitive)`); this catches what construction missed, such as a
//! key pasted into the wrong config field or quoted by a library.

use std::borrow::Cow;

/// What a redacted credential becomes.
pub const REDACTED: &str = "(redacted)";

const KEY_PREFIX: &str = "sk_machine_";
const BEARER: &str = "bearer ";

/// `text` with every `sk_machine_…` token and every `Bearer …` credential
/// replaced by [`REDACTED`]. Borrowed when there is nothing to replace.
pub fn secrets(text: &str) -> Cow<'_, str> {
    if !needs_work(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, prefix)) = next_secret(rest) {
        let token = start + prefix;
        out.push_str(&rest[..token]);
        out.push_str(REDACTED);
        rest = &rest[token + token_len(&rest[token..])..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The same for bytes that may not be UTF-8 (a log writer's buffer).
pub fn secrets_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !needs_work(bytes) {
        return Cow::Borrowed(bytes);
    }
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(text) => match secrets(text) {
            Cow::Borrowed(_) => Cow::Borrowed(bytes),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        },
        Cow::Owned(text) => Cow::Owned(secrets(&text).into_owned().into_bytes()),
    }
}

fn needs_work(bytes: &[u8]) -> bool {
    find_ci(bytes, KEY_PREFIX.as_bytes()).is_some() || find_ci(bytes, BEARER.as_bytes()).is_some()
}

/// The earliest secret in `text`: its start and how many bytes of it are
/// kept (the `sk_machine_` or `Bearer ` prefix, so a reader still sees
/// what was there).
fn next_secret(text: &str) -> Option<(usize, usize)> {
    let key = find_ci(text.as_bytes(), KEY_PREFIX.as_bytes()).map(|i| (i, KEY_PREFIX.len()));
    let bearer = find_ci(text.as_bytes(), BEARER.as_bytes())
        .filter(|i| token_len(&text[i + BEARER.len()..]) > 0)
        .map(|i| (i, BEARER.len()));
    match (key, bearer) {
        (Some(k), Some(b)) => Some(if k.0 <= b.0 { k } else { b }),
        (k, b) => k.or(b),
    }
}

/// Length of the credential at the start of `text`: everything up to
/// whitespace, a quote or a delimiter that cannot be part of a key.
fn token_len(text: &str) -> usize {
    text.find(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | ',' | ';' | ')' | ']' | '}' | '<' | '>'
            )
    })
    .unwrap_or(text.len())
}

fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bearer_credentials_are_replaced() {
        assert_eq!(
            secrets("key sk_machine_abc123XYZ-_ ok"),
            "key sk_machine_(redacted) ok"
        );
        assert_eq!(
            secrets("\"authorization\": \"Bearer sk_machine_x\""),
            "\"authorization\": \"Bearer (redacted)\""
        );
        assert_eq!(
            secrets("authorization: bearer abc.def"),
            "authorization: bearer (redacted)"
        );
        assert_eq!(
            secrets("a=SK_MACHINE_q,b=sk_machine_r"),
            "a=SK_MACHINE_(redacted),b=sk_machine_(redacted)"
        );
        assert!(matches!(secrets("nothing here"), Cow::Borrowed(_)));
        assert_eq!(secrets("a bearer  of news"), "a bearer  of news");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_still_redacted() {
        let mut b = b"\xff sk_machine_secret \xfe".to_vec();
        let out = secrets_bytes(&b).into_owned();
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("secret"), "{text}");
        b.clear();
        assert!(matches!(secrets_bytes(&b), Cow::Borrowed(_)));
    }
}
