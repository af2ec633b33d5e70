//! Daemon figures with the release binary against a lean WebSocket backend
//! written here (no recording, minimal parsing, so the harness adds as
//! little as possible to what is measured): sustained ack throughput (2,000
//! delivers over 20 agents, zero lost or duplicated), deliver→ack latency,
//! idle RSS, `--help` time, and the tool call round trip bridge → daemon →
//! backend → daemon → bridge.
//!
//! This machine's floor for a durable ack is measured in the same run and
//! printed next to it: a plain TCP round trip between two processes plus one
//! 200-byte overwrite and fdatasync in the daemon's directory. The ratio of
//! the daemon's p50 to that floor moves far less with the machine's load
//! than the absolute figures.
//!
//! Run: `cargo bench --bench daemon`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/bridge_client.rs"]
mod bridge_client;
use bridge_client::Bridge;

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
const FAST_CLAUDE: &str = "#!/bin/sh\n[ \"$1\" = --version ] && { echo '2.1.197 (Claude Code)'; exit 0; }\ngrep -q HOLD && exec sleep 3600\necho '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s\"}'\necho '{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"name\":\"mcp__cloudagent__send_message\"}]}}'\necho '{\"type\":\"result\",\"is_error\":false,\"result\":\"ok\"}'\n";

/// Set in the child that `tcp_round_trip_p50` starts to echo.
const ECHO_ENV: &str = "CLOUDAGENT_BENCH_ECHO";

/// The echo child: accept one connection on 127.0.0.1:0 (port on stdout),
/// echo until EOF.
fn echo_server() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (mut s, _) = listener.accept().unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => s.write_all(&buf[..k]).unwrap(),
        }
    }
}

/// p50 of a plain TCP round trip (150 bytes each way, TCP_NODELAY) with an
/// echo in another process, as the backend and the daemon are: wake-ups,
/// context switches and loopback, no WebSocket, no JSON.
fn tcp_round_trip_p50(n: usize) -> f64 {
    use std::io::Read;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ECHO_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let child = Killed(child);
    let mut c =
        std::net::TcpStream::connect(("127.0.0.1", port.trim().parse::<u16>().unwrap())).unwrap();
    c.set_nodelay(true).unwrap();
    let msg = [b'x'; 150];
    let mut buf = [0u8; 4096];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.write_all(&msg).unwrap();
        let mut got = 0;
        while got < msg.len() {
            got += c.read(&mut buf).unwrap();
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(c);
    drop(child);
    times.sort_by(f64::total_cmp);
    percentile(&times, 0.5)
}

/// p50 of a 200-byte overwrite of preallocated zeros plus fdatasync, in
/// `dir` (the same filesystem as the daemon's journal).
fn fdatasync_p50(dir: &Path, n: usize) -> f64 {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fdatasync-floor");
    let f = std::fs::File::create(&path).unwrap();
    f.write_all_at(&vec![0u8; 1 << 20], 0).unwrap();
    f.sync_all().unwrap();
    let rec = [b'r'; 200];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f.write_all_at(&rec, (i * rec.len()) as u64).unwrap();
        f.sync_data().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    times.sort_by(f64::total_cmp);
    percentile(&times, 0.5)
}

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

fn deliver(seq: i64, agent: &str, id: &str, body: &str) -> String {
    json!({"v":1,"type":"deliver","id":"frm_b","ts":"t","seq":seq,
           "payload":{"agent_id":agent,"session_id":"sess_1","message_id":id,"body":body,"from":"user"}})
    .to_string()
}

/// A received frame, reduced to what the measurements need.
struct Frame {
    ty: String,
    status: String,
    message_id: String,
    request_id: String,
}

fn reduce(text: &str) -> Frame {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let s = |p: &Value| p.as_str().unwrap_or_default().to_string();
    Frame {
        ty: s(&v["type"]),
        status: s(&v["payload"]["status"]),
        message_id: s(&v["payload"]["message_id"]),
        request_id: s(&v["payload"]["request_id"]),
    }
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    Message,
>;

async fn next(frames: &mut mpsc::UnboundedReceiver<Frame>) -> Frame {
    frames
        .recv()
        .await
        .expect("the daemon closed the connection")
}

/// Send a deliver and time until its `received` ack.
async fn ack_latency(
    tx: &mut Sink,
    frames: &mut mpsc::UnboundedReceiver<Frame>,
    text: String,
    id: &str,
) -> f64 {
    let t0 = Instant::now();
    tx.send(Message::text(text)).await.unwrap();
    loop {
        let f = next(frames).await;
        if f.ty == "delivery_ack" && f.message_id == id && f.status == "received" {
            return t0.elapsed().as_secs_f64() * 1000.0;
        }
    }
}

/// `n` sequential deliver->ack latencies; `make(i)` gives seq, agent, id.
async fn series(
    tx: &mut Sink,
    frames: &mut mpsc::UnboundedReceiver<Frame>,
    n: i64,
    make: impl Fn(i64) -> (i64, String, String),
) -> Vec<f64> {
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (seq, agent, id) = make(i);
        out.push(ack_latency(tx, frames, deliver(seq, &agent, &id, "x"), &id).await);
    }
    out
}

fn write_config(home: &Path, url: &str, agents: usize) {
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    std::fs::write(&claude, FAST_CLAUDE).unwrap();
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(home.join("key"), "sk_machine_bench").unwrap();
    let mut cfg = format!(
        "[daemon]\nclaude_binary = \"{}\"\n# One slot is taken by the held wake of the ack-path measurement.\nmax_concurrent_wakes = 2\n[servers.b]\nurl = \"{url}\"\n[profiles.default]\nserver = \"b\"\napi_key_file = \"{}\"\n",
        claude.display(),
        home.join("key").display()
    );
    for i in 0..agents {
        cfg.push_str(&format!("[profiles.default.agents.agent_{i:02}]\n"));
    }
    std::fs::write(home.join("cloudagent.toml"), cfg).unwrap();
}

fn main() {
    if std::env::var_os(ECHO_ENV).is_some() {
        return echo_server();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let home = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    write_config(home.path(), &url, 20);
    let daemon = Killed(
        Command::new(BIN)
            .args(["start", "-f"])
            .arg(home.path().join("cloudagent.toml"))
            .env_clear()
            .env("HOME", home.path())
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", home.path().join("bin").display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    );
    let pid = daemon.0.id();
    let (tcp, _) = listener.accept().await.unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(
        json!({"v":1,"type":"hello","id":"frm_h","ts":"t","payload":{"host_id":"host_bench"}})
            .to_string(),
    ))
    .await
    .unwrap();
    // One reader task; frames reach the measuring code through a channel.
    let (ftx, mut frames) = mpsc::unbounded_channel::<Frame>();
    // Final statuses, counted wherever they arrive.
    let finals = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = finals.clone();
    tokio::spawn(async move {
        while let Some(m) = rx.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    let f = reduce(t.as_str());
                    if f.ty == "agent_status" && f.status != "running" {
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let _ = ftx.send(f);
                }
                Ok(_) => {}
                // The daemon is killed at the end.
                Err(_) => break,
            }
        }
    });
    while next(&mut frames).await.ty != "resume" {}

    // Idle RSS: connected, nothing to do.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle_rss = rss_kib(pid);

    // Transport alone: application ping -> pong.
    let mut ping = Vec::new();
    for _ in 0..500 {
        let t0 = Instant::now();
        tx.send(Message::text(
            r#"{"v":1,"type":"ping","id":"p","ts":"t","payload":{}}"#,
        ))
        .await
        .unwrap();
        while next(&mut frames).await.ty != "pong" {}
        ping.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let floor_tcp = tcp_round_trip_p50(500);
    let floor_sync = fdatasync_p50(home.path(), 500);
    // The ack path alone: messages for an agent whose claude is busy, so no
    // wake starts next to the measurement.
    tx.send(Message::text(deliver(
        1_000_000,
        "agent_hold",
        "hold",
        "HOLD",
    )))
    .await
    .unwrap();
    let mut queued = series(&mut tx, &mut frames, 300, |i| {
        (1_000_001 + i, "agent_hold".into(), format!("q-{i}"))
    })
    .await;
    // New messages, each starting a wake (one at a time, back to back).
    let mut lat = series(&mut tx, &mut frames, 500, |i| {
        (i + 1, format!("agent_{:02}", i % 20), format!("lat-{i}"))
    })
    .await;
    // Redeliveries of those (acked again, no wake).
    let mut dup = series(&mut tx, &mut frames, 500, |i| {
        (i + 1, format!("agent_{:02}", i % 20), format!("lat-{i}"))
    })
    .await;
    for v in [&mut ping, &mut queued, &mut lat, &mut dup] {
        v.sort_by(f64::total_cmp);
    }

    // Throughput: 2,000 delivers over 20 agents, pipelined.
    let n = 2000;
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            tx.send(Message::text(deliver(
                10_000 + i as i64,
                &format!("agent_{:02}", i % 20),
                &format!("tp-{i}"),
                "x",
            )))
            .await
            .unwrap();
        }
        tx
    });
    let mut received: HashMap<String, usize> = HashMap::new();
    while received.len() < n {
        let f = next(&mut frames).await;
        if f.ty == "delivery_ack" && f.status == "received" && f.message_id.starts_with("tp-") {
            *received.entry(f.message_id).or_default() += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut tx = sender.await.unwrap();
    let dup_acks = received.values().filter(|c| **c > 1).count();
    // Every wake runs, exactly once.
    let total = 500 + n;
    while finals.load(std::sync::atomic::Ordering::Relaxed) < total {
        // A real backend pings every 30 s; so do we, or the daemon's
        // watchdog drops a connection that is silent for 40 s.
        if tokio::time::timeout(Duration::from_secs(5), next(&mut frames))
            .await
            .is_err()
        {
            tx.send(Message::text(
                r#"{"v":1,"type":"ping","id":"p","ts":"t","payload":{}}"#,
            ))
            .await
            .unwrap();
        }
    }
    let finals = finals.load(std::sync::atomic::Ordering::Relaxed);
    let busy_rss = rss_kib(pid);

    // Tool call round trip through the real bridge and daemon.
    let mut cmd = Command::new(BIN);
    cmd.args(["mcp-bridge", "--agent-id", "agent_00"])
        .env_clear()
        .env("HOME", home.path())
        .stderr(Stdio::null());
    let mut bridge = Bridge::spawn(cmd);
    let client = std::thread::spawn(move || {
        let mut rpc = |id: u64, method: &str, params: Value| {
            bridge.send(
                &json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string(),
            );
            loop {
                let v: Value = serde_json::from_str(bridge.read()).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
        };
        rpc(
            0,
            "initialize",
            json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}),
        );
        let mut times = Vec::new();
        for i in 1..=1000u64 {
            let t = Instant::now();
            let r = rpc(
                i,
                "tools/call",
                json!({"name":"list_messages","arguments":{"limit":1}}),
            );
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r["result"]["isError"], false, "{r}");
        }
        bridge.close();
        times
    });
    let mut answered = 0;
    while answered < 1000 {
        let f = next(&mut frames).await;
        if f.ty == "tool_call" {
            let result = json!({"v":1,"type":"tool_result","id":"r","ts":"t","payload":{"request_id":f.request_id,"ok":true,"data":{"messages":[]}}});
            tx.send(Message::text(result.to_string())).await.unwrap();
            answered += 1;
        }
    }
    let mut rt = client.join().unwrap();
    rt.sort_by(f64::total_cmp);

    let mut help = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        assert!(
            Command::new(BIN)
                .arg("--help")
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success()
        );
        help.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    help.sort_by(f64::total_cmp);

    let p = |v: &[f64]| {
        format!(
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99)
        )
    };
    println!(
        "ack throughput        {:>8.0} acks/s  ({n} delivers over 20 agents in {secs:.3} s; lost {}, duplicated {dup_acks})",
        n as f64 / secs,
        n - received.len()
    );
    println!(
        "deliver->ack latency (500 sequential, back to back; includes the fdatasync before each ack)"
    );
    println!("  new message, its wake starting   {}", p(&lat));
    println!("  new message, wake queued          {}", p(&queued));
    let floor = floor_tcp + floor_sync;
    println!(
        "  floor now: TCP round trip p50 {floor_tcp:.3} + fdatasync p50 {floor_sync:.3} = {floor:.3} ms; p50 / floor: wake starting {:.2}, wake queued {:.2}",
        percentile(&lat, 0.5) / floor,
        percentile(&queued, 0.5) / floor
    );
    println!("  redelivery (no new record)        {}", p(&dup));
    println!("  ping->pong (transport only)       {}", p(&ping));
    println!("wakes run             {finals} final statuses for {total} messages");
    println!(
        "RSS                   idle {:.1} MiB, after {total} wakes {:.1} MiB",
        idle_rss as f64 / 1024.0,
        busy_rss as f64 / 1024.0
    );
    println!(
        "tool call round trip  {}  (1,000 list_messages: bridge -> daemon -> backend -> daemon -> bridge)",
        p(&rt)
    );
    println!(
        "--help                min {:.2} ms  median {:.2} ms  (50 runs)",
        help[0],
        percentile(&help, 0.5)
    );
    drop(daemon);
}
