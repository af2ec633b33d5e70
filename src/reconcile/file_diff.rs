//! A file's diff as plan shows it. Computed when it is shown (`plan`, `apply`'s
//! listing, `--json`), not when the plan is made: the daemon applies plans
//! it never shows, and diffing every file it writes would cost time and keep
//! the diff code paged in for nothing.

use serde::{Serialize, Serializer};

/// The old and new text of a file, secrets already masked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDiff {
    old: String,
    new: String,
}

impl FileDiff {
    /// Texts that show the same hold no diff (a change of a secret only).
    pub fn new(old_shown: String, new_shown: String) -> Self {
        if old_shown == new_shown {
            return Self::default();
        }
        Self {
            old: old_shown,
            new: new_shown,
        }
    }

    /// The unified diff's hunks; empty when nothing shown differs.
    pub fn hunks(&self) -> String {
        if self.old == self.new {
            return String::new();
        }
        unified_diff(&self.old, &self.new)
    }
}

impl Serialize for FileDiff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hunks())
    }
}

/// Hunks only (no `---`/`+++` header: the op line names the file).
pub fn unified_diff(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut out = String::new();
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        out.push_str(&hunk.to_string());
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_are_those_of_the_shown_texts() {
        let d = FileDiff::new("a\nb\n".into(), "a\nc\n".into());
        assert_eq!(d.hunks(), "@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
        assert_eq!(serde_json::to_value(&d).unwrap(), d.hunks());
        let same = FileDiff::new("k=***\n".into(), "k=***\n".into());
        assert_eq!(same.hunks(), "");
        assert_eq!(same, FileDiff::default());
    }
}
