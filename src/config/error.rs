//! Configuration errors that point at the file, line, column and key path,
//! and never quote a secret.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;
use toml_edit::Document;

use super::locate;

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
    pub source_line: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(path) = &self.key_path {
            write!(f, "{path}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(src), Some((line, col))) = (&self.source_line, self.location) {
            let gutter = line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{line} | {src}\n{:gutter$} | {:>col$}",
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
    #[error("cannot read config file {}: {source}\n  (pass another file with -f PATH, or set CLOUDAGENT_CONFIG)", path.display())]
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
    doc: std::sync::OnceLock<Option<Document<&'a str>>>,
}

impl<'a> Locator<'a> {
    pub fn new(file: PathBuf, text: &'a str) -> Self {
        Self {
            file,
            text,
            doc: std::sync::OnceLock::new(),
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

    /// A problem at a byte offset (parse and type errors from serde).
    pub fn at_offset(&self, offset: Option<usize>, message: impl Into<String>) -> Problem {
        let path = match (self.doc(), offset) {
            (Some(doc), Some(off)) => {
                let p = locate::path_at(doc, off);
                (!p.is_empty()).then(|| locate::dotted(&p))
            }
            _ => None,
        };
        self.build(offset, path, message.into())
    }

    fn build(&self, offset: Option<usize>, key_path: Option<String>, message: String) -> Problem {
        let location = offset.map(|o| locate::line_col(self.text, o));
        let source_line = location
            .and_then(|(line, _)| locate::line_text(self.text, line))
            .map(mask_secret_line);
        Problem {
            file: self.file.clone(),
            location,
            key_path,
            message,
            source_line,
        }
    }
}

/// A line that assigns `api_key` shows `(sensitive)` instead of its value.
pub fn mask_secret_line(line: &str) -> String {
    let trimmed = line.trim_start();
    let key_end = trimmed
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(trimmed.len());
    let key = trimmed[..key_end].trim_matches(|c| c == '"' || c == '\'');
    if key == "api_key" || key.ends_with(".api_key") {
        if let Some(eq) = line.find('=') {
            return format!("{}= (sensitive)", &line[..eq]);
        }
        return "(sensitive)".to_string();
    }
    // An inline table may carry the key among other keys, or go on over
    // lines so that the key's value sits on a line of its own; and a key
    // may be pasted into another field (api_key_env). Hide any such line.
    let holds_key = line.to_ascii_lowercase().contains("sk_machine_");
    if holds_key || (line.contains("api_key") && line.contains('{')) {
        return "(line hidden: it may contain a secret)".to_string();
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_inline_api_key() {
        assert_eq!(
            mask_secret_line("api_key = \"sk_machine_secret\""),
            "api_key = (sensitive)"
        );
        assert_eq!(
            mask_secret_line("  api_key=\"sk_machine_secret"),
            "  api_key= (sensitive)"
        );
        assert_eq!(
            mask_secret_line("api_key_file = \"~/k\""),
            "api_key_file = \"~/k\""
        );
        assert!(!mask_secret_line("fr = { server = \"p\", api_key = \"sk_x\" }").contains("sk_x"));
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
            assert!(err.contains("line hidden"), "{err}");
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
