//! Which AI coding CLIs are installed (PROTOCOL §11). The list goes to the
//! backend at every connect, so it copies the original's probes, lookup
//! order and version capture exactly.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::protocol::outbound::Runtime;
use crate::runtime::wake::command::{is_executable_file, resolve_binary};

struct Probe {
    name: &'static str,
    candidates: &'static [&'static str],
    version_args: &'static [&'static str],
}

const PROBES: [Probe; 7] = [
    Probe {
        name: "claude_code",
        candidates: &["claude", "claude-code"],
        version_args: &["--version"],
    },
    Probe {
        name: "codex",
        candidates: &["codex"],
        version_args: &["--version"],
    },
    Probe {
        name: "opencode",
        candidates: &["opencode", "open-code"],
        version_args: &["version"],
    },
    Probe {
        name: "aider",
        candidates: &["aider"],
        version_args: &["--version"],
    },
    Probe {
        name: "cursor_agent",
        candidates: &["cursor-agent"],
        version_args: &["--version"],
    },
    Probe {
        name: "gemini_cli",
        candidates: &["gemini"],
        version_args: &["--version"],
    },
    Probe {
        name: "gh_copilot",
        candidates: &["gh"],
        version_args: &["copilot", "--version"],
    },
];

/// Where npm-style installers put binaries that a service's PATH misses.
const FIXED_DIRS: [&str; 9] = [
    ".local/bin",
    "bin",
    ".npm-global/bin",
    ".volta/bin",
    ".bun/bin",
    ".yarn/bin",
    ".local/share/pnpm",
    ".pnpm-global/bin",
    "Library/pnpm",
];

/// Node version managers: `(directory holding versions, path inside one)`.
const GLOBBED_DIRS: [(&str, &str); 5] = [
    (".nvm/versions/node", "bin"),
    (".fnm/node-versions", "installation/bin"),
    (".local/share/fnm/node-versions", "installation/bin"),
    (
        "Library/Application Support/fnm/node-versions",
        "installation/bin",
    ),
    (".asdf/installs/nodejs", "bin"),
];

const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
const VERSION_MAX_CHARS: usize = 64;
const UNKNOWN: &str = "unknown";

/// Finds the installed runtimes, in probe order, at most one per runtime.
/// Each probe runs with `env` only (the children's scrubbed environment:
/// a probe is a child like claude), and is looked up on its PATH.
pub async fn detect(home: &Path, env: &[(OsString, OsString)]) -> Vec<Runtime> {
    detect_with_timeout(home, env, VERSION_TIMEOUT).await
}

async fn detect_with_timeout(
    home: &Path,
    env: &[(OsString, OsString)],
    timeout: Duration,
) -> Vec<Runtime> {
    let path_env = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let fallback = fallback_dirs(home);
    let found: Vec<(&Probe, PathBuf)> = PROBES
        .iter()
        .filter_map(|probe| {
            probe
                .candidates
                .iter()
                .find_map(|c| lookup(c, path_env.as_deref(), &fallback))
                .map(|binary| (probe, binary))
        })
        .collect();
    // Probes are independent; one slow CLI should not add up with the rest.
    let versions = futures_util::future::join_all(
        found
            .iter()
            .map(|(probe, binary)| capture_version(binary, probe.version_args, env, timeout)),
    )
    .await;
    found
        .into_iter()
        .zip(versions)
        .map(|((probe, binary), version)| Runtime {
            name: probe.name.to_string(),
            version,
            binary: binary.to_string_lossy().into_owned(),
        })
        .collect()
}

/// Looks `candidate` up on `path_env`, then in the fallback directories.
pub fn find_binary(candidate: &str, home: &Path, path_env: Option<&OsStr>) -> Option<PathBuf> {
    lookup(candidate, path_env, &fallback_dirs(home))
}

fn lookup(candidate: &str, path_env: Option<&OsStr>, fallback: &[PathBuf]) -> Option<PathBuf> {
    resolve_binary(candidate, path_env).or_else(|| {
        fallback
            .iter()
            .map(|dir| dir.join(candidate))
            .find(|path| is_executable_file(path))
    })
}

/// The existing fallback directories, in search order. Within one version
/// manager the lexically first version wins (the original's comment claims
/// the newest; its behaviour is what the backend has seen).
fn fallback_dirs(home: &Path) -> Vec<PathBuf> {
    let fixed = FIXED_DIRS.iter().map(|d| home.join(d));
    let globbed = GLOBBED_DIRS.iter().flat_map(|(parent, inner)| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(home.join(parent))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            // A glob `*` does not match hidden names.
            .filter(|entry| !entry.file_name().as_encoded_bytes().starts_with(b"."))
            .map(|entry| entry.path().join(inner))
            .collect();
        dirs.sort();
        dirs
    });
    fixed.chain(globbed).filter(|d| d.is_dir()).collect()
}

/// Runs `<binary> <args>` and keeps the first line of its output.
pub async fn capture_version(
    binary: &Path,
    args: &[&str],
    env: &[(OsString, OsString)],
    timeout: Duration,
) -> String {
    let child = tokio::process::Command::new(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = child else {
        return UNKNOWN.to_string();
    };
    // On timeout the dropped future kills the child.
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        _ => return UNKNOWN.to_string(),
    };
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    version_line(&text)
}

fn version_line(output: &str) -> String {
    let first = output.trim().split(['\n', '\r']).next().unwrap_or_default();
    let version: String = first.chars().take(VERSION_MAX_CHARS).collect();
    if version.is_empty() {
        UNKNOWN.to_string()
    } else {
        version
    }
}

/// The `start` banner listing the runtimes.
pub fn render(runtimes: &[Runtime]) -> String {
    if runtimes.is_empty() {
        return "No AI coding runtimes detected on PATH.\n".to_string();
    }
    let mut out = "Detected runtimes:\n".to_string();
    for rt in runtimes {
        out.push_str(&format!(
            "  ✓ {} {}  ({})\n",
            rt.name, rt.version, rt.binary
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn path_env(path: OsString) -> Vec<(OsString, OsString)> {
        vec![("PATH".into(), path)]
    }

    #[tokio::test]
    async fn probes_see_only_the_environment_they_are_given() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = script(
            &tmp.path().join("bin"),
            "codex",
            r#"echo "codex ${SECRET_VAR:-clean}""#,
        );
        let env = vec![("PATH".into(), tmp.path().join("bin").into_os_string())];
        // SAFETY: no other test reads SECRET_VAR; set before the child starts.
        unsafe { std::env::set_var("SECRET_VAR", "sk_machine_leak") };
        assert_eq!(
            capture_version(&bin, &[], &env, VERSION_TIMEOUT).await,
            "codex clean"
        );
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn rt(name: &str, version: &str, binary: &Path) -> Runtime {
        Runtime {
            name: name.into(),
            version: version.into(),
            binary: binary.to_string_lossy().into_owned(),
        }
    }

    #[tokio::test]
    async fn path_hit_beats_fallback_and_order_is_probe_order() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let bin = tmp.path().join("bin");
        let gh = script(&bin, "gh", r#"echo "gh $*""#);
        let claude = script(&bin, "claude", "echo '2.1.137 (Claude Code)'");
        script(&home.join(".local/bin"), "claude", "echo fallback");
        let aider = script(&home.join(".local/bin"), "aider", "echo aider 0.80");
        // A second candidate name is not a second entry.
        script(&bin, "claude-code", "echo other");

        let found = detect(&home, &path_env(bin.clone().into_os_string())).await;
        assert_eq!(
            found,
            vec![
                rt("claude_code", "2.1.137 (Claude Code)", &claude),
                rt("aider", "aider 0.80", &aider),
                rt("gh_copilot", "gh copilot --version", &gh),
            ]
        );
        assert_eq!(
            render(&found[..1]),
            format!(
                "Detected runtimes:\n  ✓ claude_code 2.1.137 (Claude Code)  ({})\n",
                claude.display()
            )
        );
    }

    #[test]
    fn second_candidate_and_fallback_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let open = script(&home.join("bin"), "open-code", "");
        assert_eq!(find_binary("open-code", home, None), Some(open));
        let local = script(&home.join(".local/bin"), "open-code", "");
        assert_eq!(find_binary("open-code", home, None), Some(local));
        assert_eq!(find_binary("opencode", home, None), None);
    }

    #[test]
    fn lexically_first_node_version_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let nvm = home.join(".nvm/versions/node");
        for v in ["v9.0.0", "v20.1.0", "v18.2.0", ".hidden"] {
            script(&nvm.join(v).join("bin"), "codex", "");
        }
        // Numerically v20 is newest; the original takes v18 (lexically first).
        assert_eq!(
            find_binary("codex", home, None),
            Some(nvm.join("v18.2.0/bin/codex"))
        );
        // Earlier managers in the list win over later ones regardless of name.
        let fnm = home.join(".fnm/node-versions/v1/installation/bin");
        script(&fnm, "gemini", "");
        script(&home.join(".asdf/installs/nodejs/a/bin"), "gemini", "");
        script(&nvm.join("v99/bin"), "gemini", "");
        assert_eq!(
            find_binary("gemini", home, None),
            Some(nvm.join("v99/bin/gemini"))
        );
        std::fs::remove_dir_all(nvm.join("v99")).unwrap();
        assert_eq!(find_binary("gemini", home, None), Some(fnm.join("gemini")));
    }

    #[tokio::test]
    async fn version_capture_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let long = "x".repeat(100);
        let cases = [
            ("  \n 1.2.3 \nsecond line", "1.2.3 "),
            (long.as_str(), &long[..64]),
            ("", "unknown"),
        ];
        for (i, (printed, want)) in cases.iter().enumerate() {
            let bin = script(dir, &format!("p{i}"), &format!("printf '%s' '{printed}'"));
            assert_eq!(
                capture_version(&bin, &[], &[], VERSION_TIMEOUT).await,
                *want
            );
        }
        let both = script(dir, "both", "printf out; echo err >&2; exit 3");
        assert_eq!(
            capture_version(&both, &[], &[], VERSION_TIMEOUT).await,
            "outerr"
        );
        let failing = script(dir, "failing", "exit 1");
        assert_eq!(
            capture_version(&failing, &[], &[], VERSION_TIMEOUT).await,
            "unknown"
        );
        let stdin = script(dir, "stdin", "if read x; then echo got; else echo eof; fi");
        assert_eq!(
            capture_version(&stdin, &[], &[], VERSION_TIMEOUT).await,
            "eof"
        );
        let missing = dir.join("missing");
        assert_eq!(
            capture_version(&missing, &[], &[], VERSION_TIMEOUT).await,
            "unknown"
        );
    }

    #[tokio::test]
    async fn hanging_probes_time_out_concurrently() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let claude = script(&bin, "claude", "exec /bin/sleep 30");
        let codex = script(&bin, "codex", "exec /bin/sleep 30");
        let start = Instant::now();
        let found = detect_with_timeout(
            tmp.path(),
            &path_env(bin.into_os_string()),
            Duration::from_secs(1),
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_millis(1900),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            found,
            vec![
                rt("claude_code", "unknown", &claude),
                rt("codex", "unknown", &codex)
            ]
        );
    }

    #[tokio::test]
    async fn nothing_found() {
        let tmp = tempfile::tempdir().unwrap();
        let found = detect(tmp.path(), &path_env(tmp.path().as_os_str().to_owned())).await;
        assert_eq!(found, vec![]);
        assert_eq!(render(&found), "No AI coding runtimes detected on PATH.\n");
    }
}
