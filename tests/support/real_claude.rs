//! Locating the real Claude Code CLI for the end-to-end tests (installing
//! the pinned version into `.tools/` on first use), and the environment that
//! keeps it offline against the fake Anthropic API.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use super::tools::{current_test, say, skip};

/// The installer; its `VERSION` default is the one version the tests pin.
const INSTALLER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/.ci/install-claude.sh"
));
const PACKAGE: &str = "@anthropic-ai/claude-code";

/// The Claude Code version pinned in `.ci/install-claude.sh`.
pub fn pinned_version() -> &'static str {
    parse_pinned_version(INSTALLER)
        .expect(".ci/install-claude.sh has no VERSION=\"${CLAUDE_CODE_VERSION:-X.Y.Z}\" line")
}

/// The `X.Y.Z` of `VERSION="${CLAUDE_CODE_VERSION:-X.Y.Z}"`.
pub fn parse_pinned_version(script: &str) -> Option<&str> {
    let rest = script.split("${CLAUDE_CODE_VERSION:-").nth(1)?;
    let version = &rest[..rest.find('}')?];
    (!version.is_empty()).then_some(version)
}

/// What finding claude depends on, from the process environment in
/// [`find`] and given explicitly by the selftests.
#[derive(Clone, Debug, Default)]
pub struct ClaudeEnv {
    /// `CLOUDAGENT_TEST_CLAUDE`: a claude binary to use instead of `.tools/`.
    pub override_path: Option<PathBuf>,
    /// `CLOUDAGENT_SKIP_REAL_CLAUDE=1`: skip rather than install when missing.
    pub skip_if_missing: bool,
}

impl ClaudeEnv {
    pub fn from_process() -> Self {
        Self {
            override_path: std::env::var_os("CLOUDAGENT_TEST_CLAUDE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            skip_if_missing: std::env::var("CLOUDAGENT_SKIP_REAL_CLAUDE").as_deref() == Ok("1"),
        }
    }
}

/// The real claude binary for this test. `CLOUDAGENT_TEST_CLAUDE` wins;
/// otherwise the pinned version in `.tools/`, installed there on first use.
/// `None` (after a SKIPPED line) only with `CLOUDAGENT_SKIP_REAL_CLAUDE=1`;
/// a failed install panics with how to install by hand.
pub fn find() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    find_with(&ClaudeEnv::from_process(), repo, &current_test())
}

/// [`find`] for the checkout at `repo`, with the environment given.
pub fn find_with(env: &ClaudeEnv, repo: &Path, test: &str) -> Option<PathBuf> {
    if let Some(path) = &env.override_path {
        assert!(
            path.is_file(),
            "CLOUDAGENT_TEST_CLAUDE={} is not a file: point it at a claude binary, or unset it to use the pinned {} in .tools/",
            path.display(),
            pinned_version()
        );
        return Some(path.clone());
    }
    if let Some(path) = installed(repo) {
        return Some(path);
    }
    if env.skip_if_missing {
        skip(
            test,
            &format!(
                "Claude Code CLI {} not installed in {} (CLOUDAGENT_SKIP_REAL_CLAUDE=1); `bash .ci/install-claude.sh` installs it",
                pinned_version(),
                repo.join(".tools").display()
            ),
        );
        return None;
    }
    Some(provision(repo))
}

/// `.tools/bin/claude` if it is the pinned version (read from the npm
/// package's package.json: no process to start on the common path).
pub fn installed(repo: &Path) -> Option<PathBuf> {
    let link = repo.join(".tools/bin/claude");
    let manifest = repo
        .join(".tools/claude-code/node_modules")
        .join(PACKAGE)
        .join("package.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
    (manifest["version"] == pinned_version() && link.is_file()).then_some(link)
}

/// Why installing into a checkout failed, so that the other tests of this
/// binary report it at once instead of each trying again (offline, npm can
/// take a minute to give up).
static FAILED: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());

/// Installs the pinned claude with `.ci/install-claude.sh` under an
/// exclusive lock on `.tools/.install.lock`: test threads and test binaries
/// running at once install it once, the others wait and then find it.
fn provision(repo: &Path) -> PathBuf {
    let _lock = lock_tools(repo);
    if let Some(path) = installed(repo) {
        return path;
    }
    let version = pinned_version();
    let failure = match failure_for(repo) {
        Some(failure) => failure,
        None => match run_installer(repo, version) {
            Ok(path) => return path,
            Err(failure) => {
                let mut failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
                failed.push((repo.to_path_buf(), failure.clone()));
                failure
            }
        },
    };
    panic!("{}", install_failed(version, &failure));
}

fn failure_for(repo: &Path) -> Option<String> {
    let failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
    failed
        .iter()
        .find(|(r, _)| r == repo)
        .map(|(_, f)| f.clone())
}

/// Runs `.ci/install-claude.sh` for `version`, with its output on the
/// terminal; the installed binary, or what went wrong.
fn run_installer(repo: &Path, version: &str) -> Result<PathBuf, String> {
    say(&format!(
        "installing the pinned Claude Code CLI {version} into {} for the end-to-end tests (first use; `bash .ci/install-claude.sh`, npm, no root) ...",
        repo.join(".tools").display()
    ));
    let started = Instant::now();
    // The script's log and npm's output go to the terminal; its stdout (the
    // binary's path) is not needed.
    let status = Command::new("bash")
        .arg(repo.join(".ci/install-claude.sh"))
        .env("CLAUDE_CODE_VERSION", version)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("could not run bash: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the installer failed ({status}; its messages are above)"
        ));
    }
    let path = installed(repo).ok_or_else(|| {
        "the installer succeeded but .tools/bin/claude is not the pinned version".to_string()
    })?;
    say(&format!(
        "installed {} in {:.0?}",
        path.display(),
        started.elapsed()
    ));
    Ok(path)
}

/// Why claude is missing and every way to provide it.
pub fn install_failed(version: &str, failure: &str) -> String {
    format!(
        "the real Claude Code CLI {version} (pinned in .ci/install-claude.sh) is needed by this test and installing it into .tools/ failed: {failure}. \
         Install it by hand with `bash .ci/install-claude.sh` (needs npm and network access), \
         or with `npm install -g {PACKAGE}@{version}` and then `export CLOUDAGENT_TEST_CLAUDE=\"$(command -v claude)\"`; \
         CLOUDAGENT_SKIP_REAL_CLAUDE=1 skips these tests instead"
    )
}

/// Holds an exclusive flock on `.tools/.install.lock` until dropped.
fn lock_tools(repo: &Path) -> File {
    let tools = repo.join(".tools");
    let path = tools.join(".install.lock");
    let file = std::fs::create_dir_all(&tools)
        .and_then(|()| File::options().create(true).append(true).open(&path))
        .unwrap_or_else(|e| panic!("{}: {e} (the tests install claude there)", path.display()));
    use rustix::fs::{FlockOperation, flock};
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        say(&format!(
            "waiting for {} (another test is installing claude) ...",
            path.display()
        ));
        flock(&file, FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
    }
    file
}

/// Environment for claude to talk only to `base_url` (see
/// tests/fixtures/claude-code-2.1.197/).
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
