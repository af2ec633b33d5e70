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

use super::journal::{CompactError, Journal, Rewrite, SyncHandle};
use crate::fsutil;
use crate::paths::{AgentId, ProfilePaths};
use crate::protocol::{Deliver, MessageId};
use crate::runtime::failpoint;

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
        // Sized up front: a large payload is then copied once, not through
        // a growing buffer's reallocations.
        let mut line = Vec::with_capacity(self.payload.map_or(0, |p| p.get().len()) + 512);
        if let Err(e) = serde_json::to_writer(&mut line, self) {
            // Plain structs of strings and numbers: this cannot fail, and
            // an empty record followed by an ack would lose a message.
            crate::runtime::fatal(&format!("cannot encode a journal record: {e}"));
        }
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
    /// A compaction is under way outside the lock.
    compacting: bool,
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
            compacting: false,
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
    /// acted on (acked, run) only after this.
    pub fn sync(&mut self) {
        if let Err(e) = self.journal.sync() {
            self.fatal(e);
        }
    }

    /// For a sync outside the lock (the `done` records of finished wakes,
    /// see `syncer`): take a handle, sync it unlocked, report it back.
    pub fn sync_handle(&self) -> Option<SyncHandle> {
        self.journal.sync_handle().unwrap_or_else(|e| self.fatal(e))
    }

    pub fn mark_synced(&mut self, h: &SyncHandle) {
        self.journal.mark_synced(h);
    }

    /// Whether enough records were written since the last compaction.
    pub fn compaction_due(&self) -> bool {
        self.since_compaction >= COMPACT_EVERY && !self.compacting
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

    /// Rewrite state.json and shrink the journal to the pending wakes, all
    /// at once (at shutdown, and when the workspace root changes).
    pub fn compact(&mut self) {
        if let Some(c) = self.begin_compaction() {
            let prepared = c.prepare();
            self.finish_compaction(prepared);
        }
    }

    /// Step 1 of a compaction, under the lock: make every record durable
    /// (the snapshot must never claim more than the journal holds), then
    /// take what the snapshot and the new journal need. None while another
    /// compaction runs.
    pub fn begin_compaction(&mut self) -> Option<Compaction> {
        if self.compacting {
            return None;
        }
        self.sync();
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
        let entries = self
            .pending_in_order()
            .into_iter()
            .filter_map(|w| self.pending.get(&w.key()).map(|e| (w, e.payload)))
            .collect();
        let (from, epoch) = self.journal.position();
        let reader = self.journal.reader().unwrap_or_else(|e| self.fatal(e));
        self.compacting = true;
        self.since_compaction = 0;
        Some(Compaction {
            snapshot,
            state_path: self.state_path.clone(),
            journal_path: self.journal.path().to_path_buf(),
            entries,
            reader,
            from,
            epoch,
        })
    }

    /// Step 3, under the lock: install the new journal and move the pending
    /// wakes' payload offsets to it. A failure before the new journal is in
    /// place leaves the old one in use, complete; one after is fatal.
    pub fn finish_compaction(&mut self, prepared: Result<Prepared, CompactError>) {
        self.compacting = false;
        let result = prepared.and_then(|p| {
            let moved = p.moved;
            self.journal
                .finish_rewrite(p.rewrite)
                .map(|shift| (moved, shift))
        });
        match result {
            Ok((moved, (was, now))) => {
                for (key, entry) in self.pending.iter_mut() {
                    if let Some(at) = moved.get(key) {
                        entry.payload = *at;
                    } else if entry.payload.offset >= was {
                        entry.payload.offset = entry.payload.offset - was + now;
                    }
                }
                self.since_compaction += self.pending.len();
            }
            Err(CompactError::Journal(e)) => self.fatal(e),
            Err(e) => tracing::error!(
                "cannot compact the delivery journal {}: {e}; the old one stays in use",
                self.journal.path().display()
            ),
        }
    }
}

/// What a compaction needs from the ledger, taken under its lock; the
/// slow part ([`Compaction::prepare`]) runs without it.
pub struct Compaction {
    snapshot: Vec<u8>,
    state_path: PathBuf,
    journal_path: PathBuf,
    entries: Vec<(PendingWake, PayloadAt)>,
    reader: std::fs::File,
    from: u64,
    epoch: u64,
}

pub struct Prepared {
    rewrite: Rewrite,
    moved: HashMap<String, PayloadAt>,
}

impl Compaction {
    /// Step 2, without the lock: write the new journal (the pending
    /// wakes' records) next to the live one, then the snapshot, both
    /// durably. A crash after the snapshot and before the new journal is
    /// installed replays the old, complete journal on top of the snapshot,
    /// which changes nothing.
    pub fn prepare(self) -> Result<Prepared, CompactError> {
        use std::os::unix::fs::FileExt;
        let mut records = Vec::new();
        let mut moved = HashMap::new();
        for (wake, at) in &self.entries {
            let mut payload = vec![0u8; at.len];
            self.reader
                .read_exact_at(&mut payload, at.offset)
                .map_err(CompactError::Snapshot)?;
            let raw = String::from_utf8(payload)
                .ok()
                .and_then(|p| RawValue::from_string(p).ok())
                .ok_or_else(|| {
                    CompactError::Snapshot(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a payload read back is not JSON",
                    ))
                })?;
            let mut line = LineOut::op("accept");
            line.seq = Some(wake.seq);
            line.mid = Some(&wake.message_id);
            line.agent = Some(wake.agent_id.as_str());
            line.payload = Some(&raw);
            let (bytes, payload_start) = line.encode();
            let offset = (records.len() + payload_start) as u64;
            moved.insert(
                wake.key(),
                PayloadAt {
                    offset,
                    len: raw.get().len(),
                },
            );
            records.extend_from_slice(&bytes);
        }
        let rewrite = Journal::start_rewrite(&self.journal_path, &records, self.from, self.epoch)
            .map_err(CompactError::Snapshot)?;
        if failpoint::is("compaction_crash", "before_snapshot") {
            crate::runtime::fatal("failpoint compaction_crash=before_snapshot");
        }
        fsutil::write_atomic(&self.state_path, &self.snapshot, 0o600)
            .map_err(CompactError::Snapshot)?;
        if failpoint::is("compaction_crash", "after_snapshot") {
            crate::runtime::fatal("failpoint compaction_crash=after_snapshot");
        }
        Ok(Prepared { rewrite, moved })
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

    /// A power cut: what was not made durable is gone (the ledger is not
    /// dropped: its drop would sync).
    fn power_cut(l: Ledger) {
        let path = l.journal.path().to_path_buf();
        let durable = l.journal.durable_len();
        std::mem::forget(l);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(durable).unwrap();
    }

    fn pending_keys(p: &ProfilePaths) -> Vec<String> {
        let (_, pending) = Ledger::open(p).unwrap();
        pending.iter().map(PendingWake::key).collect()
    }

    #[test]
    fn a_snapshot_never_claims_more_than_the_journal_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let (mut l, _) = Ledger::open(&p).unwrap();
        decide(&mut l, &deliver(1, "m1", None));
        // Written, not yet synced (its ack has not gone out), then a
        // compaction snapshots m2 as processed; the power goes before the
        // new journal is in place.
        let text = deliver(2, "m2", None);
        let Ok(Inbound::Deliver(d)) = parse(&text) else {
            unreachable!()
        };
        l.record_deliver(&d);
        let c = l.begin_compaction().unwrap();
        let _prepared = c.prepare().unwrap();
        power_cut(l);
        // m2 is in state.json's processed list, so it must be pending too:
        // a redelivery would be dropped as a duplicate, and it never ran.
        assert_eq!(pending_keys(&p), ["m1", "m2"]);
    }

    #[test]
    fn a_crash_at_any_step_of_a_compaction_loses_and_repeats_nothing() {
        for step in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let p = paths(dir.path());
            let (mut l, _) = Ledger::open(&p).unwrap();
            for i in 1..=5 {
                decide(&mut l, &deliver(i, &format!("m{i}"), None));
            }
            l.finish(&MessageId::string("m2"));
            l.finish(&MessageId::string("m4"));
            l.sync();
            let c = l.begin_compaction().unwrap();
            if step >= 1 {
                let prepared = c.prepare();
                decide(&mut l, &deliver(6, "m6", None));
                l.finish(&MessageId::string("m1"));
                l.sync();
                if step >= 2 {
                    l.finish_compaction(prepared);
                }
                if step >= 3 {
                    decide(&mut l, &deliver(7, "m7", None));
                }
            }
            power_cut(l);
            let want: &[&str] = match step {
                0 => &["m1", "m3", "m5"],
                1 | 2 => &["m3", "m5", "m6"],
                _ => &["m3", "m5", "m6", "m7"],
            };
            assert_eq!(pending_keys(&p), want, "crash after step {step}");
            let (mut l, _) = Ledger::open(&p).unwrap();
            for i in 1..=5 {
                let again = decide(&mut l, &deliver(i, &format!("m{i}"), None));
                assert_eq!(again, Decision::Duplicate, "m{i} after step {step}");
            }
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(!names.iter().any(|n| n.contains("compact-")), "{names:?}");
        }
    }

    #[test]
    fn done_records_survive_a_power_cut_once_synced_outside_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let (mut l, _) = Ledger::open(&p).unwrap();
        decide(&mut l, &deliver(1, "m1", None));
        decide(&mut l, &deliver(2, "m2", None));
        l.finish(&MessageId::string("m1"));
        let h = l.sync_handle().unwrap().sync().unwrap();
        l.mark_synced(&h);
        l.finish(&MessageId::string("m2"));
        power_cut(l);
        // m1's done was synced; m2's was not, so m2 runs again.
        assert_eq!(pending_keys(&p), ["m2"]);
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
