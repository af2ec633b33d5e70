//! `plan` and `apply` wall time with the release binary on generated configs
//! (N agents across 3 profiles), min/median over several runs:
//!
//! - plan, fresh home: everything to add (N agents + 3 profiles);
//! - apply, fresh home: all of it;
//! - plan, no changes: right after an apply;
//! - plan, one agent added to an applied config;
//! - apply of that one change.
//!
//! Each run's output is checked against what the row claims (its summary
//! line: `Plan: 1 to add, …`, `No changes.`, `Apply complete: …`); a run that
//! did something else is reported on a FAIL line and the bench exits 1, so
//! a figure never times the wrong work (README.md, "Benchmarks").
//!
//! Run: `cargo bench --bench reconcile` (optionally `-- 1000 2000`).

#[path = "support/stats.rs"]
mod stats;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use stats::{min_med, percentile, sort};

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
const PROFILES: [&str; 3] = ["default", "fr", "staging"];
/// Fresh homes per size (each: one full apply, timed).
const HOMES: usize = 3;
/// One-agent additions per home (each: plan, apply, plan again, timed).
const ADDITIONS: usize = 3;
/// Plans of the fresh home, per home.
const FRESH_PLANS: usize = 2;

fn header() -> String {
    let mut s = String::from("[servers.prod]\nurl = \"https://api.cloudagent.chat\"\n");
    for p in PROFILES {
        s.push_str(&format!(
            "\n[profiles.{p}]\nserver = \"prod\"\napi_key_file = \"~/.config/cloudagent/{p}.key\"\n"
        ));
    }
    s
}

fn agent(i: usize) -> String {
    let p = PROFILES[i % PROFILES.len()];
    let mut s = format!(
        "\n[profiles.{p}.agents.agent_{i:05}]\nname = \"Agent {i}\"\nappend_system_prompt = \"Be brief.\"\n"
    );
    if i.is_multiple_of(10) {
        s.push_str(&format!("workdir = \"~/code/project-{i}\"\n"));
    }
    s
}

fn config(agents: usize) -> String {
    (0..agents).fold(header(), |s, i| s + &agent(i))
}

/// Runs `cmd` on `cfg`; its wall time in ms and whether its last line
/// starts with `expect`. A failure is described in `fails`.
fn run(home: &Path, cfg: &Path, cmd: &str, expect: &str, fails: &mut Vec<String>) -> f64 {
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg(cmd)
        .arg("-f")
        .arg(cfg)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .output();
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    match out {
        Err(e) => fails.push(format!("{cmd}: could not run {BIN}: {e}")),
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            if !out.status.success() || !last.starts_with(expect) {
                fails.push(format!(
                    "{cmd}: expected {expect:?}, got {last:?} ({}; stderr: {})",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    elapsed
}

/// Times for one size, in ms.
#[derive(Default)]
struct Rows {
    plan_fresh: Vec<f64>,
    apply_fresh: Vec<f64>,
    plan_noop: Vec<f64>,
    plan_one: Vec<f64>,
    apply_one: Vec<f64>,
}

fn measure(n: usize, fails: &mut Vec<String>) -> Rows {
    let mut r = Rows::default();
    let all = format!(
        "Plan: {} to add, 0 to change, 0 to remove.",
        n + PROFILES.len()
    );
    let all_applied = format!(
        "Apply complete: {} added, 0 changed, 0 removed.",
        n + PROFILES.len()
    );
    for _ in 0..HOMES {
        let home = tempfile::tempdir().expect("tempdir");
        let h = home.path();
        let cfg = h.join("cloudagent.toml");
        let mut text = config(n);
        std::fs::write(&cfg, &text).expect("write config");
        for _ in 0..FRESH_PLANS {
            r.plan_fresh.push(run(h, &cfg, "plan", &all, fails));
        }
        r.apply_fresh
            .push(run(h, &cfg, "apply", &all_applied, fails));
        r.plan_noop.push(run(h, &cfg, "plan", "No changes.", fails));
        // Each addition is one more agent on top of the last, so that
        // every apply has exactly one change (removing one would archive).
        for k in 0..ADDITIONS {
            text.push_str(&agent(n + k));
            std::fs::write(&cfg, &text).expect("write config");
            let one = "Plan: 1 to add, 0 to change, 0 to remove.";
            r.plan_one.push(run(h, &cfg, "plan", one, fails));
            let applied = "Apply complete: 1 added, 0 changed, 0 removed.";
            r.apply_one.push(run(h, &cfg, "apply", applied, fails));
            r.plan_noop.push(run(h, &cfg, "plan", "No changes.", fails));
        }
    }
    r
}

fn sizes() -> Vec<usize> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if args.is_empty() {
        vec![250, 500, 1000]
    } else {
        args
    }
}

fn main() {
    let sizes = sizes();
    println!(
        "ms, min / median ({HOMES} fresh homes per size; plan fresh x{}, apply fresh x{HOMES}, plan no changes x{}, one agent added x{})",
        HOMES * FRESH_PLANS,
        HOMES * (1 + ADDITIONS),
        HOMES * ADDITIONS
    );
    println!(
        "{:>7} {:>17} {:>17} {:>17} {:>17} {:>17}",
        "agents", "plan fresh", "apply fresh", "plan no changes", "plan +1 agent", "apply +1 agent"
    );
    let mut fails = Vec::new();
    let mut noop_medians = Vec::new();
    for &n in &sizes {
        let mut r = measure(n, &mut fails);
        let mut cells = Vec::new();
        for v in [
            &mut r.plan_fresh,
            &mut r.apply_fresh,
            &mut r.plan_noop,
            &mut r.plan_one,
            &mut r.apply_one,
        ] {
            sort(v);
            cells.push(format!("{:>17}", min_med(v)));
        }
        noop_medians.push(percentile(&r.plan_noop, 0.5));
        println!("{n:>7} {}", cells.join(" "));
    }
    if sizes.len() > 1 {
        let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
        println!(
            "plan (no changes) median grows {:.2}x for {:.1}x the agents",
            noop_medians[noop_medians.len() - 1] / noop_medians[0],
            last as f64 / first as f64
        );
    }
    if fails.is_empty() {
        println!("PASS: every run did what its row says");
    } else {
        for f in &fails {
            println!("FAIL: {f}");
        }
        std::process::exit(1);
    }
}
