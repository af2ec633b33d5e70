//! The daemon as an operator, with the release binary against a lean
//! WebSocket backend (benches/support/backend.rs), figures only (README.md,
//! "Benchmarks"):
//!
//! - config edit → applied: from the atomic rename of `cloudagent.toml`
//!   adding an agent to that agent's workspace existing *and* `status`
//!   (asked over the profile's socket) showing the new config generation,
//!   debounce included; p50/p90 over 50 edits;
//! - idle cost: the daemon's CPU time (utime + stime from /proc, Linux
//!   only) over 60 s, 15 s after the last edit, with nothing changing but a backend `ping` every 30 s,
//!   as the original's backend sends; the watcher and the resync timer are
//!   armed;
//! - a metrics scrape over `metrics.sock`: p50/p90 over 200.
//!
//! Anything that does not come right before its deadline is reported on a
//! FAIL line and the bench exits 1.
//!
//! Run: `cargo bench --bench operator` (`-- --no-idle` skips the 60 s).

// Shared with benches/daemon.rs, which uses the rest of it.
#[path = "support/backend.rs"]
#[allow(dead_code)]
mod backend;
#[path = "support/sse_backend.rs"]
#[allow(dead_code)]
mod sse_backend;
#[path = "support/stats.rs"]
mod stats;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend::{Conn, PING};
use stats::{p50_p90_p99, sort};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixStream};

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
const CLAUDE: &str = "#!/bin/sh\necho '2.1.197 (Claude Code)'\n";
const EDITS: usize = 50;
const SCRAPES: usize = 200;
/// One edit must be applied within this, or it is a failure.
const PER_EDIT: Duration = Duration::from_secs(10);
/// The idle window (measured on Linux only, see `idle`).
#[cfg(target_os = "linux")]
const IDLE: Duration = Duration::from_secs(60);
/// Before the idle window.
#[cfg(target_os = "linux")]
const SETTLE: Duration = Duration::from_secs(15);

struct Home {
    dir: PathBuf,
    url: String,
}

impl Home {
    fn config(&self, agents: usize) -> String {
        let mut cfg = format!(
            "[daemon]\nclaude_binary = \"{}\"\n[servers.b]\nurl = \"{}\"\ntransport = \"ws\"\n[profiles.default]\nserver = \"b\"\napi_key_file = \"{}\"\n",
            self.dir.join("bin/claude").display(),
            self.url,
            self.dir.join("key").display()
        );
        for i in 0..agents {
            cfg.push_str(&format!("[profiles.default.agents.agent_{i:03}]\n"));
        }
        cfg
    }

    /// Replace the config the way editors and generators do.
    fn write_config(&self, agents: usize) {
        let tmp = self.dir.join("cloudagent.toml.tmp");
        std::fs::write(&tmp, self.config(agents)).expect("write the config");
        std::fs::rename(&tmp, self.dir.join("cloudagent.toml")).expect("rename the config");
    }

    fn daemon_dir(&self) -> PathBuf {
        self.dir.join(".cloudagent/daemon")
    }

    fn workspace(&self, i: usize) -> PathBuf {
        self.dir
            .join(format!(".cloudagent/agents/agent_{i:03}/workspace"))
    }
}

/// The daemon, killed (by its pid) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(home: &Home) -> Killed {
    let bin = home.dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin/");
    std::fs::write(bin.join("claude"), CLAUDE).expect("fake claude");
    std::fs::set_permissions(bin.join("claude"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::write(home.dir.join("key"), "sk_machine_bench\n").expect("key");
    home.write_config(1);
    Killed(
        Command::new(BIN)
            .args(["start", "-f"])
            .arg(home.dir.join("cloudagent.toml"))
            .env_clear()
            .env("HOME", &home.dir)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    )
}

/// `config_generation` from the daemon's status, asked on its socket.
async fn generation(socket: &Path) -> Option<u64> {
    let mut s = UnixStream::connect(socket).await.ok()?;
    s.write_all(b"{\"request_id\":\"b\",\"op\":\"status\",\"args\":{}}\n")
        .await
        .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
    v["result"]["config_generation"].as_u64()
}

/// Edit after edit, each adding one agent: rename → workspace + generation.
async fn edits(home: &Home, conn: &mut Conn, fails: &mut Vec<String>) {
    let socket = home.daemon_dir().join("bridge.sock");
    let Some(mut generation_now) = generation(&socket).await else {
        fails.push("status did not answer on the socket".into());
        return;
    };
    let mut took = Vec::new();
    for i in 1..=EDITS {
        let _ = conn.send(PING.to_string()).await;
        let t = Instant::now();
        home.write_config(i + 1);
        let want = generation_now + 1;
        let done = loop {
            if home.workspace(i).is_dir() && generation(&socket).await == Some(want) {
                break true;
            }
            if t.elapsed() > PER_EDIT {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        if !done {
            fails.push(format!("edit {i}: not applied within {PER_EDIT:?}"));
            return;
        }
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        generation_now = want;
        // Edits a person or a generator makes are not back to back within
        // the debounce: let the watcher settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    sort(&mut took);
    println!(
        "config edit → workspace + status generation   {}  min {:.1} ms  ({EDITS} edits)",
        p50_p90_p99(&took),
        took[0]
    );
}

async fn scrape(socket: &Path) -> Result<usize, String> {
    let mut s = UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
    if reply.starts_with(b"HTTP/1.1 200 OK") && reply.ends_with(b"# EOF\n") {
        Ok(reply.len())
    } else {
        Err("not a complete metrics reply".into())
    }
}

async fn scrapes(home: &Home, fails: &mut Vec<String>) {
    let socket = home.daemon_dir().join("metrics.sock");
    let mut took = Vec::new();
    let mut size = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        match scrape(&socket).await {
            Ok(n) => size = n,
            Err(e) => {
                fails.push(format!("metrics scrape: {e}"));
                return;
            }
        }
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    sort(&mut took);
    println!(
        "metrics scrape over metrics.sock              {}  min {:.3} ms  ({SCRAPES} scrapes, {size} bytes)",
        p50_p90_p99(&took),
        took[0]
    );
}

/// utime + stime of `pid`, in seconds.
#[cfg(target_os = "linux")]
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

#[cfg(target_os = "linux")]
async fn idle(pid: u32, conn: &mut Conn, fails: &mut Vec<String>) {
    // The edits' after-effects end first: tokio's blocking threads (the
    // applies ran there) stay 10 s before they exit.
    tokio::time::sleep(SETTLE).await;
    let _ = conn.send(PING.to_string()).await;
    let Some(before) = cpu_seconds(pid) else {
        fails.push("cannot read the daemon's CPU time".into());
        return;
    };
    let t = Instant::now();
    while t.elapsed() < IDLE {
        tokio::time::sleep(Duration::from_secs(30).min(IDLE.saturating_sub(t.elapsed()))).await;
        let _ = conn.send(PING.to_string()).await;
    }
    let Some(after) = cpu_seconds(pid) else {
        fails.push("cannot read the daemon's CPU time".into());
        return;
    };
    let used = after - before;
    println!(
        "idle CPU over {:.0} s                           {:.3} s = {:.4} % of one core",
        t.elapsed().as_secs_f64(),
        used,
        used / t.elapsed().as_secs_f64() * 100.0
    );
}

#[cfg(not(target_os = "linux"))]
async fn idle(_pid: u32, _conn: &mut Conn, _fails: &mut Vec<String>) {
    println!("idle CPU: not measured (reads /proc, Linux only)");
}

async fn bench() -> Vec<String> {
    let mut fails = Vec::new();
    let dir = tempfile::Builder::new()
        .prefix("ca-operator-")
        .tempdir()
        .expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let home = Home {
        dir: dir.path().to_path_buf(),
        url: format!("http://{}", listener.local_addr().expect("addr")),
    };
    let daemon = start(&home);
    let mut conn = match Conn::accept(&listener, Instant::now() + Duration::from_secs(30)).await {
        Ok(c) => c,
        Err(e) => return vec![format!("handshake: {e}")],
    };
    edits(&home, &mut conn, &mut fails).await;
    scrapes(&home, &mut fails).await;
    if !std::env::args().any(|a| a == "--no-idle") {
        idle(daemon.0.id(), &mut conn, &mut fails).await;
    }
    fails
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fails = runtime.block_on(bench());
    for f in &fails {
        println!("FAIL: {f}");
    }
    if !fails.is_empty() {
        std::process::exit(1);
    }
    println!("PASS: every edit applied, every scrape complete");
}
