//! The original daemon's spawn outbox, `<agent>/.meta/pending-spawn.jsonl`
//! (docs/PROTOCOL.md "Coming from the original daemon"): one JSON line per
//! event, `received` before the original acknowledged a message and
//! `done` once its wake ended. A `received` without a `done` is a message
//! the backend will not send again but that never ran: the first `start`
//! runs it once and appends the `done` line the original would have
//! written, so neither daemon replays it again.
//!
//! The file is outside input (another program wrote it, possibly
//! truncated by a crash): it is read bounded, each line parsed on its own,
//! and a line that does not parse is skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

pub const FILE: &str = "pending-spawn.jsonl";
/// A deliver payload is at most a frame (16 MiB by default, 1 GiB at the
/// most a server allows); the original's file holds a few of them.
const MAX_LINE: u64 = 64 * 1024 * 1024;
const MAX_FILE: u64 = 256 * 1024 * 1024;

/// One message the original acknowledged and never ran.
#[derive(Debug)]
pub struct Unrun {
    pub msg_id: String,
    /// The deliver payload as the original received it.
    pub payload: Box<RawValue>,
}

#[derive(Deserialize)]
struct Line {
    event: String,
    msg_id: serde_json::Value,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
}

fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `received` entries without a later `done`, in file order (the last
/// `received` of an id wins, as the original's compaction keeps it).
/// `Ok(vec![])` when the file does not exist; lines that are not valid
/// entries are counted in the second value.
pub fn unrun(path: &Path) -> std::io::Result<(Vec<Unrun>, usize)> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file.take(MAX_FILE));
    let mut order: Vec<Unrun> = Vec::new();
    let mut skipped = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            // Over the bound: skip the rest of this line.
            skipped += 1;
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            continue;
        }
        let Some((event, id, payload)) = serde_json::from_str::<Line>(text.trim())
            .ok()
            .and_then(|l| Some((l.event, id_text(&l.msg_id)?, l.payload)))
        else {
            skipped += 1;
            continue;
        };
        order.retain(|u| u.msg_id != id);
        match (event.as_str(), payload) {
            ("received", Some(payload)) => order.push(Unrun {
                msg_id: id,
                payload,
            }),
            ("done", _) => {}
            _ => skipped += 1,
        }
    }
    Ok((order, skipped))
}

/// Append the `done` line the original writes after a wake (same
/// separators), so that it never runs again under either daemon.
pub fn mark_done(path: &Path, msg_id: &str) -> std::io::Result<()> {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let line = format!(
        "{{\"event\": \"done\", \"msg_id\": {}, \"ts\": {}, \"ok\": true, \"replayed_by\": \"cloudagent-daemon {}\"}}\n",
        serde_json::Value::from(msg_id),
        serde_json::Value::from(ts),
        env!("CARGO_PKG_VERSION")
    );
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // A crash may have cut the last line: start on a line of our own.
    let len = f.metadata()?.len();
    let mut last = [0u8; 1];
    if len > 0 {
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut last, len - 1)?;
    }
    let sep = if len > 0 && last[0] != b'\n' {
        "\n"
    } else {
        ""
    };
    f.write_all(format!("{sep}{line}").as_bytes())?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_without_done_in_order_corrupt_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        std::fs::write(
            &p,
            concat!(
                "{\"event\": \"received\", \"msg_id\": \"1\", \"wake_id\": null, \"ts\": \"t\", \"payload\": {\"agent_id\": \"a\", \"message_id\": \"1\"}}\n",
                "{\"event\": \"received\", \"msg_id\": \"2\", \"ts\": \"t\", \"payload\": {\"agent_id\": \"a\", \"message_id\": \"2\"}}\n",
                "not json\n",
                "{\"event\": \"done\", \"msg_id\": \"1\", \"ts\": \"t\", \"ok\": true}\n",
                "{\"event\": \"received\", \"msg_id\": 3, \"ts\": \"t\", \"payload\": {\"agent_id\": \"a\", \"message_id\": 3}}\n",
                "{\"event\": \"received\", \"msg_id\": \"4\"",
            ),
        )
        .unwrap();
        let (u, skipped) = unrun(&p).unwrap();
        let ids: Vec<&str> = u.iter().map(|u| u.msg_id.as_str()).collect();
        assert_eq!(ids, ["2", "3"]);
        assert_eq!(skipped, 2);
        mark_done(&p, "2").unwrap();
        let (u, _) = unrun(&p).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].msg_id, "3");
        assert!(unrun(&dir.path().join("none")).unwrap().0.is_empty());
    }
}
