//! Configuration errors that point at the file, line, column and key path,
//! and never quote a secret.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use thiserror::Error;
use toml_edit::Document;

use super::locate;
use super::mask::{self, Masked};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub location: Option<(usize, usize)>,
    /// Dotted key path, e.g. `profiles.fr.server`.
    pub key_path: Option<String>,
    pub message: String,
    /// The offending line, with secret values masked.
    pub source_line: Option<SourceLine>,
}

/// A line of the file as shown under a problem, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    pub text: String,
    /// 1-based column of the caret in `text` (masking can move it).
    pub caret: usize,
}

/// Rendered through `redact::secrets` as a last line of defence: whatever
/// masking missed, a machine key is not printed.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact::secrets(&self.render()))
    }
}

impl Problem {
    fn render(&self) -> String {
        let mut out = String::new();
        let _ = self.render_into(&mut out);
        out
    }

    fn render_into(&self, f: &mut String) -> fmt::Result {
        use fmt::Write;
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(path) = &self.key_path {
            write!(f, "{path}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(src), Some((line, _))) = (&self.source_line, self.location) {
            let gutter = line.to_string().len();
            let (text, col) = (&src.text, src.caret);
            write!(
                f,
                "\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {:>col$}",
                "", "", "^"
            )?;
        }
        Ok(())
    }
}

/// Everything wrong with a config file (validation reports all problems at
/// once, so a user fixes them in one go).
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}", crate::redact::secrets(&format!("cannot read config file {}: {source}\n  (pass another file with -f PATH, or set CLOUDAGENT_CONFIG)", path.display())))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("error: {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds located problems for one file's text.
/// The span-keeping parse is done only when there is a problem to locate.
pub struct Locator<'a> {
    file: PathBuf,
    text: &'a str,
    doc: OnceLock<Option<Document<&'a str>>>,
    masked: OnceLock<Option<Masked>>,
}

impl<'a> Locator<'a> {
    pub fn new(file: PathBuf, text: &'a str) -> Self {
        Self {
            file,
            text,
            doc: OnceLock::new(),
            masked: OnceLock::new(),
        }
    }

    fn doc(&self) -> Option<&Document<&'a str>> {
        self.doc
            .get_or_init(|| Document::parse(self.text).ok())
            .as_ref()
    }

    /// A problem at a key path (validation errors).
    pub fn at_path(&self, path: &[String], message: impl Into<String>) -> Problem {
        let span = self.doc().and_then(|doc| locate::span_of_path(doc, path));
        self.build(
            span.map(|s| s.start),
            Some(locate::dotted(path)),
            message.into(),
        )
    }

    /// A problem at a byte offset (parse and type errors from serde). A
    /// type error under a secret key loses the value serde quotes.
    pub fn at_offset(&self, offset: Option<usize>, message: impl Into<String>) -> Problem {
        let path = match (self.doc(), offset) {
            (Some(doc), Some(off)) => locate::path_at(doc, off),
            _ => Vec::new(),
        };
        let mut message = message.into();
        if path.iter().any(|k| mask::is_secret_key(k)) {
            message = mask::without_value(&message);
        }
        let key_path = (!path.is_empty()).then(|| locate::dotted(&path));
        self.build(offset, key_path, message)
    }

    fn build(&self, offset: Option<usize>, key_path: Option<String>, message: String) -> Problem {
        let location = offset.map(|o| locate::line_col(self.text, o));
        let source_line = offset.and_then(|o| self.source_line(o));
        Problem {
            file: self.file.clone(),
            location,
            key_path,
            message,
            source_line,
        }
    }

    /// The line holding `offset`, secret values masked by their spans; for
    /// a file that does not parse, the line only when it is safe to show.
    fn source_line(&self, offset: usize) -> Option<SourceLine> {
        let (line, col) = locate::line_col(self.text, offset);
        let masked = self.masked.get_or_init(|| Masked::new(self.text)).as_ref();
        match masked {
            Some(m) => {
                let (_, caret) = locate::line_col(m.text(), m.offset(offset));
                let text = m.line(line)?.to_string();
                Some(SourceLine { text, caret })
            }
            None => {
                let text = mask::unparsed_line(self.text, line)?;
                let caret = if text == mask::HIDDEN_LINE { 1 } else { col };
                Some(SourceLine { text, caret })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_shown_line_has_the_key_masked_and_the_caret_in_place() {
        let text = "[profiles]\nfr = { api_key = \"sk_machine_secret\", server = \"frr\" }\n";
        let loc = Locator::new(PathBuf::from("c.toml"), text);
        let p = loc.at_path(&path(&["profiles", "fr", "server"]), "unknown server");
        assert_eq!(
            p.to_string(),
            "c.toml:2:48: profiles.fr.server: unknown server\n  |\n2 | fr = { api_key = (sensitive), server = \"frr\" }\n  |                                        ^"
        );
    }

    #[test]
    fn a_type_error_under_a_secret_key_does_not_quote_the_value() {
        let text = "[profiles.fr]\napi_key = 12345678\n";
        let loc = Locator::new(PathBuf::from("c.toml"), text);
        let p = loc.at_offset(
            text.find("123"),
            "invalid type: integer `12345678`, expected a string",
        );
        assert!(!p.to_string().contains("12345678"), "{p}");
        assert!(p.to_string().contains("expected a string"), "{p}");
    }

    #[test]
    fn whatever_masking_missed_is_redacted() {
        let loc = Locator::new(PathBuf::from("c.toml"), "");
        let p = loc.at_path(&path(&["x"]), "got \"sk_machine_leaked\"");
        assert!(!p.to_string().contains("leaked"), "{p}");
    }

    #[test]
    fn a_line_holding_a_key_is_hidden_whatever_its_key_name() {
        // An inline table may go on over lines (TOML 1.1), so a key's value
        // can sit on a line that names no api_key; a key pasted into
        // api_key_env is refused, and its line was shown with the error
        // (the config fuzz target's check, fuzz/README.md).
        let home = crate::paths::Home::for_tests(std::path::Path::new("/h"));
        for text in [
            "[servers]\np = { url = \"http://h\" }\n[profiles]\nx = { server = \"p\", api_key =\n\"sk_machine_inline_secret\", bogus = 1 }\n",
            "[servers.p]\nurl = \"http://h\"\n[profiles.x]\nserver = \"p\"\napi_key_env = \"sk_machine_pasted_secret\"\n",
        ] {
            let err = crate::config::parse(text, PathBuf::from("c.toml"), &home)
                .unwrap_err()
                .to_string();
            assert!(!err.contains("_secret"), "{err}");
        }
    }

    #[test]
    fn problem_display_has_file_line_col_and_caret() {
        let text = "[profiles.fr]\nserver = \"frr\"\n";
        let loc = Locator::new(PathBuf::from("c.toml"), text);
        let p = loc.at_path(
            &["profiles".into(), "fr".into(), "server".into()],
            "unknown server \"frr\"; known: prod",
        );
        assert_eq!(
            p.to_string(),
            "c.toml:2:10: profiles.fr.server: unknown server \"frr\"; known: prod\n  |\n2 | server = \"frr\"\n  |          ^"
        );
    }
}
