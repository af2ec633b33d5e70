//! Reading a unit the original Python daemon's `install-service` wrote:
//! `start` plus `--server-url U --api-key K`, `--insecure`,
//! `--workspace-root DIR`, `--profile P`, and the permission mode in
//! `CLOUDAGENT_DAEMON_PERMISSION_MODE`. `import` carries these settings
//! into cloudagent.toml and the key into a key file.

use super::Platform;

/// What an original unit says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LegacyUnit {
    pub server_url: Option<String>,
    pub api_key: Option<String>,
    pub insecure: bool,
    pub workspace_root: Option<String>,
    pub permission_mode: Option<String>,
}

pub fn parse(text: &str, platform: Platform) -> LegacyUnit {
    let (args, mode) = match platform {
        Platform::Systemd => systemd(text),
        Platform::Launchd => launchd(text),
    };
    let mut unit = LegacyUnit {
        permission_mode: mode,
        ..LegacyUnit::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match flag {
            "--server-url" => unit.server_url = value(),
            "--api-key" => unit.api_key = value(),
            "--workspace-root" | "-w" => unit.workspace_root = value(),
            "--insecure" => unit.insecure = true,
            _ => {}
        }
    }
    unit
}

/// ExecStart's words (the original joins them with single spaces,
/// unquoted) and the permission mode from its Environment lines.
fn systemd(text: &str) -> (Vec<String>, Option<String>) {
    let mut args = Vec::new();
    let mut mode = None;
    for line in text.lines().map(str::trim) {
        if let Some(cmd) = line.strip_prefix("ExecStart=") {
            args = cmd.split_whitespace().map(String::from).collect();
        } else if let Some(m) = line.strip_prefix("Environment=").and_then(|e| {
            e.trim_matches('"')
                .strip_prefix("CLOUDAGENT_DAEMON_PERMISSION_MODE=")
        }) {
            mode = Some(m.to_string());
        }
    }
    (args, mode)
}

/// ProgramArguments' strings and the permission mode from
/// EnvironmentVariables.
fn launchd(text: &str) -> (Vec<String>, Option<String>) {
    let args = text
        .split_once("<key>ProgramArguments</key>")
        .and_then(|(_, rest)| rest.split_once("</array>"))
        .map(|(array, _)| strings(array))
        .unwrap_or_default();
    let mode = text
        .split_once("<key>CLOUDAGENT_DAEMON_PERMISSION_MODE</key>")
        .and_then(|(_, rest)| strings(rest).into_iter().next());
    (args, mode)
}

/// The contents of the `<string>` elements in `xml`, unescaped.
fn strings(xml: &str) -> Vec<String> {
    xml.split("<string>")
        .skip(1)
        .filter_map(|s| s.split_once("</string>").map(|(v, _)| v))
        .map(|v| {
            v.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_original_systemd_unit() {
        let text = "[Service]\nType=simple\nExecStart=/home/u/.local/bin/cloudagent-daemon start --server-url https://api-fr.x --api-key sk_machine_k --insecure --workspace-root /home/u/code --profile fr\nEnvironment=CLOUDAGENT_DAEMON_PROFILE=fr\nEnvironment=CLOUDAGENT_DAEMON_PERMISSION_MODE=acceptEdits\n";
        assert_eq!(
            parse(text, Platform::Systemd),
            LegacyUnit {
                server_url: Some("https://api-fr.x".into()),
                api_key: Some("sk_machine_k".into()),
                insecure: true,
                workspace_root: Some("/home/u/code".into()),
                permission_mode: Some("acceptEdits".into()),
            }
        );
    }

    #[test]
    fn reads_an_original_launchd_plist() {
        let text = "<dict>\n    <key>ProgramArguments</key>\n    <array>\n        <string>/u/cloudagent-daemon</string>\n        <string>start</string>\n        <string>--server-url</string>\n        <string>https://a.b</string>\n        <string>--api-key</string>\n        <string>sk_machine_a&amp;b</string>\n    </array>\n    <key>EnvironmentVariables</key>\n    <dict>\n        <key>CLOUDAGENT_DAEMON_PERMISSION_MODE</key>\n        <string>bypassPermissions</string>\n    </dict>\n</dict>\n";
        let unit = parse(text, Platform::Launchd);
        assert_eq!(unit.server_url.as_deref(), Some("https://a.b"));
        assert_eq!(unit.api_key.as_deref(), Some("sk_machine_a&b"));
        assert_eq!(unit.permission_mode.as_deref(), Some("bypassPermissions"));
        assert!(!unit.insecure);
    }
}
