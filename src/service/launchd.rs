//! launchd agent plist (PROTOCOL §8.2, minus its ODDs: strings are
//! XML-escaped, no `NO_PROXY=*`/`PYTHONUNBUFFERED`).

use std::fmt::Write;

use super::{Platform, UnitSpec, is_public_env};

pub fn render(spec: &UnitSpec) -> String {
    let mut out = String::new();
    let label = Platform::Launchd.unit_name(&spec.profile);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTD/PropertyList-1.0.dtd\">\n");
    out.push_str("<plist version=\"1.0\">\n<dict>\n");
    key_string(&mut out, 4, "Label", &label);
    let _ = writeln!(out, "    <key>ProgramArguments</key>\n    <array>");
    for arg in std::iter::once(spec.program.display().to_string()).chain(spec.args.iter().cloned())
    {
        let _ = writeln!(out, "        <string>{}</string>", xml_escape(&arg));
    }
    out.push_str("    </array>\n");
    out.push_str("    <key>RunAtLoad</key>\n    <true/>\n");
    out.push_str("    <key>KeepAlive</key>\n    <true/>\n");
    let _ = writeln!(
        out,
        "    <key>ThrottleInterval</key>\n    <integer>{}</integer>",
        spec.restart_sec
    );
    key_string(
        &mut out,
        4,
        "StandardOutPath",
        &spec.log_dir.join("launchd.out.log").display().to_string(),
    );
    key_string(
        &mut out,
        4,
        "StandardErrorPath",
        &spec.log_dir.join("launchd.err.log").display().to_string(),
    );
    key_string(
        &mut out,
        4,
        "WorkingDirectory",
        &spec.working_dir.display().to_string(),
    );
    out.push_str("    <key>EnvironmentVariables</key>\n    <dict>\n");
    for (k, v) in &spec.env {
        key_string(&mut out, 8, k, v);
    }
    if let Some((k, v)) = &spec.secret_env {
        key_string(&mut out, 8, k, v.expose());
    }
    out.push_str("    </dict>\n</dict>\n</plist>\n");
    out
}

fn key_string(out: &mut String, indent: usize, key: &str, value: &str) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}<key>{}</key>", xml_escape(key));
    let _ = writeln!(out, "{pad}<string>{}</string>", xml_escape(value));
}

pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `<string>`s of `ProgramArguments`, unescaped enough to compare
/// (the original does not escape them, PROTOCOL §8.2).
pub fn program_arguments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    if !lines.any(|l| l == "<key>ProgramArguments</key>") {
        return out;
    }
    for l in lines {
        if l == "<array>" {
            continue;
        }
        match l
            .strip_prefix("<string>")
            .and_then(|r| r.strip_suffix("</string>"))
        {
            Some(v) => out.push(
                v.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            ),
            None => break,
        }
    }
    out
}

/// Mask the value that follows any `<key>` inside EnvironmentVariables whose
/// name is not known to be public, and the argument after `--api-key`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_env = false;
    let mut mask_next = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with("<string>--api-key=") {
            let indent = &line[..line.len() - line.trim_start().len()];
            let end = if line.ends_with('\n') { "\n" } else { "" };
            out.push_str(&format!(
                "{indent}<string>--api-key=(sensitive)</string>{end}"
            ));
            continue;
        }
        if t == "<key>EnvironmentVariables</key>" {
            in_env = true;
        } else if in_env && t == "</dict>" {
            in_env = false;
        }
        if mask_next && t.starts_with("<string>") {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(indent);
            out.push_str("<string>(sensitive)</string>");
            if line.ends_with('\n') {
                out.push('\n');
            }
            mask_next = false;
            continue;
        }
        mask_next = t == "<string>--api-key</string>";
        if in_env
            && let Some(name) = t
                .strip_prefix("<key>")
                .and_then(|r| r.strip_suffix("</key>"))
        {
            mask_next = !is_public_env(name);
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Secret;
    use crate::paths::ProfileName;

    fn spec() -> UnitSpec {
        UnitSpec {
            profile: ProfileName::parse("fr").unwrap(),
            program: PathBuf::from("/Users/u/.local/bin/cloudagent-daemon"),
            args: vec![
                "start".into(),
                "--profile".into(),
                "fr".into(),
                "--config".into(),
                "/Users/u/R&D <cfg>/c.toml".into(),
            ],
            env: vec![
                ("PATH".into(), "/Users/u/.local/bin:/usr/bin:/bin".into()),
                ("CLOUDAGENT_DAEMON_PROFILE".into(), "fr".into()),
            ],
            secret_env: Some(("CA_KEY".into(), Secret::new("sk_machine_<&>"))),
            restart_sec: 7,
            working_dir: PathBuf::from("/Users/u"),
            log_dir: PathBuf::from("/Users/u/.cloudagent/daemon/profiles/fr/logs"),
        }
    }

    #[test]
    fn renders_escaped_plist() {
        let text = render(&spec());
        assert!(text.contains("<string>/Users/u/R&amp;D &lt;cfg&gt;/c.toml</string>"));
        assert!(text.contains("<string>chat.cloudagent.daemon.fr</string>"));
        insta::assert_snapshot!(redact(&text));
    }

    #[test]
    fn redaction_hides_only_secret_values() {
        let shown = redact(&render(&spec()));
        assert!(!shown.contains("sk_machine"));
        assert!(shown.contains("<string>fr</string>"));
        assert!(shown.contains("/Users/u/.local/bin:/usr/bin:/bin"));
    }
}
