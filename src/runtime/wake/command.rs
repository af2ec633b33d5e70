//! claude's command line and environment (PROTOCOL §4.2, §4.4, §7.1), with
//! the fixes from §13: staff are only allowed the tools they have, and
//! `NO_PROXY=*` is never set.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::config::PermissionMode;
use crate::paths::ProfileName;
use crate::protocol::env::{PROFILE as PROFILE_ENV, SOCKET_PATH as SOCKET_ENV};
use crate::protocol::tools::{self, claude_name};
use crate::runtime::settings::Settings;

/// Variables that make claude believe it runs nested inside another Claude
/// Code session (it refuses) or attach to that session's IDE.
const NESTING_VARS: [&str; 3] = [
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SSE_PORT",
];

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The `--allowedTools` value: one comma-joined argument.
pub fn allowed_tools(chief: bool) -> String {
    tools::names(chief)
        .into_iter()
        .map(claude_name)
        .collect::<Vec<_>>()
        .join(",")
}

/// What one claude run needs on its command line.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// claude session to continue, if any.
    pub resume: Option<&'a str>,
    /// The agent's MCP config file.
    pub mcp_config: &'a Path,
    /// Whether the agent is a chief (gets the chief tools).
    pub chief: bool,
    /// The `--append-system-prompt` text.
    pub system_prompt: &'a str,
    /// claude's permission mode; `default` is not passed.
    pub permission_mode: PermissionMode,
}

/// claude's arguments (without the program), in the order of §4.2.
pub fn args(spec: &Spec) -> Vec<String> {
    let mut out = Vec::with_capacity(16);
    if let Some(id) = spec.resume {
        out.extend(["--resume".to_string(), id.to_string()]);
    }
    out.extend([
        "--mcp-config".to_string(),
        spec.mcp_config.to_string_lossy().into_owned(),
    ]);
    out.extend(
        [
            "--print",
            "--verbose",
            "--output-format",
            "stream-json",
            "--include-partial-messages",
            "--allowedTools",
        ]
        .map(String::from),
    );
    out.push(allowed_tools(spec.chief));
    out.extend([
        "--append-system-prompt".to_string(),
        spec.system_prompt.to_string(),
    ]);
    if spec.permission_mode != PermissionMode::Default {
        out.extend([
            "--permission-mode".to_string(),
            spec.permission_mode.as_str().to_string(),
        ]);
    }
    out
}

/// How claude's environment differs from the daemon's.
#[derive(Debug, Clone)]
pub struct EnvPolicy<'a> {
    /// The daemon's profile, passed on to the MCP bridge.
    pub profile: &'a ProfileName,
    /// Variables claude must never see (e.g. the one holding the API key).
    pub scrub: &'a [String],
    /// Keep the system proxy variables (off by default).
    pub use_system_proxy: bool,
    /// A non-default daemon socket, passed on to the MCP bridge.
    pub socket_override: Option<&'a Path>,
}

/// The environment of every child the daemon starts (claude, the runtime
/// probes): the daemon's own, less the key's variables and the rest of
/// [`environment`]'s policy.
pub fn child_environment(s: &Settings) -> Vec<(OsString, OsString)> {
    let scrub: Vec<String> = s.scrub_env.iter().cloned().collect();
    let socket_override = (s.socket != s.paths.socket()).then_some(s.socket.as_path());
    environment(
        std::env::vars_os(),
        &EnvPolicy {
            profile: &s.profile,
            scrub: &scrub,
            use_system_proxy: s.use_system_proxy,
            socket_override,
        },
    )
}

/// claude's full environment, sorted by name.
pub fn environment(
    base: impl IntoIterator<Item = (OsString, OsString)>,
    policy: &EnvPolicy,
) -> Vec<(OsString, OsString)> {
    let mut env: BTreeMap<OsString, OsString> = base.into_iter().collect();
    let proxies: &[&str] = if policy.use_system_proxy {
        &[]
    } else {
        &PROXY_VARS
    };
    for name in NESTING_VARS.iter().chain(proxies) {
        env.remove(OsStr::new(name));
    }
    for name in policy.scrub {
        env.remove(OsStr::new(name));
    }
    env.insert(PROFILE_ENV.into(), policy.profile.as_str().into());
    // An inherited value would point the bridge at a socket this daemon is
    // not listening on.
    match policy.socket_override {
        Some(path) => env.insert(SOCKET_ENV.into(), path.into()),
        None => env.remove(OsStr::new(SOCKET_ENV)),
    };
    env.into_iter().collect()
}

/// Finds the program to run: an absolute path is taken as is, a bare name
/// is looked up on `path_env`. Only executable regular files count.
pub fn resolve_binary(name: &str, path_env: Option<&OsStr>) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return is_executable_file(path).then(|| path.to_path_buf());
    }
    if name.is_empty() || name.contains('/') {
        return None;
    }
    std::env::split_paths(path_env?)
        // An empty entry means the cwd, which depends on where the daemon
        // happened to start.
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

/// Whether `path` (symlinks followed) is a regular file this process may
/// execute.
pub fn is_executable_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
        && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn spec<'a>(resume: Option<&'a str>, chief: bool, mode: PermissionMode) -> Spec<'a> {
        Spec {
            resume,
            mcp_config: Path::new("/agents/a1/.meta/claude-mcp-config.json"),
            chief,
            system_prompt: "SYS",
            permission_mode: mode,
        }
    }

    const STAFF_TOOLS: &str = "mcp__cloudagent__send_message,mcp__cloudagent__list_messages,mcp__cloudagent__upload_file,mcp__cloudagent__schedule_reminder";

    #[test]
    fn allowed_tools_staff_and_chief() {
        assert_eq!(allowed_tools(false), STAFF_TOOLS);
        // §4.2's exact list, in its order.
        assert_eq!(
            allowed_tools(true),
            format!(
                "{STAFF_TOOLS},mcp__cloudagent__delegate_to_staff,mcp__cloudagent__close_task,mcp__cloudagent__request_user_approval,mcp__cloudagent__set_company_status"
            )
        );
    }

    #[test]
    fn argv_without_resume() {
        let argv = args(&spec(None, false, PermissionMode::Default));
        assert_eq!(
            argv,
            [
                "--mcp-config",
                "/agents/a1/.meta/claude-mcp-config.json",
                "--print",
                "--verbose",
                "--output-format",
                "stream-json",
                "--include-partial-messages",
                "--allowedTools",
                STAFF_TOOLS,
                "--append-system-prompt",
                "SYS",
            ]
        );
    }

    #[test]
    fn argv_with_resume_chief_and_mode() {
        let argv = args(&spec(Some("sid-1"), true, PermissionMode::AcceptEdits));
        assert_eq!(
            argv[..4],
            [
                "--resume",
                "sid-1",
                "--mcp-config",
                "/agents/a1/.meta/claude-mcp-config.json"
            ]
        );
        assert_eq!(argv[10], allowed_tools(true));
        assert_eq!(
            argv[argv.len() - 4..],
            [
                "--append-system-prompt",
                "SYS",
                "--permission-mode",
                "acceptEdits"
            ]
        );
        for (mode, text) in [
            (PermissionMode::BypassPermissions, "bypassPermissions"),
            (PermissionMode::DontAsk, "dontAsk"),
            (PermissionMode::Plan, "plan"),
        ] {
            let argv = args(&spec(None, false, mode));
            assert_eq!(argv[argv.len() - 2..], ["--permission-mode", text]);
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn environment_scrubs_and_sets() {
        let profile = ProfileName::parse("prod").unwrap();
        let scrub = vec!["CLOUDAGENT_API_KEY".to_string()];
        let base = env_of(&[
            ("PATH", "/usr/bin"),
            ("CLAUDECODE", "1"),
            ("CLAUDE_CODE_ENTRYPOINT", "cli"),
            ("CLAUDE_CODE_SSE_PORT", "1234"),
            ("CLOUDAGENT_API_KEY", "secret"),
            ("HTTPS_PROXY", "http://p"),
            ("http_proxy", "http://p"),
            ("all_proxy", "socks://p"),
            ("CLOUDAGENT_DAEMON_PROFILE", "old"),
            ("CLOUDAGENT_DAEMON_SOCKET_PATH", "/stale.sock"),
            ("HOME", "/home/u"),
        ]);
        let policy = EnvPolicy {
            profile: &profile,
            scrub: &scrub,
            use_system_proxy: false,
            socket_override: None,
        };
        assert_eq!(
            environment(base.clone(), &policy),
            env_of(&[
                ("CLOUDAGENT_DAEMON_PROFILE", "prod"),
                ("HOME", "/home/u"),
                ("PATH", "/usr/bin"),
            ])
        );

        let policy = EnvPolicy {
            use_system_proxy: true,
            socket_override: Some(Path::new("/run/d.sock")),
            ..policy
        };
        let env = environment(base, &policy);
        assert_eq!(
            env,
            env_of(&[
                ("CLOUDAGENT_DAEMON_PROFILE", "prod"),
                ("CLOUDAGENT_DAEMON_SOCKET_PATH", "/run/d.sock"),
                ("HOME", "/home/u"),
                ("HTTPS_PROXY", "http://p"),
                ("PATH", "/usr/bin"),
                ("all_proxy", "socks://p"),
                ("http_proxy", "http://p"),
            ])
        );
        assert!(!env.iter().any(|(k, _)| k == "NO_PROXY" || k == "no_proxy"));
    }

    fn write_file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn resolve_binary_on_path_and_absolute() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(a.join("claude")).unwrap(); // a directory: skipped
        std::fs::create_dir_all(&b).unwrap();
        write_file(&b.join("claude"), 0o755);
        write_file(&a.join("noexec"), 0o644);
        write_file(&b.join("noexec"), 0o755);
        let path = std::env::join_paths(["", "relative", a.to_str().unwrap(), b.to_str().unwrap()])
            .unwrap();

        assert_eq!(
            resolve_binary("claude", Some(&path)),
            Some(b.join("claude"))
        );
        assert_eq!(
            resolve_binary("noexec", Some(&path)),
            Some(b.join("noexec"))
        );
        assert_eq!(resolve_binary("missing", Some(&path)), None);
        assert_eq!(resolve_binary("claude", None), None);
        assert_eq!(resolve_binary("", Some(&path)), None);
        assert_eq!(
            resolve_binary("b/claude", Some(tmp.path().as_os_str())),
            None
        );

        let abs = b.join("claude");
        assert_eq!(
            resolve_binary(abs.to_str().unwrap(), None),
            Some(abs.clone())
        );
        let not_exec = a.join("noexec");
        assert_eq!(
            resolve_binary(not_exec.to_str().unwrap(), Some(&path)),
            None
        );
        assert_eq!(
            resolve_binary(a.join("claude").to_str().unwrap(), None),
            None
        );
    }
}
