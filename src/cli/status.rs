//! `status` and `stop` (PROTOCOL §7.2).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use super::profile::ProfileArg;
use crate::bridge::ipc;
use crate::paths::{Home, ProfileName};
use crate::runtime::lock::{alive, read_pid};
use crate::runtime::settings::SOCKET_PATH_ENV;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Seconds to wait for a clean exit before sending SIGKILL.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub timeout: f64,
}

fn socket_for(home: &Home, profile: &ProfileName) -> std::path::PathBuf {
    std::env::var_os(SOCKET_PATH_ENV)
        .filter(|v| !v.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| home.profile(profile).socket())
}

/// The profile (exit 2 when invalid) and the home directory (exit 1).
fn profile_and_home(arg: &ProfileArg) -> Result<(ProfileName, Home), u8> {
    let profile = arg.resolve()?;
    let home = Home::from_env().map_err(|e| {
        eprintln!("Error: {e}");
        1
    })?;
    Ok((profile, home))
}

pub fn status(args: &StatusArgs) -> u8 {
    let (profile, home) = match profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let paths = home.profile(&profile);
    let (pid, problem) = match read_pid(&paths.pid_file()) {
        Ok(None) => (
            None,
            format!("● daemon not running for profile '{profile}' (no PID file)"),
        ),
        Err(_) => (
            None,
            format!("● daemon stale PID file (corrupt) profile='{profile}'"),
        ),
        Ok(Some(pid)) if !alive(pid) => (
            Some(pid),
            format!("● daemon stale PID file (pid={pid} not alive) profile='{profile}'"),
        ),
        Ok(Some(pid)) => (Some(pid), String::new()),
    };
    if !problem.is_empty() {
        if args.json {
            println!(
                "{}",
                json!({"running": false, "profile": profile.as_str(), "pid": pid, "message": problem.trim_start_matches("● ")})
            );
        } else {
            println!("{problem}");
        }
        return 1;
    }
    let pid = pid.unwrap_or_default();
    let live = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(ipc::call(
            &socket_for(&home, &profile),
            "status",
            json!({}),
            Duration::from_secs(3),
        )),
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    match live {
        Ok(mut v) => {
            if args.json {
                v["running"] = Value::Bool(true);
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render(&v));
            }
            0
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    json!({"running": true, "profile": profile.as_str(), "pid": pid, "error": e.to_string()})
                );
            } else {
                println!(
                    "● daemon running (pid={pid}, profile='{profile}') but it does not answer on its socket: {e}"
                );
            }
            0
        }
    }
}

fn render(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("—").to_string();
    let mut out = format!("● daemon running (pid={})\n", v["pid"]);
    out.push_str(&format!("  profile: {}\n", s("profile")));
    out.push_str(&format!("  server: {}\n", s("server")));
    out.push_str(&format!("  host_id: {}\n", s("host_id")));
    let conn = match v.get("connected_since").and_then(Value::as_str) {
        Some(since) => format!("{} since {since}", s("connection")),
        None => s("connection"),
    };
    out.push_str(&format!("  connection: {conn}\n"));
    if let Some(e) = v.get("last_error").and_then(Value::as_str) {
        out.push_str(&format!("  last error: {e}\n"));
    }
    out.push_str(&format!("  last_seq: {}\n", v["last_seq"]));
    let agents: Vec<&str> = v["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str(&format!(
        "  agents: {}\n",
        if agents.is_empty() {
            "none".to_string()
        } else {
            format!("{} ({})", agents.join(", "), agents.len())
        }
    ));
    let running = v["running"].as_object().cloned().unwrap_or_default();
    if running.is_empty() {
        out.push_str("  running wakes: none\n");
    } else {
        out.push_str("  running wakes:\n");
        for (agent, w) in running {
            out.push_str(&format!(
                "    {agent}: message {} since {}{}\n",
                w["message_id"],
                w["started_at"].as_str().unwrap_or("?"),
                w["pid"]
                    .as_u64()
                    .map(|p| format!(" (claude pid {p})"))
                    .unwrap_or_default()
            ));
        }
    }
    out.push_str(&format!(
        "  queued: {}  pending: {}  outbox: {}\n",
        v["queued"], v["pending"], v["outbox"]
    ));
    if let Some(c) = v.get("config_file").and_then(Value::as_str) {
        out.push_str(&format!("  config: {c}\n"));
    }
    if let Some(e) = v.get("config_error").and_then(Value::as_str) {
        out.push_str(&format!(
            "  config error (the last good configuration stays in force): {e}\n"
        ));
    }
    out
}

pub fn stop(args: &StopArgs) -> u8 {
    let (profile, home) = match profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let pid_file = home.profile(&profile).pid_file();
    let pid = match read_pid(&pid_file) {
        Ok(None) => {
            println!("daemon not running for profile '{profile}' (no PID file)");
            return 0;
        }
        Err(_) => {
            println!("stale PID file — removing");
            let _ = std::fs::remove_file(&pid_file);
            return 0;
        }
        Ok(Some(pid)) => pid,
    };
    if !alive(pid) {
        println!("daemon already stopped (pid={pid} not alive); cleaning up PID file");
        let _ = std::fs::remove_file(&pid_file);
        return 0;
    }
    println!("sending SIGTERM to pid={pid}...");
    let Some(target) = rustix::process::Pid::from_raw(pid as i32) else {
        println!("process already gone");
        return 0;
    };
    if rustix::process::kill_process(target, rustix::process::Signal::TERM).is_err() {
        println!("process already gone");
        return 0;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout.max(0.0));
    while Instant::now() < deadline {
        if !alive(pid) {
            println!("✓ daemon stopped cleanly");
            return 0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "daemon did not exit within {}s; sending SIGKILL",
        args.timeout
    );
    let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
    1
}
