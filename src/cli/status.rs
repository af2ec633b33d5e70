//! `status` and `stop` (PROTOCOL §7.2).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use super::profile::ProfileArg;
use crate::bridge::ipc;
use crate::paths::{Home, ProfileName};
use crate::protocol::env::SOCKET_PATH as SOCKET_PATH_ENV;
use crate::protocol::ipc::Request;
use crate::runtime::lock::{alive, read_pid};
use crate::runtime::shared::Connection;
use crate::runtime::status::StatusReport;

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
            &Request::Status,
            Duration::from_secs(3),
        )),
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let live = live.and_then(|v| {
        serde_json::from_value::<StatusReport>(v)
            .map_err(|e| ipc::ClientError::Protocol(e.to_string()))
    });
    match live {
        Ok(report) => {
            if args.json {
                let mut v = json!({"running": true});
                if let (Value::Object(out), Ok(Value::Object(r))) =
                    (&mut v, serde_json::to_value(&report))
                {
                    out.extend(r);
                }
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render(&report));
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

fn render(r: &StatusReport) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let mut out = format!("● daemon running (pid={})\n", r.pid);
    out.push_str(&format!("  profile: {}\n", r.profile));
    out.push_str(&format!("  server: {}\n", r.server));
    out.push_str(&format!("  host_id: {}\n", or_dash(&r.host_id)));
    let conn = match &r.connection {
        Connection::Connected { since } => format!("connected since {since}"),
        Connection::Disconnected { since } => format!("disconnected since {since}"),
        other => other.label().to_string(),
    };
    out.push_str(&format!("  connection: {conn}\n"));
    if let Some(error) = &r.last_error {
        out.push_str(&format!("  last error: {error}\n"));
    }
    out.push_str(&format!("  last_seq: {}\n", r.last_seq));
    out.push_str(&format!(
        "  agents: {}\n",
        if r.agents.is_empty() {
            "none".to_string()
        } else {
            format!("{} ({})", r.agents.join(", "), r.agents.len())
        }
    ));
    if r.running_wakes.is_empty() {
        out.push_str("  running wakes: none\n");
    } else {
        out.push_str("  running wakes:\n");
        for (agent, w) in &r.running_wakes {
            out.push_str(&format!(
                "    {agent}: message {} since {}{}\n",
                w.message_id,
                w.started_at,
                w.pid
                    .map(|p| format!(" (claude pid {p})"))
                    .unwrap_or_default()
            ));
        }
    }
    out.push_str(&format!(
        "  queued: {}  pending: {}  outbox: {}\n",
        r.queued, r.pending, r.outbox
    ));
    if let Some(c) = &r.config_file {
        out.push_str(&format!("  config: {}\n", c.display()));
    }
    if let Some(e) = &r.config_error {
        out.push_str(&format!(
            "  config error (the last good configuration stays in force): {e}\n"
        ));
    }
    for text in r.refused.values() {
        out.push_str(&format!("  refused: {text}\n"));
    }
    crate::redact::secrets(&out).into_owned()
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
