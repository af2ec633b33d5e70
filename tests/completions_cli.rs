//! `completions bash|zsh|fish` and `man` through the real binary: each
//! output names every command `--help` lists (so a command added later is
//! covered without editing this test), the bash script passes `bash -n`,
//! and the man page renders with `man -l`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::tools::require_tool;
use support::{TestHome, stdout};

/// The visible subcommands, as `--help` lists them.
fn commands(home: &TestHome) -> Vec<String> {
    let help = stdout(&home.cmd().arg("--help").output().unwrap());
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|n| n != "help")
        .collect();
    for expected in ["plan", "apply", "start", "doctor", "completions", "man"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    names
}

fn run(home: &TestHome, args: &[&str]) -> String {
    let out = home.cmd().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    stdout(&out)
}

#[test]
fn completion_scripts_name_every_command() {
    let home = TestHome::new();
    let names = commands(&home);
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&home, &["completions", shell]);
        for n in &names {
            assert!(script.contains(n.as_str()), "{shell} script lacks {n}");
        }
        assert!(
            !script.contains("wake-supervisor"),
            "hidden commands stay hidden ({shell})"
        );
    }
    let bad = home.cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_bash_script_parses() {
    let Some(bash) = require_tool("bash", "bash") else {
        return;
    };
    let home = TestHome::new();
    let script = run(&home, &["completions", "bash"]);
    let mut child = Command::new(bash)
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_man_page_names_every_command_and_renders() {
    let home = TestHome::new();
    let page = run(&home, &["man"]);
    assert!(page.contains(".TH cloudagent-daemon 1"), "{page}");
    for n in commands(&home) {
        assert!(page.contains(&n.replace('-', "\\-")), "man page lacks {n}");
    }
    let Some(man) = require_tool("man", "man-db") else {
        return;
    };
    let file = home.path().join("cloudagent-daemon.1");
    std::fs::write(&file, &page).unwrap();
    let out = Command::new(man)
        .args(["-l", file.to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("doctor"));
}
