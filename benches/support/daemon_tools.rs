//! The tool call round trip through the real bridge and daemon, for the
//! daemon bench: a claude-side client → `mcp-bridge` → the daemon's socket
//! → the backend (the bench answers each `tool_call` at once) → back. The
//! daemon serves a bridge only for an agent with a running wake, with that
//! wake's token (SECURITY.md), so the bridge speaks for the held agent and
//! reads its token file, as claude's bridge would.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::backend::Conn;
use super::floor::Killed;
use super::stats::{p50_p90_p99, sort};
use super::{BIN, PER_ACK, Verdict, deadline, ms};

const CALLS: usize = 1000;

/// What the client saw: round trips of the successful calls, the calls that
/// failed or were never answered, and the first failure's text.
#[derive(Default)]
struct Run {
    ms: Vec<f64>,
    failed: usize,
    first_failure: Option<String>,
}

struct Client {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Client {
    fn write(&mut self, v: Value) -> Result<(), String> {
        writeln!(self.stdin, "{v}").map_err(|e| format!("writing to the bridge: {e}"))
    }

    fn rpc(&mut self, id: u64, method: &str, params: Value) -> Result<Value, String> {
        self.write(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))?;
        loop {
            self.line.clear();
            match self.stdout.read_line(&mut self.line) {
                Ok(0) => return Err("the bridge closed its stdout".into()),
                Err(e) => return Err(format!("reading from the bridge: {e}")),
                Ok(_) => {}
            }
            let v: Value = serde_json::from_str(&self.line)
                .map_err(|e| format!("the bridge wrote a line that is not JSON ({e})"))?;
            if v["id"] == id {
                return Ok(v);
            }
        }
    }
}

fn client(mut c: Client) -> Run {
    let mut run = Run::default();
    let init = json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}});
    let ready = c
        .rpc(0, "initialize", init)
        .and_then(|_| c.write(json!({"jsonrpc":"2.0","method":"notifications/initialized"})));
    if let Err(e) = ready {
        run.failed = CALLS;
        run.first_failure = Some(e);
        return run;
    }
    for i in 1..=CALLS as u64 {
        let t = Instant::now();
        let args = json!({"name":"list_messages","arguments":{"limit":1}});
        match c.rpc(i, "tools/call", args) {
            Ok(r) if r["result"]["isError"] == false => run.ms.push(ms(t.elapsed())),
            Ok(r) => {
                run.failed += 1;
                run.first_failure.get_or_insert(r.to_string());
            }
            Err(e) => {
                run.failed += CALLS - run.ms.len() - run.failed;
                run.first_failure.get_or_insert(e);
                break;
            }
        }
    }
    run
}

/// 1,000 `list_messages` calls, one at a time, within a deadline; the
/// bridge is killed at the deadline, so a stuck call ends the run.
pub async fn round_trip(conn: &mut Conn, home: &Path, v: &mut Verdict) {
    let mut bridge = Killed(
        Command::new(BIN)
            .args(["mcp-bridge", "--agent-id", "agent_hold"])
            .env_clear()
            .env("HOME", home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mcp-bridge"),
    );
    let (Some(stdin), Some(stdout)) = (bridge.0.stdin.take(), bridge.0.stdout.take()) else {
        return v.fail("mcp-bridge: no stdio pipes".into());
    };
    let c = Client {
        stdin,
        stdout: BufReader::new(stdout),
        line: String::new(),
    };
    let client = std::thread::spawn(move || client(c));
    let limit = deadline(CALLS, PER_ACK);
    let until = Instant::now() + limit;
    while !client.is_finished() && Instant::now() < until && conn.closed().is_none() {
        let poll = (Instant::now() + Duration::from_millis(50)).min(until);
        if let Some(f) = conn.recv_until(poll).await
            && f.ty == "tool_call"
        {
            let result = json!({"v":1,"type":"tool_result","id":"r","ts":"t","payload":{"request_id":f.request_id,"ok":true,"data":{"messages":[]}}});
            if let Err(e) = conn.send(result.to_string()).await {
                v.fail(format!("tool calls: sending a tool_result failed: {e}"));
                break;
            }
        }
    }
    // A stuck call holds the client on a read: ending the bridge ends it.
    let stuck = !client.is_finished();
    let _ = bridge.0.kill();
    let mut run = client.join().unwrap_or_default();
    drop(bridge);
    sort(&mut run.ms);
    let stuck_note = if stuck {
        format!("; stopped at the {limit:?} deadline")
    } else {
        String::new()
    };
    println!(
        "tool call round trip  {}  ({CALLS} list_messages: bridge -> daemon -> backend -> daemon -> bridge; {} answered, {} failed{stuck_note})",
        p50_p90_p99(&run.ms),
        run.ms.len(),
        run.failed
    );
    if let Some(first) = &run.first_failure {
        println!("  first failure: {first}");
    }
    v.check(run.ms.len() == CALLS, || {
        format!(
            "tool calls: {} of {CALLS} answered without error",
            run.ms.len()
        )
    });
}
