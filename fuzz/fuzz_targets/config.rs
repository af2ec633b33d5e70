//! `cloudagent.toml` load and validation (src/config): `config::parse` of
//! the file's text, as `load` and the daemon's reload do.
//!
//! Beyond "never panics": problems point inside the file, an accepted
//! config holds what validation promises, and a machine key never shows in
//! what a user sees (the errors, or the config's Debug).
#![no_main]

use std::path::{Path, PathBuf};

use cloudagent_daemon::config::{self, Desired, MAX_CONCURRENT_WAKES, MAX_WAKE_TIMEOUT_SEC};
use cloudagent_daemon::paths::Home;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/fuzz/cloudagent.toml";
const HOME: &str = "/home/fuzz";

fuzz_target!(|data: &[u8]| {
    // The loader reads the file with read_to_string.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let home = Home::for_tests(Path::new(HOME));
    let shown = match config::parse(text, PathBuf::from(FILE), &home) {
        Ok(desired) => {
            check_desired(&desired);
            format!("{desired:?}")
        }
        Err(config::ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            let lines = text.split('\n').count();
            for p in &problems {
                assert_eq!(p.file, Path::new(FILE));
                if let Some((line, col)) = p.location {
                    assert!(line >= 1 && line <= lines && col >= 1, "{p:?}");
                }
            }
            config::ConfigError::Invalid(problems).to_string()
        }
        Err(e) => panic!("parse does no IO: {e}"),
    };
    for secret in secrets(text) {
        assert!(
            !shown.contains(&secret),
            "an api_key value is shown:\n{shown}"
        );
    }
});

fn check_desired(d: &Desired) {
    let s = &d.daemon;
    assert!((1..=MAX_CONCURRENT_WAKES).contains(&s.max_concurrent_wakes));
    assert!((1..=MAX_WAKE_TIMEOUT_SEC).contains(&s.wake_timeout.as_secs()));
    assert!(!s.claude_binary.trim().is_empty());
    for p in d.profiles.values() {
        let url = &p.server.url;
        assert!(url.starts_with("http://") || url.starts_with("https://"));
        assert!(p.workspace_root.as_ref().is_none_or(|w| w.is_absolute()));
        assert!(p.service.as_ref().is_none_or(|s| s.restart_sec >= 1));
        for a in p.agents.values() {
            assert!(a.workdir.as_ref().is_none_or(|w| w.is_absolute()));
        }
    }
}

/// The machine keys in the file: values of `api_key` (and `api_key_env`)
/// anywhere in it that start with `sk_machine_`, when they could only
/// appear in the output by leaking: no part of any other key or string of
/// the file (those are echoed in messages on purpose).
fn secrets(text: &str) -> Vec<String> {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut others = vec![FILE.to_string(), HOME.to_string()];
    walk(&toml::Value::Table(doc), false, &mut keys, &mut others);
    keys.into_iter()
        .filter(|k| k.len() >= 16 && k.starts_with("sk_machine_"))
        .filter(|k| !others.iter().any(|o| o.contains(k.as_str())))
        .collect()
}

fn walk(v: &toml::Value, is_key: bool, keys: &mut Vec<String>, others: &mut Vec<String>) {
    match v {
        toml::Value::String(s) if is_key => keys.push(s.clone()),
        toml::Value::String(s) => others.push(s.clone()),
        toml::Value::Array(items) => items.iter().for_each(|i| walk(i, is_key, keys, others)),
        toml::Value::Table(t) => {
            for (k, child) in t {
                others.push(k.clone());
                // A key pasted into api_key_env is a key too.
                walk(child, k == "api_key" || k == "api_key_env", keys, others);
            }
        }
        _ => {}
    }
}
