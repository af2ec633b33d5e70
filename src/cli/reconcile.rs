//! `plan` and `apply`.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use crate::config::{self, Desired};
use crate::paths::Home;
use crate::reconcile::{self, Context, Plan, apply::apply as run_apply, lock, render};
use crate::service::{Platform, manager::CliManager};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Print the plan as JSON (progress and errors still go to stderr).
    #[arg(long)]
    pub json: bool,
    /// How long to wait for another apply (or a daemon reconciling its
    /// config) to finish before giving up, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = lock::DEFAULT_TIMEOUT.as_secs())]
    pub lock_timeout: u64,
}

struct Loaded {
    desired: Desired,
    ctx: Context,
}

fn load(config_flag: Option<&Path>) -> Result<Loaded, String> {
    let home = Home::from_env()?;
    let path = config::resolve_path(config_flag, &home);
    let desired = config::load(&path, &home).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the path of this program (needed for the MCP config and service units): {e}"))?;
    let platform = Platform::detect()?;
    Ok(Loaded {
        desired,
        ctx: Context {
            home,
            exe,
            platform,
        },
    })
}

fn fail(msg: &str) -> u8 {
    if msg.starts_with("error:") {
        eprintln!("{msg}");
    } else {
        eprintln!("error: {msg}");
    }
    1
}

/// Compute the plan and print it (text or JSON).
fn show(loaded: &Loaded, json: bool) -> Plan {
    let (_, plan) = reconcile::plan_for(&loaded.desired, &loaded.ctx);
    if json {
        print!("{}", render::json(&plan, &loaded.desired.warnings));
    } else {
        print!(
            "{}",
            render::text(&plan, &loaded.desired.warnings, &loaded.ctx.home.home)
        );
    }
    plan
}

pub fn plan(config_flag: Option<&Path>, args: &PlanArgs) -> u8 {
    let loaded = match load(config_flag) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let plan = show(&loaded, args.json);
    if !plan.errors.is_empty() {
        1
    } else if args.detailed_exitcode && plan.has_changes() {
        2
    } else {
        0
    }
}

pub fn apply(config_flag: Option<&Path>, args: &ApplyArgs) -> u8 {
    let loaded = match load(config_flag) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    // Held from observation to the inventory write.
    let root = loaded.ctx.home.cloudagent_root();
    let _lock = match lock::acquire(&root, Duration::from_secs(args.lock_timeout), |pid| {
        let who = lock::holder_note(pid);
        eprintln!(
            "Waiting for another apply{who} to finish (it holds {})...",
            lock::lock_path(&root).display()
        );
    }) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let plan = show(&loaded, args.json);
    let manager = CliManager {
        platform: loaded.ctx.platform,
    };
    let report = run_apply(&plan, &manager, chrono::Utc::now());
    let home = &loaded.ctx.home.home;
    let shown = |s: &str| s.replace(&format!("{}/", home.display()), "~/");
    if plan.has_changes() {
        let mut log: Box<dyn std::io::Write> = if args.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        for line in &report.done {
            let _ = writeln!(log, "{}", shown(line));
        }
        let _ = writeln!(log, "\n{}", report.summary());
    }
    for e in &report.errors {
        eprintln!("error: {}", shown(e));
    }
    if report.errors.is_empty() && plan.errors.is_empty() {
        0
    } else {
        1
    }
}
