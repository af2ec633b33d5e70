//! The delivery journal: JSON lines, written at once and made durable in
//! groups. `write` puts a record in the page cache (it survives a crash of
//! this process); `sync` makes everything written so far durable with one
//! fdatasync. The session task records every deliver that is ready, syncs
//! once, and only then acknowledges them: a burst costs one sync, nothing is
//! acknowledged before it is on disk, and no thread hop sits between a
//! deliver and its ack.
//!
//! The file is preallocated with zeros: records overwrite zeros ahead of
//! the end, so an fdatasync flushes the data alone instead of also
//! committing a new file size (on ext4 about a quarter of its cost). The
//! first NUL byte ends the records (a JSON line never contains one).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil;

/// Zeros kept ahead of the last record; the file grows by this much at a
/// time, so one sync in this many bytes of records also commits a new size.
const CHUNK: u64 = 1 << 20;

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Where the next record goes: the end of the records.
    pos: u64,
    /// The file's length; everything from `pos` to here is zeros.
    allocated: u64,
    /// Bytes were written since the last fdatasync.
    unsynced: bool,
}

impl Journal {
    /// Open (or create) the journal and return it with its records: the
    /// complete lines before the first NUL. A torn last line (written, never
    /// synced, so never acknowledged) is cut off so the next record does not
    /// glue onto it.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<u8>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let data_end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        let end = bytes[..data_end]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let mut journal = Self {
            path: path.to_path_buf(),
            file,
            pos: end as u64,
            allocated: bytes.len() as u64,
            unsynced: false,
        };
        let zeros_after = bytes[end..].iter().all(|b| *b == 0);
        if !zeros_after || journal.allocated - journal.pos < CHUNK / 4 {
            // Older daemons wrote no padding, or a torn line is left: zero
            // everything after the records and make that durable before any
            // new record can be acknowledged.
            journal.file.set_len(journal.pos)?;
            journal.allocated = journal.pos;
            // An empty record at the end grows the file by a chunk of zeros.
            journal.write(&[])?;
            journal.file.sync_all()?;
            journal.unsynced = false;
        }
        if !existed {
            fsutil::sync_dir(fsutil::parent_dir(path))?;
        }
        let records = bytes[..end].to_vec();
        Ok((journal, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write a record (one JSON line, newline included) and return the
    /// offset it starts at. Durable only after the next `sync`.
    pub fn write(&mut self, record: &[u8]) -> io::Result<u64> {
        let start = self.pos;
        let end = self.pos + record.len() as u64;
        if end + CHUNK / 4 <= self.allocated {
            self.file.write_all_at(record, self.pos)?;
        } else {
            // Grow by a chunk of zeros in the same write.
            let mut buf = Vec::with_capacity(record.len() + CHUNK as usize);
            buf.extend_from_slice(record);
            buf.resize(record.len() + CHUNK as usize, 0);
            self.file.write_all_at(&buf, self.pos)?;
            self.allocated = self.allocated.max(self.pos + buf.len() as u64);
        }
        self.pos = end;
        self.unsynced = true;
        Ok(start)
    }

    /// `len` bytes of the file from `at` (a record written earlier).
    pub fn read_at(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }

    /// Make every record written so far durable (one fdatasync, none when
    /// nothing was written since the last one).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Replace the journal with `records` and write `snapshot` to
    /// `snapshot_path`, both durably.
    pub fn compact(
        &mut self,
        records: &[u8],
        snapshot_path: &Path,
        snapshot: &[u8],
    ) -> Result<(), CompactError> {
        // Snapshot first: if we crash between the two, the old journal
        // replays on top of the new snapshot, which is idempotent.
        fsutil::write_atomic(snapshot_path, snapshot, 0o600).map_err(CompactError::Snapshot)?;
        let mut contents = Vec::with_capacity(records.len() + CHUNK as usize);
        contents.extend_from_slice(records);
        contents.resize(records.len() + CHUNK as usize, 0);
        // Past this point a failure may come after the rename (the
        // directory fsync, the reopen): our descriptor could then point at
        // the replaced file, and records written there would be lost.
        fsutil::write_atomic(&self.path, &contents, 0o600).map_err(CompactError::Journal)?;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(CompactError::Journal)?;
        self.pos = records.len() as u64;
        self.allocated = contents.len() as u64;
        self.unsynced = false;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Nothing changed: the old journal is still in use and complete.
    #[error("cannot write the snapshot: {0}")]
    Snapshot(io::Error),
    /// The journal may have been replaced under us: not safe to go on.
    #[error("cannot replace the journal: {0}")]
    Journal(io::Error),
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Records that needed no sync of their own (`done`) are made durable
        // on the way out.
        if let Err(e) = self.sync() {
            tracing::error!(
                "cannot sync the delivery journal {}: {e}",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> String {
        let (_, r) = Journal::open(path).unwrap();
        String::from_utf8(r).unwrap()
    }

    #[test]
    fn records_survive_reopen_and_the_file_is_preallocated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        {
            let (mut j, r) = Journal::open(&path).unwrap();
            assert!(r.is_empty());
            for i in 0..100 {
                j.write(format!("{{\"n\":{i}}}\n").as_bytes()).unwrap();
            }
            j.sync().unwrap();
        }
        let text = records(&path);
        assert_eq!(text.lines().count(), 100);
        assert_eq!(text.lines().nth(99), Some("{\"n\":99}"));
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len >= text.len() as u64 + CHUNK / 4, "zeros ahead: {len}");
        // Reopening a clean journal writes nothing.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (mut j, _) = Journal::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        j.write(b"{\"n\":100}\n").unwrap();
        drop(j);
        assert_eq!(records(&path).lines().count(), 101);
    }

    #[test]
    fn growing_past_the_preallocation_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(1000));
        let n = 3 * CHUNK as usize / line.len();
        {
            let (mut j, _) = Journal::open(&path).unwrap();
            for _ in 0..n {
                j.write(line.as_bytes()).unwrap();
            }
        }
        let text = records(&path);
        assert_eq!(text.len(), n * line.len());
        assert!(text.lines().all(|l| l.len() == line.len() - 1));
    }

    #[test]
    fn a_torn_tail_from_an_older_daemon_is_cut_before_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        // Appended without padding, the last line torn by a crash.
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        {
            let (mut j, r) = Journal::open(&path).unwrap();
            assert_eq!(r, b"{\"a\":1}\n");
            j.write(b"{\"c\":3}\n").unwrap();
            j.sync().unwrap();
        }
        assert_eq!(records(&path), "{\"a\":1}\n{\"c\":3}\n");
        // A torn line inside the preallocation is cut too.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = "{\"a\":1}\n{\"c\":3}\n".len();
        bytes[at..at + 4].copy_from_slice(b"{\"d\"");
        std::fs::write(&path, &bytes).unwrap();
        {
            let (mut j, r) = Journal::open(&path).unwrap();
            assert_eq!(r, b"{\"a\":1}\n{\"c\":3}\n");
            j.write(b"{\"e\":5}\n").unwrap();
        }
        assert_eq!(records(&path), "{\"a\":1}\n{\"c\":3}\n{\"e\":5}\n");
    }

    #[test]
    fn compaction_replaces_journal_and_writes_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let snap = dir.path().join("state.json");
        {
            let (mut j, _) = Journal::open(&path).unwrap();
            j.write(b"a\n").unwrap();
            j.compact(b"keep\n", &snap, b"{}").unwrap();
            j.write(b"after\n").unwrap();
        }
        assert_eq!(records(&path), "keep\nafter\n");
        assert_eq!(std::fs::read_to_string(&snap).unwrap(), "{}");
    }

    #[test]
    fn a_failed_snapshot_leaves_the_old_journal_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        // A directory where the snapshot should go: its rename fails.
        let snap = dir.path().join("state.json");
        std::fs::create_dir(&snap).unwrap();
        {
            let (mut j, _) = Journal::open(&path).unwrap();
            j.write(b"a\n").unwrap();
            assert!(matches!(
                j.compact(b"keep\n", &snap, b"{}"),
                Err(CompactError::Snapshot(_))
            ));
            j.write(b"b\n").unwrap();
        }
        assert_eq!(records(&path), "a\nb\n");
    }
}
