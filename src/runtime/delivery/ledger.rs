//! Delivery bookkeeping: what was accepted (dedup), what still has to run
//! (pending wakes), `last_seq` and the host id.
//!
//! `state.json` keeps the original's format (PROTOCOL §3.3) so an existing
//! install carries over, but it is a snapshot: each change is one line
//! appended to `delivery.journal` (group-committed, see `journal`), and the
//! snapshot is rewritten only every `COMPACT_EVERY` records. The cost per
//! message therefore does not grow with history.
//!
//! An accepted message's payload lives in the journal only: memory holds a
//! small entry per pending wake (ids and where its payload is), and the wake
//! reads the payload back when its turn comes.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

use super::journal::{CompactError, Journal};
use crate::paths::{AgentId, ProfilePaths};
use crate::protocol::{Deliver, MessageId};

/// The original keeps the newest 1024 ids (PROTOCOL §3.2).
pub const DEDUP_WINDOW: usize = 1024;
const COMPACT_EVERY: usize = 4096;

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not valid state ({detail}); move it aside to start with empty delivery state (messages may then run twice)", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot open the delivery journal {}: {source}", path.display())]
    Journal { path: PathBuf, source: io::Error },
    #[error("message {0} is not pending")]
    NotPending(String),
}

/// state.json, field order as the original writes it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default)]
    last_seq: i64,
    #[serde(default)]
    processed_message_ids: Vec<Value>,
    #[serde(default)]
    workspace_root: Option<String>,
    #[serde(default)]
    host_id: Option<String>,
}

/// A message accepted but not yet run to completion: what the scheduler
/// queues. Its payload stays in the journal ([`Ledger::load_payload`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingWake {
    pub seq: i64,
    pub agent_id: AgentId,
    pub message_id: MessageId,
}

impl PendingWake {
    pub fn key(&self) -> String {
        self.message_id.key()
    }
}

/// Where a pending wake's payload is in the journal file.
#[derive(Debug, Clone, Copy)]
struct PayloadAt {
    offset: u64,
    len: usize,
}

struct Entry {
    wake: PendingWake,
    payload: PayloadAt,
}

/// One journal line, as written: the op first, the payload last (so its
/// offset in the line is known without searching).
#[derive(Serialize)]
struct LineOut<'a> {
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mid: Option<&'a MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
}

impl<'a> LineOut<'a> {
    fn op(op: &'static str) -> Self {
        Self {
            op,
            seq: None,
            mid: None,
            wid: None,
            agent: None,
            host_id: None,
            payload: None,
        }
    }

    /// The record of an accepted deliver.
    fn accept(d: &'a Deliver) -> Self {
        let mut line = Self::op("accept");
        line.seq = Some(d.seq);
        line.mid = Some(&d.message_id);
        line.wid = d.wake_id.as_deref();
        line.agent = Some(d.agent_id.as_str());
        line.payload = Some(d.payload);
        line
    }

    /// The line, newline included, and where its payload starts in it.
    fn encode(&self) -> (Vec<u8>, usize) {
        let mut line = match serde_json::to_vec(self) {
            Ok(l) => l,
            // Plain structs of strings and numbers: this cannot fail, and
            // an empty record followed by an ack would lose a message.
            Err(e) => crate::runtime::fatal(&format!("cannot encode a journal record: {e}")),
        };
        // The payload is kept as the backend sent it, and JSON may break
        // lines between tokens (never inside a string, where a line break
        // is escaped): as spaces they keep the record one line, of the same
        // length and the same value. A record split over lines would not
        // replay, and its message, already acked, would be lost.
        for b in &mut line {
            if matches!(*b, b'\n' | b'\r') {
                *b = b' ';
            }
        }
        let payload_start = self
            .payload
            .map_or(line.len(), |p| line.len() - 1 - p.get().len());
        line.push(b'\n');
        (line, payload_start)
    }
}

/// The journal record [`Ledger::record_deliver`] writes for an accepted
/// deliver, and where its payload starts in it. Public only for the fuzz
/// targets (fuzz/README.md), which check that any frame the parser accepts
/// becomes exactly one line that replays to the same payload.
#[doc(hidden)]
pub fn fuzz_accept_record(d: &Deliver) -> (Vec<u8>, usize) {
    LineOut::accept(d).encode()
}

/// One journal line, as read back.
#[derive(Deserialize)]
struct LineIn<'a> {
    op: String,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default)]
    mid: Option<MessageId>,
    #[serde(default)]
    wid: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    host_id: Option<String>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// What to do with a `deliver`.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Seen before: ack `received` again, nothing else.
    Duplicate,
    /// Its wake_id was seen: recorded, acked, not run.
    WakeDuplicate,
    /// New: recorded, to be acked once durable and then run.
    Accept(PendingWake),
}

pub struct Ledger {
    state_path: PathBuf,
    journal: Journal,
    last_seq: i64,
    host_id: Option<String>,
    workspace_root: Option<String>,
    processed: VecDeque<MessageId>,
    processed_keys: HashMap<String, usize>,
    /// Pending wakes by message key, and their arrival order.
    pending: HashMap<String, Entry>,
    order: VecDeque<String>,
    since_compaction: usize,
}

fn read_state(path: &Path) -> Result<StateFile, LedgerError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(source) => Err(LedgerError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Ledger {
    /// Load state.json, replay the journal on top, and return the wakes that
    /// were accepted but never finished (to be run again, PROTOCOL §3.5).
    pub fn open(paths: &ProfilePaths) -> Result<(Self, Vec<PendingWake>), LedgerError> {
        let state_path = paths.state_file();
        let journal_path = paths.base.join("delivery.journal");
        let state = read_state(&state_path)?;
        let (journal, text) =
            Journal::open(&journal_path).map_err(|source| LedgerError::Journal {
                path: journal_path.clone(),
                source,
            })?;
        let mut ledger = Self {
            journal,
            state_path,
            last_seq: state.last_seq,
            host_id: state.host_id,
            workspace_root: state.workspace_root,
            processed: VecDeque::new(),
            processed_keys: HashMap::new(),
            pending: HashMap::new(),
            order: VecDeque::new(),
            since_compaction: 0,
        };
        for id in state.processed_message_ids {
            match MessageId::parse(id) {
                Ok(id) => ledger.remember(id),
                Err(e) => tracing::warn!("state.json: a processed message id skipped: {e}"),
            }
        }
        let mut at = 0usize;
        for (n, line) in text.split(|b| *b == b'\n').enumerate() {
            let line_at = at;
            at += line.len() + 1;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<LineIn>(line) {
                Ok(r) => ledger.replay(r, line, line_at as u64),
                Err(e) => tracing::warn!("{}: line {} skipped: {e}", journal_path.display(), n + 1),
            }
            ledger.since_compaction += 1;
        }
        let pending = ledger.pending_in_order();
        Ok((ledger, pending))
    }

    fn replay(&mut self, r: LineIn, line: &[u8], line_at: u64) {
        match (r.op.as_str(), r.mid) {
            ("accept", Some(mid)) => {
                let (Some(agent), Some(payload)) = (r.agent, r.payload) else {
                    return;
                };
                let Ok(agent_id) = AgentId::parse(&agent) else {
                    return;
                };
                // The payload borrows from `line`: its offset in the file.
                let in_line = payload.get().as_ptr() as usize - line.as_ptr() as usize;
                let wake = PendingWake {
                    seq: r.seq.unwrap_or_default(),
                    agent_id,
                    message_id: mid,
                };
                let at = PayloadAt {
                    offset: line_at + in_line as u64,
                    len: payload.get().len(),
                };
                self.accept_in_memory(wake, r.wid, at);
            }
            ("dup", Some(mid)) => {
                self.remember(mid);
                self.last_seq = self.last_seq.max(r.seq.unwrap_or_default());
            }
            ("done", Some(mid)) => {
                self.finish_in_memory(&mid.key());
            }
            ("host", _) => {
                if let Some(h) = r.host_id {
                    self.adopt_in_memory(h)
                }
            }
            _ => {}
        }
    }

    fn remember(&mut self, id: MessageId) {
        *self.processed_keys.entry(id.key()).or_default() += 1;
        self.processed.push_back(id);
        while self.processed.len() > DEDUP_WINDOW {
            if let Some(old) = self.processed.pop_front() {
                let k = old.key();
                if let Some(n) = self.processed_keys.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        self.processed_keys.remove(&k);
                    }
                }
            }
        }
    }

    fn seen(&self, key: &str) -> bool {
        self.processed_keys.contains_key(key) || self.pending.contains_key(key)
    }

    fn accept_in_memory(&mut self, wake: PendingWake, wake_id: Option<String>, at: PayloadAt) {
        self.last_seq = self.last_seq.max(wake.seq);
        self.remember(wake.message_id.clone());
        if let Some(w) = wake_id {
            self.remember(MessageId::string(&w));
        }
        let key = wake.key();
        let entry = Entry { wake, payload: at };
        if self.pending.insert(key.clone(), entry).is_none() {
            self.order.push_back(key);
        }
    }

    fn finish_in_memory(&mut self, key: &str) -> bool {
        self.pending.remove(key).is_some()
    }

    fn adopt_in_memory(&mut self, host_id: String) {
        // A different host: the original resets seq and dedup (§3.3).
        if self.host_id.as_deref().is_some_and(|h| h != host_id) {
            self.last_seq = 0;
            self.processed.clear();
            self.processed_keys.clear();
        }
        self.host_id = Some(host_id);
    }

    fn pending_in_order(&mut self) -> Vec<PendingWake> {
        let pending = &self.pending;
        self.order.retain(|k| pending.contains_key(k));
        self.order
            .iter()
            .filter_map(|k| self.pending.get(k).map(|e| e.wake.clone()))
            .collect()
    }

    /// Write a record (durable only at the next `sync`); returns where the
    /// payload, if any, landed in the file.
    fn write(&mut self, line: &LineOut) -> PayloadAt {
        let (bytes, payload_start) = line.encode();
        let offset = match self.journal.write(&bytes) {
            Ok(at) => at,
            Err(e) => self.fatal(e),
        };
        self.since_compaction += 1;
        PayloadAt {
            offset: offset + payload_start as u64,
            len: line.payload.map_or(0, |p| p.get().len()),
        }
    }

    /// Make every record written so far durable. Whatever was decided is
    /// acted on (acked, run) only after this. Compaction, when due, runs
    /// here: after the sync, so the snapshot never claims more than the
    /// journal has made durable.
    pub fn sync(&mut self) {
        if let Err(e) = self.journal.sync() {
            self.fatal(e);
        }
        if self.since_compaction >= COMPACT_EVERY {
            self.compact();
        }
    }

    /// A record that was written might not reach the disk, and an ack
    /// cannot be taken back: stop the process (the service manager restarts
    /// it, and the backend redelivers whatever was not acked).
    fn fatal(&self, e: io::Error) -> ! {
        crate::runtime::fatal(&format!(
            "cannot write the delivery journal {}: {e}; exiting so nothing is acknowledged that is not on disk",
            self.journal.path().display()
        ))
    }

    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    pub fn host_id(&self) -> Option<&str> {
        self.host_id.as_deref()
    }

    pub fn workspace_root(&self) -> Option<&str> {
        self.workspace_root.as_deref()
    }

    /// `--workspace-root` is remembered in state.json, as the original does.
    pub fn set_workspace_root(&mut self, root: &str) {
        if self.workspace_root.as_deref() != Some(root) {
            self.workspace_root = Some(root.to_string());
            self.sync();
            self.compact();
        }
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Adopt the host id from `hello` (or `/ready`). Returns true when it
    /// replaced a different one.
    pub fn adopt_host(&mut self, host_id: &str) -> bool {
        if host_id.is_empty() || self.host_id.as_deref() == Some(host_id) {
            return false;
        }
        let changed = self.host_id.is_some();
        if changed {
            tracing::warn!(
                "host id changed from {:?} to {host_id:?}: resetting last_seq and the dedup list",
                self.host_id.as_deref().unwrap_or_default()
            );
        }
        self.adopt_in_memory(host_id.to_string());
        let mut line = LineOut::op("host");
        line.host_id = Some(host_id);
        self.write(&line);
        self.sync();
        changed
    }

    /// `last_seq = max(local, server)` after the SSE `/ready` answer
    /// (PROTOCOL §2.3).
    pub fn raise_last_seq(&mut self, seq: i64) {
        if seq > self.last_seq {
            self.last_seq = seq;
        }
    }

    /// Decide about a deliver and write the decision (PROTOCOL §3.1). Act
    /// on it (ack, run) only after `sync`: that covers a duplicate too,
    /// whose original record may still be in the same unsynced batch.
    pub fn record_deliver(&mut self, d: &Deliver) -> Decision {
        let key = d.message_id.key();
        if self.seen(&key) {
            return Decision::Duplicate;
        }
        if let Some(w) = &d.wake_id
            && self.processed_keys.contains_key(w)
        {
            self.remember(d.message_id.clone());
            self.last_seq = self.last_seq.max(d.seq);
            let mut line = LineOut::op("dup");
            line.seq = Some(d.seq);
            line.mid = Some(&d.message_id);
            self.write(&line);
            return Decision::WakeDuplicate;
        }
        let at = self.write(&LineOut::accept(d));
        let wake = PendingWake {
            seq: d.seq,
            agent_id: d.agent_id.clone(),
            message_id: d.message_id.clone(),
        };
        self.accept_in_memory(wake.clone(), d.wake_id.clone(), at);
        Decision::Accept(wake)
    }

    /// A pending wake's payload (its JSON text), read back from the journal.
    pub fn load_payload(&self, wake: &PendingWake) -> Result<String, LedgerError> {
        let key = wake.key();
        let entry = self
            .pending
            .get(&key)
            .ok_or_else(|| LedgerError::NotPending(wake.message_id.to_string()))?;
        let journal_err = |source| LedgerError::Journal {
            path: self.journal.path().to_path_buf(),
            source,
        };
        let bytes = self
            .journal
            .read_at(entry.payload.offset, entry.payload.len)
            .map_err(journal_err)?;
        String::from_utf8(bytes).map_err(|_| {
            journal_err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a payload is not UTF-8",
            ))
        })
    }

    /// A wake ran to completion: it must never run again.
    pub fn finish(&mut self, message_id: &MessageId) {
        if self.finish_in_memory(&message_id.key()) {
            let mut line = LineOut::op("done");
            line.mid = Some(message_id);
            self.write(&line);
        }
    }

    /// Rewrite state.json and shrink the journal to the pending wakes. Call
    /// only right after a sync.
    pub fn compact(&mut self) {
        let snapshot = StateFile {
            last_seq: self.last_seq,
            processed_message_ids: self
                .processed
                .iter()
                .map(|m| m.as_value().clone())
                .collect(),
            workspace_root: self.workspace_root.clone(),
            host_id: self.host_id.clone(),
        };
        let snapshot = match serde_json::to_vec_pretty(&snapshot) {
            Ok(s) => s,
            Err(e) => crate::runtime::fatal(&format!("cannot encode state.json: {e}")),
        };
        let mut records = Vec::new();
        let mut moved = Vec::new();
        for wake in self.pending_in_order() {
            let payload = match self.load_payload(&wake) {
                Ok(p) => p,
                Err(e) => crate::runtime::fatal(&format!("compacting the journal: {e}")),
            };
            let Ok(raw) = RawValue::from_string(payload) else {
                crate::runtime::fatal("compacting the journal: a payload is not JSON");
            };
            let mut line = LineOut::op("accept");
            line.seq = Some(wake.seq);
            line.mid = Some(&wake.message_id);
            line.agent = Some(wake.agent_id.as_str());
            line.payload = Some(&raw);
            let (bytes, payload_start) = line.encode();
            moved.push((
                wake.key(),
                PayloadAt {
                    offset: (records.len() + payload_start) as u64,
                    len: raw.get().len(),
                },
            ));
            records.extend_from_slice(&bytes);
        }
        match self.journal.compact(&records, &self.state_path, &snapshot) {
            Ok(()) => {
                for (key, at) in moved {
                    if let Some(e) = self.pending.get_mut(&key) {
                        e.payload = at;
                    }
                }
                self.since_compaction = self.pending.len();
            }
            // The old journal stays in use and still holds everything;
            // try again after as many records.
            Err(e @ CompactError::Snapshot(_)) => {
                self.since_compaction = 0;
                tracing::error!(
                    "cannot compact the delivery journal {}: {e}",
                    self.journal.path().display()
                )
            }
            Err(CompactError::Journal(e)) => self.fatal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frames::{DeliverPayload, Inbound, parse};

    fn deliver(seq: i64, mid: &str, wake: Option<&str>) -> String {
        let wake = wake
            .map(|w| format!(",\"wake_id\":\"{w}\""))
            .unwrap_or_default();
        format!(
            r#"{{"type":"deliver","seq":{seq},"payload":{{"agent_id":"a","message_id":"{mid}","body":"body of {mid}"{wake}}}}}"#
        )
    }

    /// record_deliver and make it durable, as the session does.
    fn decide(l: &mut Ledger, text: &str) -> Decision {
        let Ok(Inbound::Deliver(d)) = parse(text) else {
            unreachable!()
        };
        let decision = l.record_deliver(&d);
        l.sync();
        decision
    }

    fn body(l: &Ledger, wake: &PendingWake) -> String {
        DeliverPayload::parse(&l.load_payload(wake).unwrap())
            .unwrap()
            .body
    }

    fn paths(dir: &Path) -> ProfilePaths {
        ProfilePaths {
            base: dir.to_path_buf(),
            agents_root: dir.join("agents"),
        }
    }

    #[test]
    fn dedup_pending_and_replay_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        {
            let (mut l, pending) = Ledger::open(&p).unwrap();
            assert!(pending.is_empty());
            assert!(matches!(
                decide(&mut l, &deliver(1, "m1", Some("w1"))),
                Decision::Accept(_)
            ));
            assert_eq!(decide(&mut l, &deliver(1, "m1", None)), Decision::Duplicate);
            assert_eq!(
                decide(&mut l, &deliver(2, "m2", Some("w1"))),
                Decision::WakeDuplicate
            );
            assert!(matches!(
                decide(&mut l, &deliver(3, "m3", None)),
                Decision::Accept(_)
            ));
            l.finish(&MessageId::string("m1"));
            assert_eq!(l.last_seq(), 3);
        }
        // "Crash": reopen from the journal alone.
        let (mut l, pending) = Ledger::open(&p).unwrap();
        assert_eq!(
            pending.iter().map(PendingWake::key).collect::<Vec<_>>(),
            ["m3"]
        );
        assert_eq!(body(&l, &pending[0]), "body of m3");
        assert_eq!(l.last_seq(), 3);
        assert_eq!(decide(&mut l, &deliver(1, "m1", None)), Decision::Duplicate);
        assert_eq!(decide(&mut l, &deliver(3, "m3", None)), Decision::Duplicate);
    }

    #[test]
    fn compaction_keeps_state_json_in_the_original_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        {
            let (mut l, _) = Ledger::open(&p).unwrap();
            l.adopt_host("host_1");
            for i in 0..(COMPACT_EVERY + 10) {
                decide(&mut l, &deliver(i as i64 + 1, &format!("m{i}"), None));
                l.finish(&MessageId::string(&format!("m{i}")));
            }
            decide(&mut l, &deliver(99_999, "pending", None));
            l.compact();
        }
        let state: Value = serde_json::from_slice(&std::fs::read(p.state_file()).unwrap()).unwrap();
        let keys: Vec<&String> = state.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "last_seq",
                "processed_message_ids",
                "workspace_root",
                "host_id"
            ]
        );
        assert_eq!(state["last_seq"], 99_999);
        assert_eq!(state["host_id"], "host_1");
        assert_eq!(
            state["processed_message_ids"].as_array().unwrap().len(),
            DEDUP_WINDOW
        );
        let journal = std::fs::read_to_string(dir.path().join("delivery.journal")).unwrap();
        // Records end at the preallocated zeros.
        let records = journal.split('\0').next().unwrap();
        assert!(journal[records.len()..].bytes().all(|b| b == 0));
        assert_eq!(
            records.lines().count(),
            1,
            "journal shrinks to the pending wake"
        );
        let (l, pending) = Ledger::open(&p).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(body(&l, &pending[0]), "body of pending");
    }

    #[test]
    fn original_state_json_carries_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        std::fs::write(
            p.state_file(),
            "{\n  \"last_seq\": 5,\n  \"processed_message_ids\": [\n    \"msg_1\"\n  ],\n  \"workspace_root\": null,\n  \"host_id\": \"host_1\"\n}",
        )
        .unwrap();
        let (mut l, _) = Ledger::open(&p).unwrap();
        assert_eq!(l.last_seq(), 5);
        assert_eq!(l.host_id(), Some("host_1"));
        assert_eq!(
            decide(&mut l, &deliver(6, "msg_1", None)),
            Decision::Duplicate
        );
        assert!(!l.adopt_host("host_1"));
        assert!(l.adopt_host("host_2"));
        assert_eq!(l.last_seq(), 0);
        assert!(matches!(
            decide(&mut l, &deliver(7, "msg_1", None)),
            Decision::Accept(_)
        ));
    }

    #[test]
    fn a_payload_with_line_breaks_is_one_journal_record() {
        // JSON may have line breaks between tokens, and the payload is
        // journaled as the backend sent it: it must still replay after a
        // restart (found by the frames fuzz target, fuzz/README.md).
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let text = "{\"type\":\"deliver\",\"seq\":1,\"payload\":{\"agent_id\":\"a\",\r\n\"message_id\":\"m1\",\n\"body\":\"line\\nbreak\"}}";
        {
            let (mut l, _) = Ledger::open(&p).unwrap();
            assert!(matches!(decide(&mut l, text), Decision::Accept(_)));
        }
        let (l, pending) = Ledger::open(&p).unwrap();
        assert_eq!(
            pending.iter().map(PendingWake::key).collect::<Vec<_>>(),
            ["m1"]
        );
        assert_eq!(body(&l, &pending[0]), "line\nbreak");
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        std::fs::write(p.state_file(), "{not json").unwrap();
        let err = Ledger::open(&p).err().unwrap().to_string();
        assert!(
            err.contains("state.json is not valid state") && err.contains("move it aside"),
            "{err}"
        );
    }
}
