//! The delivery journal as a restart reads it
//! (src/runtime/delivery/journal.rs, ledger.rs): the input is the whole
//! `delivery.journal` file, torn and garbage tails included.
//!
//! Beyond "never panics":
//! * `Journal::open` returns exactly the whole lines before the first NUL,
//!   leaves only zeros after them, and a record written next never glues
//!   onto a torn tail;
//! * `Ledger::open` replays only whole lines: every pending wake's payload
//!   reads back as JSON that is part of one whole line, and a
//!   second open (after the first repaired the file) finds the same state.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cloudagent_daemon::paths::ProfilePaths;
use cloudagent_daemon::runtime::delivery::journal::Journal;
use cloudagent_daemon::runtime::delivery::ledger::{Ledger, PendingWake};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// One directory for the whole run, on tmpfs when there is one: every open
/// may write a chunk of zeros and fsync, which tmpfs makes cheap.
fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let made = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        };
        made.expect("a temporary directory")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let paths = ProfilePaths {
        base: dir().to_path_buf(),
        agents_root: dir().join("agents"),
    };
    let journal = paths.base.join("delivery.journal");
    // No state.json: the journal alone.
    let _ = std::fs::remove_file(paths.state_file());
    check_journal(&journal, data);
    check_ledger(&paths, &journal, data);
});

/// The complete lines before the first NUL.
fn whole_lines(data: &[u8]) -> &[u8] {
    let data_end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let end = data[..data_end]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    &data[..end]
}

fn check_journal(path: &PathBuf, data: &[u8]) {
    std::fs::write(path, data).expect("write the journal");
    let want = whole_lines(data);
    {
        let (mut j, records) = Journal::open(path).expect("open the journal");
        assert_eq!(records, want, "records are the whole lines before a NUL");
        let after = std::fs::read(path).expect("read the journal");
        assert!(after.starts_with(want));
        assert!(
            after[want.len()..].iter().all(|b| *b == 0),
            "tail not cleared"
        );
        j.write(b"{\"op\":\"next\"}\n").expect("write a record");
        j.sync().expect("sync");
    }
    let (_, records) = Journal::open(path).expect("reopen the journal");
    let mut expected = want.to_vec();
    expected.extend_from_slice(b"{\"op\":\"next\"}\n");
    assert_eq!(records, expected, "a new record follows the whole lines");
}

/// A ledger's observable state after a restart.
#[derive(Debug, PartialEq)]
struct Seen {
    pending: Vec<(PendingWake, String)>,
    last_seq: i64,
    host_id: Option<String>,
}

fn open(paths: &ProfilePaths) -> Seen {
    let (ledger, pending) = Ledger::open(paths).expect("a journal alone always opens");
    let pending = pending
        .into_iter()
        .map(|w| {
            let payload = ledger
                .load_payload(&w)
                .expect("a pending payload reads back");
            (w, payload)
        })
        .collect();
    Seen {
        pending,
        last_seq: ledger.last_seq(),
        host_id: ledger.host_id().map(str::to_string),
    }
}

fn check_ledger(paths: &ProfilePaths, journal: &PathBuf, data: &[u8]) {
    std::fs::write(journal, data).expect("write the journal");
    let lines: Vec<&[u8]> = whole_lines(data).split(|b| *b == b'\n').collect();
    let first = open(paths);
    let mut keys = std::collections::HashSet::new();
    for (wake, payload) in &first.pending {
        assert!(keys.insert(wake.key()), "a message pending twice");
        // Anything but an object is the wake's to refuse (it reports the
        // wake crashed), but it is JSON, as the record was.
        let _: Value = serde_json::from_str(payload).expect("a payload is JSON");
        assert!(
            lines
                .iter()
                .any(|l| l.windows(payload.len()).any(|w| w == payload.as_bytes())),
            "a payload that is not part of a whole line: {payload:?}"
        );
    }
    assert_eq!(open(paths), first, "a second restart finds the same state");
}
