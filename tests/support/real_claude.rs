//! Locating the real Claude Code CLI for the end-to-end tests, and the
//! environment that keeps it offline against the fake Anthropic API.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The real claude binary, or `None` (after printing SKIPPED) when it is
/// missing and `CLOUDAGENT_SKIP_REAL_CLAUDE=1`. Panics when missing
/// otherwise: a silent skip would hide that the suite did not run.
pub fn find() -> Option<PathBuf> {
    let path = match std::env::var_os("CLOUDAGENT_TEST_CLAUDE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/claude"),
    };
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CLOUDAGENT_SKIP_REAL_CLAUDE").as_deref() == Ok("1") {
        println!(
            "SKIPPED: real Claude Code CLI not found at {} (CLOUDAGENT_SKIP_REAL_CLAUDE=1); run `bash .ci/install-claude.sh` to enable this test",
            path.display()
        );
        return None;
    }
    panic!(
        "real Claude Code CLI not found: run `bash .ci/install-claude.sh` (looked for {}; set CLOUDAGENT_TEST_CLAUDE to use another binary, or CLOUDAGENT_SKIP_REAL_CLAUDE=1 to skip)",
        path.display()
    );
}

/// Environment for claude to talk only to `base_url` (see
/// shared/fixtures/claude-code-2.1.197/README.md).
pub fn offline_env(base_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ANTHROPIC_BASE_URL", base_url.to_string()),
        ("ANTHROPIC_API_KEY", "test-key".to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
        ("DISABLE_AUTOUPDATER", "1".to_string()),
        ("DISABLE_TELEMETRY", "1".to_string()),
        ("DISABLE_ERROR_REPORTING", "1".to_string()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_string()),
    ]
}
