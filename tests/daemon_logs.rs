//! Where the daemon's log goes (README "Logs"): `daemon-YYYY-MM-DD.log`
//! as the original's README says, stderr when that is systemd's journal
//! (`JOURNAL_STREAM` names it) and not when it is any other file, and
//! `CLOUDAGENT_DAEMON_JSON_LOG` switching to one JSON object per line.
//! Real binary, temporary HOME, the fake backend on 127.0.0.1:0.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use support::daemon::{Daemon, FAST_TIMING};
use support::scenario::Scenario;

const T: Duration = Duration::from_secs(15);

/// Start the daemon with `env`, wait for its handshake, stop it cleanly;
/// returns (what it wrote to stdout+stderr, the names and contents of its
/// log files).
async fn run_once(s: &Scenario, env: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
    let mut d = Daemon::start_with_env(&s.home, FAST_TIMING, env);
    let mut conn = s.backend.next_connection(T).await;
    conn.recv_type("resume", T).await;
    d.signal("TERM");
    assert!(d.wait_exit(T).expect("exits on SIGTERM").success());
    let out = std::fs::read_to_string(&d.log).unwrap_or_default();
    let logs = s.home.path().join(".cloudagent/daemon/logs");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    files.sort();
    (out, files)
}

/// The file the test daemon's stdout and stderr go to (see
/// support::daemon), created now so its device and inode are known.
fn out_file_stream(s: &Scenario) -> String {
    let out = s
        .home
        .path()
        .join(format!("daemon-{}.out", std::process::id()));
    std::fs::write(&out, "").unwrap();
    let m = std::fs::metadata(&out).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

#[tokio::test(flavor = "multi_thread")]
async fn log_file_name_and_stderr_only_for_the_journal() {
    let s = Scenario::new(&["agent_a"], "").await;
    let (out, files) = run_once(&s, &[("JOURNAL_STREAM", "1:2")]).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [format!("daemon-{today}.log")]
    );
    assert!(
        files[0].1.contains("starting: profile=default"),
        "{files:?}"
    );
    // stderr is a plain file, not the stream JOURNAL_STREAM names.
    assert!(!out.contains("starting: profile=default"), "{out}");

    let journal = out_file_stream(&s);
    let (out, _) = run_once(&s, &[("JOURNAL_STREAM", &journal)]).await;
    assert!(out.contains("starting: profile=default"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "no colours in the journal: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_is_one_object_per_line_with_the_original_keys() {
    let s = Scenario::new(&["agent_a"], "").await;
    let journal = out_file_stream(&s);
    let env = [
        ("CLOUDAGENT_DAEMON_JSON_LOG", "yes"),
        ("JOURNAL_STREAM", journal.as_str()),
    ];
    let (out, files) = run_once(&s, &env).await;
    let log_lines: Vec<&str> = out.lines().filter(|l| l.starts_with('{')).collect();
    for text in files
        .iter()
        .map(|(_, t)| t.as_str())
        .chain([log_lines.join("\n").as_str()])
    {
        let mut starting = false;
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            for k in ["ts", "level", "name", "msg", "pid", "thread"] {
                assert!(v.get(k).is_some(), "{k} missing: {line}");
            }
            starting |= v["msg"]
                .as_str()
                .unwrap()
                .starts_with("starting: profile=default");
        }
        assert!(starting, "{text}");
    }
}
