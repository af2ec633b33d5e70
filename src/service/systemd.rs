//! systemd user unit (PROTOCOL §8.1, minus its ODDs: no `NO_PROXY=*`, no
//! `PYTHONUNBUFFERED`, a unit carrying a key is 0600, and arguments are
//! quoted so paths with spaces survive).

use std::fmt::Write;

use super::{UnitSpec, is_public_env};

pub fn render(spec: &UnitSpec) -> String {
    let mut out = String::new();
    let description = if spec.profile.is_default() {
        "cloudagent local daemon".to_string()
    } else {
        format!("cloudagent local daemon (profile {})", spec.profile)
    };
    let exec = std::iter::once(spec.program.display().to_string())
        .chain(spec.args.iter().cloned())
        .map(|a| quote_exec_word(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(out, "[Unit]");
    let _ = writeln!(out, "Description={}", escape_specifiers(&description));
    let _ = writeln!(out, "After=network-online.target");
    let _ = writeln!(out, "Wants=network-online.target");
    let _ = writeln!(out);
    let _ = writeln!(out, "[Service]");
    let _ = writeln!(out, "Type=simple");
    let _ = writeln!(out, "ExecStart={exec}");
    let _ = writeln!(out, "Restart=always");
    let _ = writeln!(out, "RestartSec={}", spec.restart_sec);
    let _ = writeln!(
        out,
        "WorkingDirectory={}",
        quote_value(&spec.working_dir.display().to_string())
    );
    for (k, v) in &spec.env {
        let _ = writeln!(out, "Environment={}", quote_value(&format!("{k}={v}")));
    }
    if let Some((k, v)) = &spec.secret_env {
        let _ = writeln!(
            out,
            "Environment={}",
            quote_value(&format!("{k}={}", v.expose()))
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "[Install]");
    let _ = writeln!(out, "WantedBy=default.target");
    out
}

/// `%` starts a specifier everywhere in a unit file.
fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
}

fn c_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// One word of ExecStart: specifiers and `$` escaped, quoted when needed.
fn quote_exec_word(s: &str) -> String {
    let s = escape_specifiers(s).replace('$', "$$");
    if needs_quotes(&s) {
        format!("\"{}\"", c_escape(&s))
    } else {
        s
    }
}

/// A whole `Environment=` / `WorkingDirectory=` value.
fn quote_value(s: &str) -> String {
    let s = escape_specifiers(s);
    if needs_quotes(&s) {
        format!("\"{}\"", c_escape(&s))
    } else {
        s
    }
}

/// The words of the first `ExecStart=` line, split on whitespace (the
/// original writes them unquoted, PROTOCOL §8.1).
pub fn exec_start_words(text: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .map(|rest| rest.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// An `ExecStart=` line with the word after `--api-key` (or the value of
/// `--api-key=`) masked.
fn mask_api_key_arg(body: &str) -> Option<String> {
    let rest = body.strip_prefix("ExecStart=")?;
    let mut mask_next = false;
    let mut changed = false;
    let words: Vec<String> = rest
        .split(' ')
        .map(|w| {
            if mask_next && !w.is_empty() {
                mask_next = false;
                changed = true;
                return "(sensitive)".to_string();
            }
            if w == "--api-key" {
                mask_next = true;
            } else if w.starts_with("--api-key=") {
                changed = true;
                return "--api-key=(sensitive)".to_string();
            }
            w.to_string()
        })
        .collect();
    changed.then(|| format!("ExecStart={}", words.join(" ")))
}

/// Mask the value of every `Environment=` assignment whose variable is not
/// known to be public, and an `--api-key` argument.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let masked = mask_api_key_arg(body).or_else(|| {
            body.strip_prefix("Environment=").and_then(|rest| {
                let unquoted = rest.trim_start_matches('"');
                let (name, _) = unquoted.split_once('=')?;
                (!is_public_env(name)).then(|| {
                    let q = if rest.starts_with('"') { "\"" } else { "" };
                    format!("Environment={q}{name}=(sensitive){q}")
                })
            })
        });
        match masked {
            Some(m) => {
                out.push_str(&m);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

/// What to do when `systemctl --user` could not load the unit: usually no
/// user session (ssh without lingering, a container).
pub const NO_USER_SESSION: &str = "The unit file is written but systemd could not load it: `systemctl --user` needs a user session (none over ssh without lingering, nor in most containers). Enable lingering with `loginctl enable-linger $USER`, log in again, then run `cloudagent-daemon apply`.";

/// A note when lingering is off for this user: the user manager, and the
/// daemon with it, then stops at logout and does not start at boot.
/// Nothing when it is on or cannot be told (no loginctl).
pub fn linger_note() -> Option<String> {
    let uid = rustix::process::getuid().as_raw().to_string();
    let out = std::process::Command::new("loginctl")
        .args(["show-user", &uid, "--property=Linger", "--value"])
        .output()
        .ok()?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        return Some(
            "Note: systemd-logind has no session for this user, so the user service manager may not run when you are logged out. Fix: `loginctl enable-linger $USER`.".into(),
        );
    }
    (value == "no").then(|| {
        "Note: lingering is off for this user: the daemon stops when you log out and does not start at boot. Fix: `loginctl enable-linger $USER`.".into()
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Secret;
    use crate::paths::ProfileName;

    fn spec(profile: &str) -> UnitSpec {
        UnitSpec {
            profile: ProfileName::parse(profile).unwrap(),
            program: PathBuf::from("/home/u/.local/bin/cloudagent-daemon"),
            args: vec![
                "start".into(),
                "--profile".into(),
                profile.into(),
                "--config".into(),
                "/home/u/My Config/cloudagent.toml".into(),
            ],
            env: vec![("PATH".into(), "/home/u/.local/bin:/usr/bin:/bin".into())],
            secret_env: None,
            restart_sec: 5,
            working_dir: PathBuf::from("/home/u"),
            log_dir: PathBuf::from("/home/u/.cloudagent/daemon/logs"),
        }
    }

    #[test]
    fn renders_default_profile_unit() {
        insta::assert_snapshot!(render(&spec("default")));
    }

    #[test]
    fn secret_env_is_rendered_and_redacted() {
        let mut s = spec("fr");
        s.secret_env = Some(("CA_KEY".into(), Secret::new("sk_machine_s3cret")));
        let text = render(&s);
        assert!(text.contains("Environment=CA_KEY=sk_machine_s3cret"));
        let shown = redact(&text);
        assert!(!shown.contains("s3cret"));
        assert!(shown.contains("Environment=CA_KEY=(sensitive)"));
        assert!(shown.contains("Environment=PATH=/home/u/.local/bin"));
    }

    #[test]
    fn our_unit_is_not_taken_for_the_originals_and_inline_keys_are_masked() {
        let ours = render(&spec("default"));
        assert!(!crate::service::written_by_original(
            &ours,
            crate::service::Platform::Systemd
        ));
        let original = "Description=cloudagent local daemon\nExecStart=/h/.local/bin/cloudagent-daemon start --server-url https://x --api-key sk_machine_k3y\n";
        assert!(crate::service::written_by_original(
            original,
            crate::service::Platform::Systemd
        ));
        let shown = redact(original);
        assert!(
            shown.contains("--api-key (sensitive)\n") && !shown.contains("k3y"),
            "{shown}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_exec_word("a b"), "\"a b\"");
        assert_eq!(quote_exec_word("100%"), "100%%");
        assert_eq!(quote_exec_word("$HOME"), "$$HOME");
        assert_eq!(quote_value("X=a \"b\""), "\"X=a \\\"b\\\"\"");
    }
}
