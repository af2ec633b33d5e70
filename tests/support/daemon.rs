//! The real daemon binary as a child process, with a config pointing at a
//! fake backend and a fake claude. Killed (by PID) on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, TestHome};

/// Short timings so reconnects and kills happen within a test's budget.
pub const FAST_TIMING: &str = "backoff_base_ms=100,backoff_max_ms=1000,kill_grace_ms=300,tool_timeout_ms=3000,fallback_timeout_ms=2000";

pub struct DaemonConfig {
    pub server_url: String,
    pub agents: Vec<String>,
    pub extra: String,
    pub daemon_section: String,
    /// Lines added to `[profiles.default]`.
    pub profile_lines: String,
    /// `[servers.test] transport`: `ws` unless a test says otherwise (the
    /// fake backend speaks both; the daemon's default is `auto`).
    pub transport: String,
}

impl DaemonConfig {
    pub fn new(server_url: &str, agents: &[&str]) -> Self {
        Self {
            server_url: server_url.to_string(),
            agents: agents.iter().map(|a| a.to_string()).collect(),
            extra: String::new(),
            daemon_section: String::new(),
            profile_lines: String::new(),
            transport: "ws".to_string(),
        }
    }

    pub fn render(&self, home: &TestHome) -> String {
        let key = home.path().join(".config/cloudagent/test.key");
        std::fs::write(&key, "sk_machine_testkey\n").unwrap();
        let mut s = format!(
            "[daemon]\nclaude_binary = \"{}\"\n{}\n[servers.test]\nurl = \"{}\"\ntransport = \"{}\"\n\n[profiles.default]\nserver = \"test\"\napi_key_file = \"{}\"\n{}",
            home.bin_dir().join("claude").display(),
            self.daemon_section,
            self.server_url,
            self.transport,
            key.display(),
            self.profile_lines
        );
        for a in &self.agents {
            s.push_str(&format!(
                "\n[profiles.default.agents.{a}]\nname = \"Agent {a}\"\n"
            ));
        }
        s.push_str(&self.extra);
        s
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Start `cloudagent-daemon start` in `home` with its default config.
    pub fn start(home: &TestHome, timing: &str) -> Self {
        Self::start_with(home, timing, &[])
    }

    pub fn start_with(home: &TestHome, timing: &str, args: &[&str]) -> Self {
        Self::spawn(home, timing, args, &[])
    }

    pub fn start_with_env(home: &TestHome, timing: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(home, timing, &[], env)
    }

    fn spawn(home: &TestHome, timing: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let out = home
            .path()
            .join(format!("daemon-{}.out", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .unwrap();
        let path = format!("{}:/usr/bin:/bin", home.bin_dir().display());
        let child = Command::new(BIN)
            .arg("start")
            .args(args)
            .env_clear()
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("PATH", path)
            .env("CLOUDAGENT_DAEMON_TEST_TIMING", timing)
            .env("CLOUDAGENT_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        Self { child, log: out }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the daemon printed (stdout+stderr), plus its log files.
    pub fn output(&self, home: &TestHome) -> String {
        let mut s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let logs = home.path().join(".cloudagent/daemon/logs");
        if let Ok(entries) = std::fs::read_dir(logs) {
            for e in entries.flatten() {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
