//! An append-only journal with group commit. A dedicated thread takes
//! records, writes every record that is waiting in one `write`, makes them
//! durable with one `fdatasync`, and only then runs the callbacks queued
//! with them (the delivery acks). So nothing is acknowledged before it is on
//! disk, and a burst of messages costs one sync, not one per message.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::fsutil;

type Callback = Box<dyn FnOnce() + Send>;

enum Item {
    /// A record (one JSON line, newline included) and/or a callback to run
    /// once everything before it is durable. A record that is not `durable`
    /// is written with its batch but does not by itself cost an fdatasync:
    /// the next durable record's sync covers it.
    Append {
        record: Option<Vec<u8>>,
        durable: bool,
        callback: Option<Callback>,
    },
    /// Replace the journal with `records` and write `snapshot` to
    /// `snapshot_path`, atomically, in order with the appends.
    Compact {
        records: Vec<u8>,
        snapshot_path: PathBuf,
        snapshot: Vec<u8>,
    },
    Stop,
}

pub struct Journal {
    tx: mpsc::Sender<Item>,
    thread: Option<JoinHandle<()>>,
}

impl Journal {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = open_append(path)?;
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                Writer {
                    path,
                    file,
                    unsynced: false,
                }
                .run(rx)
            })?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    fn send(&self, record: Option<Vec<u8>>, durable: bool, callback: Option<Callback>) {
        let _ = self.tx.send(Item::Append {
            record,
            durable,
            callback,
        });
    }

    pub fn append(&self, record: Vec<u8>) {
        self.send(Some(record), true, None);
    }

    /// Append a record whose loss in an OS crash is acceptable (it survives
    /// a crash of this process, being in the page cache once written).
    pub fn append_lazy(&self, record: Vec<u8>) {
        self.send(Some(record), false, None);
    }

    /// Append a record and run `f` on the journal thread once it (and
    /// everything before it) is durable. Keep `f` short: it delays the next
    /// batch.
    pub fn append_then(&self, record: Vec<u8>, f: impl FnOnce() + Send + 'static) {
        self.send(Some(record), true, Some(Box::new(f)));
    }

    /// Run `f` once every record appended so far is durable.
    pub fn after_durable(&self, f: impl FnOnce() + Send + 'static) {
        self.send(None, true, Some(Box::new(f)));
    }

    pub fn compact(&self, records: Vec<u8>, snapshot_path: PathBuf, snapshot: Vec<u8>) {
        let _ = self.tx.send(Item::Compact {
            records,
            snapshot_path,
            snapshot,
        });
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.tx.send(Item::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

struct Writer {
    path: PathBuf,
    file: File,
    /// Bytes were written since the last fdatasync.
    unsynced: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Item>) {
        let mut callbacks: Vec<Callback> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut durable = false;
            let mut stop = false;
            // Everything already waiting is one batch.
            while let Some(item) = next.take() {
                match item {
                    Item::Append {
                        record,
                        durable: d,
                        callback,
                    } => {
                        if let Some(r) = record {
                            buf.extend_from_slice(&r);
                        }
                        durable |= d;
                        callbacks.extend(callback);
                    }
                    Item::Compact {
                        records,
                        snapshot_path,
                        snapshot,
                    } => {
                        self.write(&mut buf, true);
                        match compact(&self.path, &records, &snapshot_path, &snapshot) {
                            Ok(f) => self.file = f,
                            Err(e) => tracing::error!(
                                "cannot compact the delivery journal {}: {e}",
                                self.path.display()
                            ),
                        }
                    }
                    Item::Stop => stop = true,
                }
                if !stop {
                    next = rx.try_recv().ok();
                }
            }
            self.write(&mut buf, durable || stop);
            for cb in callbacks.drain(..) {
                cb();
            }
            if stop {
                break;
            }
        }
    }

    /// Write `buf`, then fdatasync if asked and anything is unsynced.
    fn write(&mut self, buf: &mut Vec<u8>, sync: bool) {
        let mut result = Ok(());
        if !buf.is_empty() {
            result = self.file.write_all(buf);
            self.unsynced = true;
            buf.clear();
        }
        if result.is_ok() && sync && self.unsynced {
            result = self.file.sync_data();
            self.unsynced = false;
        }
        // A failed write must not be acknowledged and there is no way to
        // un-ack: stop the process (the service manager restarts it, and the
        // backend redelivers whatever was not acked).
        if let Err(e) = result {
            tracing::error!(
                "cannot write the delivery journal {}: {e}; exiting so nothing is acknowledged that is not on disk",
                self.path.display()
            );
            std::process::exit(1);
        }
    }
}

fn compact(path: &Path, records: &[u8], snapshot_path: &Path, snapshot: &[u8]) -> io::Result<File> {
    // Snapshot first: if we crash between the two, the old journal replays
    // on top of the new snapshot, which is idempotent.
    fsutil::write_atomic(snapshot_path, snapshot, 0o600)?;
    fsutil::write_atomic(path, records, 0o600)?;
    open_append(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn callbacks_run_after_records_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let seen = Arc::new(Mutex::new(Vec::new()));
        {
            let j = Journal::open(&path).unwrap();
            for i in 0..100 {
                j.append(format!("{{\"n\":{i}}}\n").into_bytes());
                let (seen, path) = (seen.clone(), path.clone());
                j.after_durable(move || {
                    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                    seen.lock().unwrap().push((i, lines));
                });
            }
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 100);
        for (k, (i, lines)) in seen.iter().enumerate() {
            assert_eq!(*i, k, "callbacks in order");
            assert!(
                *lines > *i,
                "callback {i} ran before its record was written"
            );
        }
    }

    #[test]
    fn compaction_replaces_journal_and_writes_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let snap = dir.path().join("state.json");
        {
            let j = Journal::open(&path).unwrap();
            j.append(b"a\n".to_vec());
            j.compact(b"keep\n".to_vec(), snap.clone(), b"{}".to_vec());
            j.append(b"after\n".to_vec());
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep\nafter\n");
        assert_eq!(std::fs::read_to_string(&snap).unwrap(), "{}");
    }
}
