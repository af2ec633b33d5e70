//! The MCP bridge as claude would start it: the command and arguments of
//! one agent's `.meta/claude-mcp-config.json`, sent `initialize` over
//! stdio (README "The MCP bridge"). The reply proves the binary runs, the
//! config names it, and the bridge answers; nothing reaches the backend.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::report::Row;
use super::source::{Source, agent_dir};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONFIG: u64 = 1024 * 1024;
const MAX_REPLY: u64 = 1024 * 1024;

#[derive(Deserialize)]
struct McpConfig {
    #[serde(rename = "mcpServers")]
    servers: std::collections::BTreeMap<String, Server>,
}

#[derive(Deserialize)]
struct Server {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
}

/// The first agent (declared first) whose workspace has an MCP config.
pub async fn check(src: &Source, ids: &[String]) -> Row {
    let found = ids.iter().find_map(|id| {
        let path = agent_dir(src, id)?.join(".meta/claude-mcp-config.json");
        path.exists().then_some((id.clone(), path))
    });
    let Some((id, path)) = found else {
        return Row::unknown("bridge", "no agent workspace with an MCP config to try");
    };
    let fix = "`cloudagent-daemon apply` rewrites the MCP config; run its command by hand to see the error";
    let server = match read_config(&path) {
        Ok(s) => s,
        Err(e) => return Row::alert("bridge", format!("{}: {e}", path.display()), fix),
    };
    if !std::path::Path::new(&server.command).is_absolute() {
        return Row::warn(
            "bridge",
            format!(
                "agent {id}: the MCP config starts {:?} by bare name, which may be another install on claude's PATH",
                server.command
            ),
            "`cloudagent-daemon apply` rewrites it to start this binary by absolute path",
        );
    }
    let started = Instant::now();
    match tokio::time::timeout(TIMEOUT, initialize(&server)).await {
        Ok(Ok(name)) => Row::ok(
            "bridge",
            format!(
                "agent {id}: {name} answered initialize in {} ms",
                started.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => Row::alert("bridge", format!("agent {id}: {e}"), fix),
        Err(_) => Row::alert(
            "bridge",
            format!("agent {id}: no answer to initialize within {TIMEOUT:?}"),
            fix,
        ),
    }
}

fn read_config(path: &std::path::Path) -> Result<Server, String> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG).read_to_end(&mut text))
        .map_err(|e| e.to_string())?;
    let cfg: McpConfig = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    cfg.servers
        .into_iter()
        .find(|(k, _)| k == "cloudagent")
        .map(|(_, s)| s)
        .ok_or_else(|| "no `cloudagent` server in mcpServers".to_string())
}

/// Start the bridge, send `initialize`, and return the server's name.
async fn initialize(server: &Server) -> Result<String, String> {
    let mut child = tokio::process::Command::new(&server.command)
        .args(&server.args)
        .envs(&server.env)
        .env(crate::logging::ENV, "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.command))?;
    let request = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "cloudagent-daemon doctor", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    stdin
        .write_all(format!("{request}\n").as_bytes())
        .await
        .map_err(|e| format!("the bridge closed its input: {e}"))?;
    let mut lines = BufReader::new(stdout.take(MAX_REPLY));
    let mut line = String::new();
    loop {
        line.clear();
        let n = lines
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            let status = child.wait().await.ok();
            return Err(format!("the bridge exited without answering ({status:?})"));
        }
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            return Err("the bridge wrote a line that is not JSON-RPC".into());
        };
        if msg.get("id") != Some(&serde_json::json!(0)) {
            continue;
        }
        let _ = child.start_kill();
        return match msg["result"]["serverInfo"]["name"].as_str() {
            Some(name) => Ok(name.to_string()),
            None => Err(format!("initialize failed: {}", msg["error"])),
        };
    }
}
