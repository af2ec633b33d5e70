//! Daemon figures with the release binary against the fake backend:
//! sustained ack throughput (2,000 delivers over 20 agents, zero lost or
//! duplicated), deliver→ack latency, idle RSS, `--help` time, and the tool
//! call round trip bridge → daemon → backend → daemon → bridge.
//!
//! Run: `cargo bench --bench daemon`.

#[path = "../tests/support/fake_backend.rs"]
mod fake_backend;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_backend::{FakeBackend, deliver, frame_type, tool_result_ok};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
const T: Duration = Duration::from_secs(60);
const FAST_CLAUDE: &str = "#!/bin/sh\n[ \"$1\" = --version ] && { echo '2.1.197 (Claude Code)'; exit 0; }\ngrep -q HOLD && exec sleep 3600\necho '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s\"}'\necho '{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"name\":\"mcp__cloudagent__send_message\"}]}}'\necho '{\"type\":\"result\",\"is_error\":false,\"result\":\"ok\"}'\n";

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn write_config(home: &Path, url: &str, agents: usize) {
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    std::fs::write(&claude, FAST_CLAUDE).unwrap();
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(home.join("key"), "sk_machine_bench").unwrap();
    let mut cfg = format!(
        "[daemon]\nclaude_binary = \"{}\"\nmax_concurrent_wakes = 2\n[servers.b]\nurl = \"{url}\"\n[profiles.default]\nserver = \"b\"\napi_key_file = \"{}\"\n",
        claude.display(),
        home.join("key").display()
    );
    for i in 0..agents {
        cfg.push_str(&format!("[profiles.default.agents.agent_{i:02}]\n"));
    }
    std::fs::write(home.join("cloudagent.toml"), cfg).unwrap();
}

fn start_daemon(home: &Path) -> Killed {
    Killed(
        Command::new(BIN)
            .args(["start", "-f"])
            .arg(home.join("cloudagent.toml"))
            .env_clear()
            .env("HOME", home)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", home.join("bin").display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let home = tempfile::tempdir().unwrap();
    let backend = FakeBackend::start().await;
    write_config(home.path(), &backend.url(), 20);
    let daemon = start_daemon(home.path());
    let pid = daemon.0.id();
    let mut conn = backend.next_connection(T).await;
    conn.recv_type("resume", T).await;

    // Idle RSS: connected, nothing to do.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle_rss = rss_kib(pid);

    // Calibration: application ping -> pong, answered inline by the daemon.
    let mut ping = Vec::new();
    for _ in 0..500 {
        let t0 = Instant::now();
        conn.send(fake_backend::ping()).await;
        conn.recv_type("pong", T).await;
        ping.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    ping.sort_by(f64::total_cmp);

    // The ack path alone: messages for an agent whose wake is busy (held
    // by a claude that waits), so no wake starts next to the measurement.
    conn.send(deliver(1_000_000, "agent_hold", "hold", "HOLD"))
        .await;
    let mut queued_lat = Vec::new();
    for i in 0..300 {
        let t0 = Instant::now();
        conn.send(deliver(1_000_001 + i, "agent_hold", &format!("q-{i}"), "x"))
            .await;
        loop {
            let f = conn.recv(T).await;
            if frame_type(&f) == "delivery_ack" && f["payload"]["message_id"] == format!("q-{i}") {
                break;
            }
        }
        queued_lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    queued_lat.sort_by(f64::total_cmp);

    // Latency: one deliver at a time, time to its `received` ack.
    let mut lat = Vec::new();
    for i in 0..500 {
        let agent = format!("agent_{:02}", i % 20);
        let t0 = Instant::now();
        conn.send(deliver(i + 1, &agent, &format!("lat-{i}"), "x"))
            .await;
        loop {
            let f = conn.recv(T).await;
            if frame_type(&f) == "delivery_ack"
                && f["payload"]["status"] == "received"
                && f["payload"]["message_id"] == format!("lat-{i}")
            {
                break;
            }
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);

    // The same, for redeliveries (acked again, no wake): the ack path alone.
    let mut dup_lat = Vec::new();
    for i in 0..500 {
        let agent = format!("agent_{:02}", i % 20);
        let t0 = Instant::now();
        conn.send(deliver(i + 1, &agent, &format!("lat-{i}"), "x"))
            .await;
        loop {
            let f = conn.recv(T).await;
            if frame_type(&f) == "delivery_ack" && f["payload"]["message_id"] == format!("lat-{i}")
            {
                break;
            }
        }
        dup_lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    dup_lat.sort_by(f64::total_cmp);

    // Throughput: 2,000 delivers over 20 agents, pipelined.
    let n = 2000;
    let base = 10_000;
    let t0 = Instant::now();
    let mut received: HashMap<String, usize> = HashMap::new();
    let sender = async {
        for i in 0..n {
            let agent = format!("agent_{:02}", i % 20);
            conn.send(deliver(base + i as i64, &agent, &format!("tp-{i}"), "x"))
                .await;
        }
    };
    sender.await;
    while received.len() < n {
        let f = conn.recv(T).await;
        if frame_type(&f) == "delivery_ack" && f["payload"]["status"] == "received" {
            let id = f["payload"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if id.starts_with("tp-") {
                *received.entry(id).or_default() += 1;
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let dup = received.values().filter(|c| **c > 1).count();

    // Wait until every wake has run (each must run exactly once).
    let total = 500 + n;
    let mut idle = backend
        .frames_of_type("agent_status")
        .iter()
        .filter(|f| f["payload"]["status"] != "running")
        .count();
    while idle < total {
        let f = conn.recv(Duration::from_secs(120)).await;
        if frame_type(&f) == "agent_status" && f["payload"]["status"] != "running" {
            idle += 1;
        }
    }
    let busy_rss = rss_kib(pid);

    // Tool call round trip through the real bridge and daemon.
    let mut bridge = Command::new(BIN)
        .args(["mcp-bridge", "--agent-id", "agent_00"])
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut bin = bridge.stdin.take().unwrap();
    let mut bout = BufReader::new(bridge.stdout.take().unwrap());
    let _bridge = Killed(bridge);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Value)>();
    let io = std::thread::spawn(move || {
        let mut line = String::new();
        let mut rpc = |id: u64,
                       method: &str,
                       params: Value,
                       bin: &mut std::process::ChildStdin,
                       bout: &mut BufReader<std::process::ChildStdout>| {
            writeln!(
                bin,
                "{}",
                json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
            )
            .unwrap();
            loop {
                line.clear();
                bout.read_line(&mut line).unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
        };
        rpc(
            0,
            "initialize",
            json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}),
            &mut bin,
            &mut bout,
        );
        writeln!(
            bin,
            "{}",
            json!({"jsonrpc":"2.0","method":"notifications/initialized"})
        )
        .unwrap();
        let mut times = Vec::new();
        for i in 1..=1000u64 {
            let t = Instant::now();
            let r = rpc(
                i,
                "tools/call",
                json!({"name":"list_messages","arguments":{"limit":1}}),
                &mut bin,
                &mut bout,
            );
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r["result"]["isError"], false, "{r}");
            let _ = tx.send((i, r));
        }
        times
    });
    let mut answered = 0;
    while answered < 1000 {
        let f = conn.recv(T).await;
        if frame_type(&f) == "tool_call" {
            let rid = f["payload"]["request_id"].as_str().unwrap().to_string();
            conn.send(tool_result_ok(&rid, json!({"messages": []})))
                .await;
            answered += 1;
        }
        while rx.try_recv().is_ok() {}
    }
    let mut rt = io.join().unwrap();
    rt.sort_by(f64::total_cmp);

    // --help wall time.
    let mut help = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let ok = Command::new(BIN)
            .arg("--help")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        help.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    help.sort_by(f64::total_cmp);

    println!(
        "ack throughput        {:>8.0} acks/s  ({n} delivers over 20 agents in {secs:.3} s; lost {}, duplicated {dup})",
        n as f64 / secs,
        n - received.len()
    );
    println!(
        "deliver->ack latency  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  (500 sequential)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99)
    );
    println!(
        "  ack path alone (wake queued behind a busy one) p50 {:.3} ms  p90 {:.3} ms  (300 sequential)",
        percentile(&queued_lat, 0.5),
        percentile(&queued_lat, 0.9)
    );
    println!(
        "  ping->pong (transport only) p50 {:.3} ms",
        percentile(&ping, 0.5)
    );
    println!(
        "  redelivery (no wake) p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  (500 sequential)",
        percentile(&dup_lat, 0.5),
        percentile(&dup_lat, 0.9),
        percentile(&dup_lat, 0.99)
    );
    println!("wakes run             {idle} final statuses for {total} messages");
    println!(
        "RSS                   idle {:.1} MiB, after {total} wakes {:.1} MiB",
        idle_rss as f64 / 1024.0,
        busy_rss as f64 / 1024.0
    );
    println!(
        "tool call round trip  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  (1,000 list_messages: bridge -> daemon -> backend -> daemon -> bridge)",
        percentile(&rt, 0.5),
        percentile(&rt, 0.9),
        percentile(&rt, 0.99)
    );
    println!(
        "--help                min {:.2} ms  median {:.2} ms  (50 runs)",
        help[0],
        percentile(&help, 0.5)
    );
    drop(daemon);
}
