//! `cargo bench --bench bridge`: the MCP bridge's latencies.
//!
//! (a) spawn → `initialize` answered, over 50 spawns (target p50 < 15 ms);
//! (b) one `tools/call` round trip, claude-side client → bridge → IPC → a
//!     fake daemon answering at once → back, over 1,000 calls on one bridge
//!     (target p50 < 1 ms).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudagent_daemon::bridge::ipc;
use cloudagent_daemon::protocol::ipc::{IpcError, Request};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[path = "support/bridge_client.rs"]
mod bridge_client;
use bridge_client::Bridge;

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
const SPAWNS: usize = 50;
const CALLS: usize = 1_000;
const WARMUP: usize = 50;

const INITIALIZE: &str = r#"{"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{},"elicitation":{}},"clientInfo":{"name":"claude-code","title":"Claude Code","version":"2.1.197","description":"Anthropic's agentic coding tool","websiteUrl":"https://claude.com/claude-code"}},"jsonrpc":"2.0","id":0}"#;
const INITIALIZED: &str = r#"{"method":"notifications/initialized","jsonrpc":"2.0"}"#;

/// An `mcp-bridge` command talking to the fake daemon's socket.
fn bridge_command(home: &std::path::Path, socket: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["mcp-bridge", "--agent-id", "agent_bench"])
        .env("HOME", home)
        .env("CLOUDAGENT_DAEMON_SOCKET_PATH", socket)
        .env("CLOUDAGENT_LOG", "error")
        .env_remove("CLOUDAGENT_DAEMON_PROFILE")
        .env_remove("CLOUDAGENT_DAEMON_TEST_TIMING")
        .stderr(Stdio::inherit());
    cmd
}

struct Immediate;

impl ipc::Handler for Immediate {
    async fn handle(&self, request: Request) -> Result<Value, IpcError> {
        match request {
            Request::ToolCall(c) => {
                Ok(json!({"ok": true, "message_id": "m_1", "args": c.tool_args}))
            }
            other => Err(IpcError::new("UNKNOWN_OP", other.op())),
        }
    }
}

fn stats(name: &str, mut samples: Vec<Duration>, target: Duration) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    let p50 = pct(0.5);
    println!(
        "{name}: n={} min={:.3?} p50={:.3?} p90={:.3?} p99={:.3?} max={:.3?}  (target p50 < {target:?}: {})",
        samples.len(),
        samples[0],
        p50,
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1],
        if p50 < target { "met" } else { "MISSED" }
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let home = tempfile::tempdir().expect("tempdir");
    let socket = home.path().join("bench.sock");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    {
        let _guard = runtime.enter();
        let (server, listener) = ipc::Server::bind(&socket).expect("bind fake daemon");
        runtime.spawn(server.serve(listener, Arc::new(Immediate), cancel.clone()));
    }

    // (a) spawn → initialize answered.
    let mut spawn_times = Vec::with_capacity(SPAWNS);
    for _ in 0..SPAWNS {
        let started = Instant::now();
        let mut bridge = Bridge::spawn(bridge_command(home.path(), &socket));
        bridge.send(INITIALIZE);
        let answer = bridge.read();
        let elapsed = started.elapsed();
        assert!(answer.contains("\"serverInfo\""), "{answer}");
        spawn_times.push(elapsed);
        bridge.close();
    }
    stats(
        "bridge spawn → initialize answered",
        spawn_times,
        Duration::from_millis(15),
    );

    // (b) tools/call round trips on one bridge.
    let mut bridge = Bridge::spawn(bridge_command(home.path(), &socket));
    bridge.send(INITIALIZE);
    bridge.read();
    bridge.send(INITIALIZED);
    let mut round_trips = Vec::with_capacity(CALLS);
    for i in 0..(WARMUP + CALLS) {
        let request = format!(
            r#"{{"method":"tools/call","params":{{"name":"send_message","arguments":{{"target":"user","body":"bench {i}"}}}},"jsonrpc":"2.0","id":{}}}"#,
            i + 1
        );
        let started = Instant::now();
        bridge.send(&request);
        let answer = bridge.read();
        let elapsed = started.elapsed();
        assert!(answer.contains("\"isError\":false"), "{answer}");
        if i >= WARMUP {
            round_trips.push(elapsed);
        }
    }
    bridge.close();
    stats(
        "tools/call round trip (client → bridge → IPC → fake daemon → back)",
        round_trips,
        Duration::from_millis(1),
    );
    cancel.cancel();
}
