//! System tools the tests run (`systemd-analyze`, `python3`): found on PATH,
//! never installed by the tests. A missing tool skips the test with a
//! visible `SKIPPED:` line, or fails it when `CI` is set (README.md, "Tests")
//! — unless the tool cannot exist on this OS at all (systemd's tools on
//! macOS): CI could not install it either, so that is always a skip.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a tool lookup depends on, taken from the process environment by
/// [`require_tool`] and passed in explicitly by the selftests.
#[derive(Clone, Debug, Default)]
pub struct ToolEnv {
    /// `PATH`, searched for a bare tool name.
    pub path: Option<OsString>,
    /// Whether `CI` is set: a missing tool then fails the test.
    pub ci: bool,
    /// The OS the tests run on (`std::env::consts::OS`).
    pub os: String,
}

impl ToolEnv {
    pub fn from_process() -> Self {
        Self {
            path: std::env::var_os("PATH"),
            ci: ci_is_set(std::env::var_os("CI").as_deref()),
            os: std::env::consts::OS.to_string(),
        }
    }
}

/// `CI` counts as set unless it is absent, empty, `0` or `false`.
pub fn ci_is_set(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| {
        let v = v.to_string_lossy().trim().to_ascii_lowercase();
        !matches!(v.as_str(), "" | "0" | "false")
    })
}

/// The tool `name` (a bare name searched on PATH, or an absolute path) for
/// the running test. When it is missing: with `CI` set, panics naming the
/// Debian `package`; otherwise prints `SKIPPED: <test>: ...` to the
/// terminal and returns `None`, and the test returns early.
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    require_tool_with(name, package, &ToolEnv::from_process(), &current_test())
}

/// [`require_tool`] with the environment and test name given.
pub fn require_tool_with(name: &str, package: &str, env: &ToolEnv, test: &str) -> Option<PathBuf> {
    if let Some(found) = find_tool(name, env.path.as_deref()) {
        return Some(found);
    }
    if let Some(only_on) = os_without(name, &env.os) {
        skip(
            test,
            &format!("{name} does not exist on {} (it is {only_on} only)", env.os),
        );
        return None;
    }
    let why = format!("{name} not found (install the Debian package {package})");
    if env.ci {
        panic!("{test}: {why}; CI is set, so a missing tool fails the test instead of skipping it");
    }
    skip(test, &why);
    None
}

/// The OS a tool exists on, when that is not `os`: systemd's tools are
/// Linux only, so on macOS no package provides them.
pub fn os_without(name: &str, os: &str) -> Option<&'static str> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let systemd = matches!(base, "systemd-analyze" | "systemctl" | "journalctl");
    (systemd && os != "linux").then_some("Linux")
}

/// An executable file at `name` if it contains a `/`, else the first one
/// named `name` in the directories of `path`.
pub fn find_tool(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.contains('/') {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Prints `SKIPPED: <test>: <why>` where the developer sees it.
pub fn skip(test: &str, why: &str) {
    say(&format!("SKIPPED: {test}: {why}"));
}

/// Writes one line straight to the stderr file descriptor. libtest captures
/// only what the print macros write, and hides it for passing tests; a skip
/// or a long install must show.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    // Nothing sensible to do if the terminal is gone.
    let _ = writeln!(err, "{line}");
}

/// The running test's name: libtest runs each test on a thread named after
/// it (a `#[tokio::test]` body runs on that thread too).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}
