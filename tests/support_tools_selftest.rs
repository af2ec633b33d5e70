//! Self-tests of the test helpers that find what the tests need from the
//! machine: `support/tools.rs` (system tools: skip or, under CI, fail).

#[path = "support/tools.rs"]
mod tools;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use tools::{ToolEnv, ci_is_set, find_tool, require_tool_with};

const MISSING: &str = "cloudagent-selftest-no-such-tool";
const PACKAGE: &str = "cloudagent-selftest-pkg";
/// Set for the child run of `child_require_missing_tool`.
const CHILD: &str = "CLOUDAGENT_SELFTEST_TOOLS_CHILD";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ca-tools-")
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
    };
    let test = tools::current_test();
    assert_eq!(require_tool_with(MISSING, PACKAGE, &env, &test), None);
}

#[test]
fn require_tool_with_ci_panics_naming_the_package() {
    let env = ToolEnv {
        path: Some(tempdir().path().as_os_str().to_owned()),
        ci: true,
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
