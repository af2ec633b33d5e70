//! Shared test fixtures: a temporary HOME, the real binary, fakes on PATH.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use assert_cmd::Command;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");

/// A temporary home directory with its own XDG config dir and a `bin/` that
/// is put first on PATH for fakes (systemctl, claude, ...).
pub struct TestHome {
    pub dir: TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ca-home-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::create_dir_all(dir.path().join(".config/cloudagent")).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.path().join("bin")
    }

    /// The real binary, with HOME and PATH pointing into this home and no
    /// inherited config override.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// The binary with this home's environment, as a std Command (to spawn
    /// it and read its output while it runs).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(BIN);
        let path = format!(
            "{}:{}",
            self.bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env_clear()
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
            .env("PATH", path)
            .env("LANG", "C.UTF-8");
        c
    }

    /// Write the config at the default location and return its path.
    /// An agent's `.meta/last-spawn.json` (default profile), parsed.
    pub fn last_spawn(&self, agent: &str) -> serde_json::Value {
        let path = self
            .path()
            .join(".cloudagent/agents")
            .join(agent)
            .join(".meta/last-spawn.json");
        let text = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&text).unwrap()
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.path().join(".config/cloudagent/cloudagent.toml");
        fs::write(&p, text).unwrap();
        p
    }

    /// Put an executable script on this home's PATH.
    pub fn fake_bin(&self, name: &str, script: &str) -> PathBuf {
        let p = self.bin_dir().join(name);
        fs::write(&p, script).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A fake `systemctl` that records each call's arguments in
    /// `systemctl.log` and exits with `status`.
    pub fn fake_systemctl(&self, status: i32, stderr: &str) -> PathBuf {
        let log = self.path().join("systemctl.log");
        self.fake_bin(
            "systemctl",
            &format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\n[ -n '{stderr}' ] && echo '{stderr}' >&2\nexit {status}\n",
                log.display()
            ),
        );
        log
    }

    pub fn systemctl_calls(&self) -> Vec<String> {
        fs::read_to_string(self.path().join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Every file and directory under the home (except bin/ and the
    /// config), with its modification time.
    pub fn snapshot_mtimes(&self) -> BTreeMap<PathBuf, SystemTime> {
        let mut out = BTreeMap::new();
        walk(self.path(), &mut out);
        out.retain(|p, _| {
            !p.starts_with(self.bin_dir()) && !p.starts_with(self.path().join(".config/cloudagent"))
        });
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, SystemTime>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let meta = fs::symlink_metadata(&p).unwrap();
        out.insert(p.clone(), meta.modified().unwrap());
        if meta.is_dir() {
            walk(&p, out);
        }
    }
}

pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Path of an example config shipped in `examples/`.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

pub mod daemon;
pub mod fake_anthropic;
pub mod fake_backend;
pub mod fake_claude;
pub mod real_claude;
pub mod scenario;
pub mod tools;
