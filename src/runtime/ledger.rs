//! Delivery bookkeeping: what was accepted (dedup), what still has to run
//! (pending wakes), `last_seq` and the host id.
//!
//! `state.json` keeps the original's format (PROTOCOL §3.3) so an existing
//! install carries over, but it is a snapshot: each change is one line
//! appended to `delivery.journal` (group-committed, see `journal`), and the
//! snapshot is rewritten only every `COMPACT_EVERY` records. The cost per
//! message therefore does not grow with history.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use super::frames::{Deliver, message_key};
use super::journal::{CompactError, Journal};
use crate::paths::{AgentId, ProfilePaths};

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

/// A message accepted but not yet run to completion.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingWake {
    pub seq: i64,
    pub agent_id: AgentId,
    pub message_id: Value,
    pub payload: Map<String, Value>,
}

impl PendingWake {
    pub fn key(&self) -> String {
        message_key(&self.message_id)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    Accept {
        seq: i64,
        mid: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wid: Option<String>,
        agent: String,
        payload: Map<String, Value>,
    },
    Dup {
        seq: i64,
        mid: Value,
    },
    Done {
        mid: Value,
    },
    Host {
        host_id: String,
    },
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
    processed: VecDeque<Value>,
    processed_keys: HashMap<String, usize>,
    /// Pending wakes by message key, and their arrival order.
    pending: HashMap<String, PendingWake>,
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
            ledger.remember(id);
        }
        for (n, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Record>(line) {
                Ok(r) => ledger.replay(r),
                Err(e) => tracing::warn!("{}: line {} skipped: {e}", journal_path.display(), n + 1),
            }
            ledger.since_compaction += 1;
        }
        let pending = ledger.pending_in_order();
        Ok((ledger, pending))
    }

    fn replay(&mut self, r: Record) {
        match r {
            Record::Accept {
                seq,
                mid,
                wid,
                agent,
                payload,
            } => {
                let Ok(agent_id) = AgentId::parse(&agent) else {
                    return;
                };
                self.accept_in_memory(
                    PendingWake {
                        seq,
                        agent_id,
                        message_id: mid,
                        payload,
                    },
                    wid,
                );
            }
            Record::Dup { seq, mid } => {
                self.remember(mid);
                self.last_seq = self.last_seq.max(seq);
            }
            Record::Done { mid } => {
                self.finish_in_memory(&message_key(&mid));
            }
            Record::Host { host_id } => self.adopt_in_memory(host_id),
        }
    }

    fn remember(&mut self, id: Value) {
        let key = message_key(&id);
        *self.processed_keys.entry(key).or_default() += 1;
        self.processed.push_back(id);
        while self.processed.len() > DEDUP_WINDOW {
            if let Some(old) = self.processed.pop_front() {
                let k = message_key(&old);
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

    fn accept_in_memory(&mut self, wake: PendingWake, wake_id: Option<String>) {
        self.last_seq = self.last_seq.max(wake.seq);
        self.remember(wake.message_id.clone());
        if let Some(w) = wake_id {
            self.remember(Value::String(w));
        }
        let key = wake.key();
        if self.pending.insert(key.clone(), wake).is_none() {
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
            .filter_map(|k| self.pending.get(k).cloned())
            .collect()
    }

    /// Write a record (durable only at the next `sync`); compact when
    /// enough have accumulated.
    fn write(&mut self, r: &Record) {
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = self.journal.write(&line) {
            self.fatal(e);
        }
        self.since_compaction += 1;
        if self.since_compaction >= COMPACT_EVERY {
            self.compact();
        }
    }

    /// Make every record written so far durable. Whatever was decided is
    /// acted on (acked, run) only after this.
    pub fn sync(&mut self) {
        if let Err(e) = self.journal.sync() {
            self.fatal(e);
        }
    }

    /// A record that was written might not reach the disk, and an ack
    /// cannot be taken back: stop the process (the service manager restarts
    /// it, and the backend redelivers whatever was not acked).
    fn fatal(&self, e: io::Error) -> ! {
        tracing::error!(
            "cannot write the delivery journal {}: {e}; exiting so nothing is acknowledged that is not on disk",
            self.journal.path().display()
        );
        std::process::exit(1);
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

    /// Adopt the host id from `hello`. Returns true when it changed.
    pub fn adopt_host(&mut self, host_id: &str) -> bool {
        if host_id.is_empty() || self.host_id.as_deref() == Some(host_id) {
            return false;
        }
        let changed = self.host_id.is_some();
        if changed {
            tracing::warn!(
                "host id changed from {} to {host_id}: resetting last_seq and the dedup list",
                self.host_id.as_deref().unwrap_or_default()
            );
        }
        self.adopt_in_memory(host_id.to_string());
        self.write(&Record::Host {
            host_id: host_id.to_string(),
        });
        self.sync();
        changed
    }

    /// Decide about a deliver and write the decision (PROTOCOL §3.1). Act
    /// on it (ack, run) only after `sync`: that covers a duplicate too,
    /// whose original record may still be in the same unsynced batch.
    pub fn record_deliver(&mut self, d: &Deliver) -> Decision {
        let key = d.message_key();
        if self.seen(&key) {
            return Decision::Duplicate;
        }
        if let Some(w) = &d.wake_id
            && self.processed_keys.contains_key(w)
        {
            self.remember(d.message_id.clone());
            self.last_seq = self.last_seq.max(d.seq);
            self.write(&Record::Dup {
                seq: d.seq,
                mid: d.message_id.clone(),
            });
            return Decision::WakeDuplicate;
        }
        let wake = PendingWake {
            seq: d.seq,
            agent_id: d.agent_id.clone(),
            message_id: d.message_id.clone(),
            payload: d.payload.clone(),
        };
        self.accept_in_memory(wake.clone(), d.wake_id.clone());
        self.write(&Record::Accept {
            seq: d.seq,
            mid: d.message_id.clone(),
            wid: d.wake_id.clone(),
            agent: d.agent_id.to_string(),
            payload: d.payload.clone(),
        });
        Decision::Accept(wake)
    }

    /// A wake ran to completion: it must never run again.
    pub fn finish(&mut self, message_id: &Value) {
        if self.finish_in_memory(&message_key(message_id)) {
            self.write(&Record::Done {
                mid: message_id.clone(),
            });
        }
    }

    /// Rewrite state.json and shrink the journal to the pending wakes.
    pub fn compact(&mut self) {
        let snapshot = StateFile {
            last_seq: self.last_seq,
            processed_message_ids: self.processed.iter().cloned().collect(),
            workspace_root: self.workspace_root.clone(),
            host_id: self.host_id.clone(),
        };
        let snapshot = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
        let mut records = Vec::new();
        for wake in self.pending_in_order() {
            let r = Record::Accept {
                seq: wake.seq,
                mid: wake.message_id.clone(),
                wid: None,
                agent: wake.agent_id.to_string(),
                payload: wake.payload.clone(),
            };
            records.extend(serde_json::to_vec(&r).unwrap_or_default());
            records.push(b'\n');
        }
        self.since_compaction = self.pending.len();
        match self.journal.compact(&records, &self.state_path, &snapshot) {
            Ok(()) => {}
            // The old journal stays in use and still holds everything.
            Err(e @ CompactError::Snapshot(_)) => tracing::error!(
                "cannot compact the delivery journal {}: {e}",
                self.journal.path().display()
            ),
            Err(CompactError::Journal(e)) => self.fatal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::frames::{Inbound, parse};

    fn deliver(seq: i64, mid: &str, wake: Option<&str>) -> Deliver {
        let wake = wake
            .map(|w| format!(",\"wake_id\":\"{w}\""))
            .unwrap_or_default();
        let text = format!(
            r#"{{"type":"deliver","seq":{seq},"payload":{{"agent_id":"a","message_id":"{mid}","body":"b"{wake}}}}}"#
        );
        match parse(&text).unwrap() {
            Inbound::Deliver(d) => d,
            _ => unreachable!(),
        }
    }

    /// record_deliver and make it durable, as the session does.
    fn decide(l: &mut Ledger, d: &Deliver) -> Decision {
        let decision = l.record_deliver(d);
        l.sync();
        decision
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
            l.finish(&Value::from("m1"));
            assert_eq!(l.last_seq(), 3);
        }
        // "Crash": reopen from the journal alone.
        let (mut l, pending) = Ledger::open(&p).unwrap();
        assert_eq!(
            pending.iter().map(PendingWake::key).collect::<Vec<_>>(),
            ["m3"]
        );
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
                l.finish(&Value::from(format!("m{i}")));
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
        let (_, pending) = Ledger::open(&p).unwrap();
        assert_eq!(pending.len(), 1);
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
