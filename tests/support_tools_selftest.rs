//! Self-tests of the test helpers that find what the tests need from the
//! machine: `support/tools.rs` (system tools: skip or, under CI, fail) and
//! `support/real_claude.rs` (the pinned claude, installed on first use).

#[path = "support/real_claude.rs"]
mod real_claude;
#[path = "support/tools.rs"]
mod tools;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use real_claude::{ClaudeEnv, find_with, installed, parse_pinned_version, pinned_version};
use tools::{ToolEnv, ci_is_set, find_tool, os_without, require_tool_with};

const MISSING: &str = "cloudagent-selftest-no-such-tool";
const PACKAGE: &str = "cloudagent-selftest-pkg";
/// Set for the child run of `child_require_missing_tool`.
const CHILD: &str = "CLOUDAGENT_SELFTEST_TOOLS_CHILD";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ca-selftest-")
        .tempdir()
        .unwrap()
}

fn write_exe(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The message of a panic in `f`.
fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ──────────────────────────────────────────────────────── system tools ──

#[test]
fn ci_is_set_unless_absent_empty_zero_or_false() {
    for (value, set) in [
        (None, false),
        (Some(""), false),
        (Some("0"), false),
        (Some("false"), false),
        (Some("FALSE"), false),
        (Some("true"), true),
        (Some("1"), true),
        (Some("yes"), true),
    ] {
        assert_eq!(ci_is_set(value.map(OsStr::new)), set, "CI={value:?}");
    }
}

#[test]
fn find_tool_searches_path_for_executables_and_takes_absolute_paths() {
    let a = tempdir();
    let b = tempdir();
    write_exe(&b.path().join("tool"), "#!/bin/sh\n");
    fs::write(a.path().join("tool"), "not executable").unwrap();
    let path = std::env::join_paths([a.path(), b.path()]).unwrap();

    assert_eq!(
        find_tool("tool", Some(&path)),
        Some(b.path().join("tool")),
        "the first executable wins; a plain file of that name is passed over"
    );
    assert_eq!(find_tool(MISSING, Some(&path)), None);
    assert_eq!(find_tool("tool", None), None);
    let absolute = b.path().join("tool");
    assert_eq!(find_tool(absolute.to_str().unwrap(), None), Some(absolute));
    assert_eq!(
        find_tool(a.path().join("tool").to_str().unwrap(), None),
        None
    );
}

#[test]
fn require_tool_finds_a_tool_on_the_given_path() {
    let dir = tempdir();
    write_exe(&dir.path().join("tool"), "#!/bin/sh\n");
    let env = ToolEnv {
        path: Some(dir.path().as_os_str().to_owned()),
        ci: true,
        os: "linux".into(),
    };
    assert_eq!(
        require_tool_with("tool", PACKAGE, &env, "t"),
        Some(dir.path().join("tool"))
    );
}

#[test]
fn require_tool_without_ci_returns_none_for_a_missing_tool() {
    let env = ToolEnv {
        path: Some(tempdir().path().as_os_str().to_owned()),
        ci: false,
        os: "linux".into(),
    };
    let test = tools::current_test();
    assert_eq!(require_tool_with(MISSING, PACKAGE, &env, &test), None);
}

#[test]
fn require_tool_with_ci_panics_naming_the_package() {
    let env = ToolEnv {
        path: Some(tempdir().path().as_os_str().to_owned()),
        ci: true,
        os: "linux".into(),
    };
    let msg = panic_message(|| {
        require_tool_with(MISSING, PACKAGE, &env, "some_test");
    });
    assert!(
        msg.contains(&format!(
            "some_test: {MISSING} not found (install the Debian package {PACKAGE})"
        )),
        "{msg}"
    );
}

#[test]
fn a_tool_that_cannot_exist_on_this_os_is_skipped_even_under_ci() {
    let env = |os: &str| ToolEnv {
        path: Some(tempdir().path().as_os_str().to_owned()),
        ci: true,
        os: os.into(),
    };
    assert_eq!(
        require_tool_with("systemd-analyze", "systemd", &env("macos"), "t"),
        None,
        "no package can provide systemd-analyze on macOS: a skip, not a failure"
    );
    let msg = panic_message(|| {
        require_tool_with("systemd-analyze", "systemd", &env("linux"), "t");
    });
    assert!(msg.contains("install the Debian package systemd"), "{msg}");
    let msg = panic_message(|| {
        require_tool_with(MISSING, PACKAGE, &env("macos"), "t");
    });
    assert!(
        msg.contains(PACKAGE),
        "other tools still fail on macOS: {msg}"
    );
    assert_eq!(os_without("/usr/bin/systemctl", "macos"), Some("Linux"));
    assert_eq!(os_without("systemd-analyze", "linux"), None);
    assert_eq!(os_without("python3", "macos"), None);
}

/// Run by the two tests below as a subprocess of this test binary.
#[test]
#[ignore = "run as a subprocess by require_tool_* selftests"]
fn child_require_missing_tool() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    assert_eq!(tools::require_tool(MISSING, PACKAGE), None);
}

/// This test binary running only `child_require_missing_tool`, with
/// libtest's output capture on (no --nocapture), as `cargo test` runs it.
fn run_child(ci: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_require_missing_tool", "--ignored"])
        .env(CHILD, "1")
        .env_remove("CI");
    if let Some(ci) = ci {
        cmd.env("CI", ci);
    }
    cmd.output().unwrap()
}

#[test]
fn require_tool_skip_line_reaches_the_terminal_through_output_capture() {
    let out = run_child(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr.lines().any(|l| l
            == format!(
                "SKIPPED: child_require_missing_tool: {MISSING} not found (install the Debian package {PACKAGE})"
            )),
        "stderr: {stderr}"
    );
}

#[test]
fn require_tool_fails_the_test_when_ci_is_set() {
    let out = run_child(Some("true"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains(&format!("install the Debian package {PACKAGE}")),
        "{all}"
    );
    assert!(!all.contains("SKIPPED:"), "{all}");
}

// ─────────────────────────────────────────────────────────── claude ──

/// A checkout at a temp dir whose `.ci/install-claude.sh` is `script`.
fn fake_repo(script: &str) -> tempfile::TempDir {
    let repo = tempdir();
    write_exe(&repo.path().join(".ci/install-claude.sh"), script);
    repo
}

/// An installer that lays out `.tools/` as the real one does (for the
/// version in CLAUDE_CODE_VERSION) and counts its runs in `runs.log`.
const FAKE_INSTALLER: &str = r#"#!/usr/bin/env bash
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
echo run >> "$REPO/runs.log"
# Long enough for the other threads to reach the lock while this one installs.
sleep 0.3
PKG="$REPO/.tools/claude-code/node_modules/@anthropic-ai/claude-code"
mkdir -p "$PKG" "$REPO/.tools/bin"
printf '{"version": "%s"}' "$CLAUDE_CODE_VERSION" > "$PKG/package.json"
printf '#!/bin/sh\necho "%s (Claude Code)"\n' "$CLAUDE_CODE_VERSION" > "$PKG/claude"
chmod +x "$PKG/claude"
ln -sfn "$PKG/claude" "$REPO/.tools/bin/claude"
echo "$PKG/claude"
"#;

fn runs(repo: &Path) -> usize {
    fs::read_to_string(repo.join("runs.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn pinned_version_comes_from_the_installer_and_matches_the_readme() {
    assert_eq!(
        parse_pinned_version("VERSION=\"${CLAUDE_CODE_VERSION:-9.8.7}\"\n"),
        Some("9.8.7")
    );
    assert_eq!(parse_pinned_version("VERSION=1.0\n"), None);
    let v = pinned_version();
    assert!(v.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("@anthropic-ai/claude-code@{v}")),
        "README.md names another Claude Code version than .ci/install-claude.sh ({v})"
    );
}

#[test]
fn claude_override_takes_precedence_over_installing() {
    let repo = fake_repo(FAKE_INSTALLER);
    let other = repo.path().join("my-claude");
    write_exe(&other, "#!/bin/sh\n");
    let env = ClaudeEnv {
        override_path: Some(other.clone()),
        skip_if_missing: false,
    };
    assert_eq!(find_with(&env, repo.path(), "t"), Some(other));
    assert_eq!(runs(repo.path()), 0);
}

#[test]
fn claude_override_that_is_not_a_file_is_reported() {
    let repo = fake_repo(FAKE_INSTALLER);
    let env = ClaudeEnv {
        override_path: Some(PathBuf::from("/nonexistent/claude")),
        skip_if_missing: false,
    };
    let msg = panic_message(|| {
        find_with(&env, repo.path(), "t");
    });
    assert!(
        msg.contains("CLOUDAGENT_TEST_CLAUDE=/nonexistent/claude is not a file"),
        "{msg}"
    );
    assert_eq!(runs(repo.path()), 0);
}

#[test]
fn claude_is_installed_once_when_tests_ask_at_the_same_time() {
    let repo = fake_repo(FAKE_INSTALLER);
    let found: Vec<Option<PathBuf>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| find_with(&ClaudeEnv::default(), repo.path(), "t")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let link = repo.path().join(".tools/bin/claude");
    assert!(found.iter().all(|f| f.as_ref() == Some(&link)), "{found:?}");
    assert_eq!(runs(repo.path()), 1, "the installer ran more than once");
    assert!(repo.path().join(".tools/.install.lock").is_file());
    // Installed: found without running the installer again.
    assert_eq!(
        find_with(&ClaudeEnv::default(), repo.path(), "t"),
        Some(link)
    );
    assert_eq!(runs(repo.path()), 1);
}

#[test]
fn claude_of_another_version_is_reinstalled() {
    let repo = fake_repo(FAKE_INSTALLER);
    let old = Command::new("bash")
        .arg(repo.path().join(".ci/install-claude.sh"))
        .env("CLAUDE_CODE_VERSION", "0.0.1")
        .output()
        .unwrap();
    assert!(old.status.success(), "{old:?}");
    assert_eq!(installed(repo.path()), None);
    let link = repo.path().join(".tools/bin/claude");
    assert_eq!(
        find_with(&ClaudeEnv::default(), repo.path(), "t"),
        Some(link.clone())
    );
    assert_eq!(installed(repo.path()), Some(link));
    assert_eq!(runs(repo.path()), 2);
}

#[test]
fn claude_missing_with_skip_set_is_skipped_without_installing() {
    let repo = fake_repo(FAKE_INSTALLER);
    let env = ClaudeEnv {
        override_path: None,
        skip_if_missing: true,
    };
    assert_eq!(find_with(&env, repo.path(), &tools::current_test()), None);
    assert_eq!(runs(repo.path()), 0);
}

/// Fails as the real installer does offline or without npm.
const FAILING_INSTALLER: &str = r#"#!/usr/bin/env bash
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
echo run >> "$REPO/runs.log"
echo 'selftest: a simulated failure of .ci/install-claude.sh' >&2
exit 1
"#;

#[test]
fn claude_install_failure_names_the_version_and_how_to_install_by_hand() {
    let repo = fake_repo(FAILING_INSTALLER);
    let msg = panic_message(|| {
        find_with(&ClaudeEnv::default(), repo.path(), "t");
    });
    let v = pinned_version();
    for needle in [
        format!("Claude Code CLI {v} (pinned in .ci/install-claude.sh)"),
        "`bash .ci/install-claude.sh`".to_string(),
        format!("`npm install -g @anthropic-ai/claude-code@{v}`"),
        "CLOUDAGENT_TEST_CLAUDE".to_string(),
        "the installer failed".to_string(),
    ] {
        assert!(msg.contains(&needle), "{needle:?} not in: {msg}");
    }
}

#[test]
fn a_failed_install_is_not_retried_by_the_other_tests() {
    let repo = fake_repo(FAILING_INSTALLER);
    let messages: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    panic_message(|| {
                        find_with(&ClaudeEnv::default(), repo.path(), "t");
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs(repo.path()), 1, "the installer ran more than once");
    for msg in &messages {
        assert!(msg.contains("the installer failed"), "{msg}");
    }
}
