//! `plan` and `apply` wall time with the release binary on generated configs
//! (N agents across 3 profiles). Prints min/median over several runs and
//! the growth from the smallest to the largest N.
//!
//! Run: `cargo bench --bench reconcile` (optionally `-- 1000 2000`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
const PROFILES: [&str; 3] = ["default", "fr", "staging"];

fn config(agents: usize) -> String {
    let mut s = String::from("[servers.prod]\nurl = \"https://api.cloudagent.chat\"\n");
    for p in PROFILES {
        s.push_str(&format!(
            "\n[profiles.{p}]\nserver = \"prod\"\napi_key_file = \"~/.config/cloudagent/{p}.key\"\n"
        ));
    }
    for i in 0..agents {
        let p = PROFILES[i % PROFILES.len()];
        s.push_str(&format!(
            "\n[profiles.{p}.agents.agent_{i:05}]\nname = \"Agent {i}\"\nappend_system_prompt = \"Be brief.\"\n"
        ));
        if i % 10 == 0 {
            s.push_str(&format!("workdir = \"~/code/project-{i}\"\n"));
        }
    }
    s
}

fn run(home: &Path, cfg: &Path, cmd: &str) -> Duration {
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg(cmd)
        .arg("-f")
        .arg(cfg)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run cloudagent-daemon");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[0]), ms(v[v.len() / 2]))
}

fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if args.is_empty() {
            vec![250, 500, 1000]
        } else {
            args
        }
    };
    println!(
        "{:>7} {:>18} {:>18} {:>12}",
        "agents", "apply ms min/med", "plan ms min/med", "plan lines"
    );
    let mut plan_medians = Vec::new();
    for &n in &sizes {
        let text = config(n);
        let mut applies = Vec::new();
        let mut plans = Vec::new();
        let mut lines = 0;
        for _ in 0..3 {
            let home = tempfile::tempdir().expect("tempdir");
            let cfg = home.path().join("cloudagent.toml");
            std::fs::write(&cfg, &text).expect("write config");
            applies.push(run(home.path(), &cfg, "apply"));
            for _ in 0..5 {
                plans.push(run(home.path(), &cfg, "plan"));
            }
            let out = Command::new(BIN)
                .args(["plan", "-f"])
                .arg(&cfg)
                .env_clear()
                .env("HOME", home.path())
                .output()
                .expect("plan");
            lines = String::from_utf8_lossy(&out.stdout).lines().count();
        }
        let (amin, amed) = stats(applies);
        let (pmin, pmed) = stats(plans);
        plan_medians.push(pmed);
        println!("{n:>7} {amin:>8.1} / {amed:<8.1} {pmin:>8.1} / {pmed:<8.1} {lines:>12}");
    }
    if sizes.len() > 1 {
        let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
        println!(
            "plan median grows {:.2}x for {:.1}x the agents",
            plan_medians[plan_medians.len() - 1] / plan_medians[0],
            last as f64 / first as f64
        );
    }
}
