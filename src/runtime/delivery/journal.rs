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
/// Zeros written from here, a piece at a time. Small on purpose: write(2)
/// reads the whole source, and a source as large as the chunk would fault
/// a whole chunk of the binary's read-only data into the daemon's resident
/// memory (and make the binary that much larger).
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Write `len` zeros at `at`.
fn write_zeros(file: &File, mut at: u64, len: u64) -> io::Result<()> {
    let end = at + len;
    while at < end {
        let n = (end - at).min(ZEROS.len() as u64);
        file.write_all_at(&ZEROS[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Where the next record goes: the end of the records.
    pos: u64,
    /// The file's length; everything from `pos` to here is zeros.
    allocated: u64,
    /// Records before this offset are durable.
    synced_to: u64,
    /// Bumped when the file is replaced by a compaction: a handle taken
    /// before refers to the old file.
    epoch: u64,
}

/// What syncing the journal outside its owner's lock needs (see
/// [`Journal::sync_handle`]).
pub struct SyncHandle {
    file: File,
    upto: u64,
    epoch: u64,
}

impl SyncHandle {
    pub fn sync(self) -> io::Result<Self> {
        self.file.sync_data()?;
        Ok(self)
    }
}

/// A compacted journal being written next to the live one (see
/// [`Journal::start_rewrite`]).
pub struct Rewrite {
    tmp: PathBuf,
    file: File,
    /// Bytes of records written to it.
    len: u64,
    /// They stand for the live journal's records before this offset.
    from: u64,
    epoch: u64,
}

impl Drop for Rewrite {
    fn drop(&mut self) {
        // Not installed (failed, or stale): nothing must be left over.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Journal {
    /// Open (or create) the journal and return it with its records: the
    /// complete lines before the first NUL. A torn last line (written, never
    /// synced, so never acknowledged) is cut off so the next record does not
    /// glue onto it.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<u8>)> {
        remove_stale_rewrites(path);
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
            synced_to: end as u64,
            epoch: 0,
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
            // Grow by a chunk of zeros right after the record (written
            // separately: a large record is not copied to append them).
            self.file.write_all_at(record, self.pos)?;
            write_zeros(&self.file, end, CHUNK)?;
            self.allocated = self.allocated.max(end + CHUNK);
        }
        self.pos = end;
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
        if self.pos > self.synced_to {
            self.file.sync_data()?;
            self.synced_to = self.pos;
        }
        Ok(())
    }

    /// A handle to make the records written so far durable without holding
    /// whatever guards this journal (its fdatasync then delays nobody);
    /// report it back with [`Journal::mark_synced`]. None when all is
    /// durable already.
    pub fn sync_handle(&self) -> io::Result<Option<SyncHandle>> {
        if self.pos <= self.synced_to {
            return Ok(None);
        }
        Ok(Some(SyncHandle {
            file: self.file.try_clone()?,
            upto: self.pos,
            epoch: self.epoch,
        }))
    }

    pub fn mark_synced(&mut self, h: &SyncHandle) {
        if h.epoch == self.epoch {
            self.synced_to = self.synced_to.max(h.upto);
        }
    }

    /// Bytes of the file a power cut cannot take back (for tests that
    /// simulate one).
    #[cfg(test)]
    pub fn durable_len(&self) -> u64 {
        self.synced_to
    }

    /// Where the next record goes, and the file's generation.
    pub fn position(&self) -> (u64, u64) {
        (self.pos, self.epoch)
    }

    /// A second descriptor on the journal, to read payloads from outside
    /// its owner's lock.
    pub fn reader(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Write `records` (which stand for the live journal's records before
    /// `from`) to a new file next to `path`, durably. Needs no access to
    /// the live journal: runs outside its owner's lock.
    pub fn start_rewrite(
        path: &Path,
        records: &[u8],
        from: u64,
        epoch: u64,
    ) -> io::Result<Rewrite> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = fsutil::parent_dir(path)
            .join(format!(".{name}.compact-{}", uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let rewrite = Rewrite {
            tmp,
            file,
            len: records.len() as u64,
            from,
            epoch,
        };
        rewrite.file.write_all_at(records, 0)?;
        write_zeros(&rewrite.file, records.len() as u64, CHUNK)?;
        rewrite.file.sync_data()?;
        Ok(rewrite)
    }

    /// Install a rewrite: the records written since it started are copied
    /// over, the new file replaces the journal and is used from now on.
    /// Returns where the records written since the rewrite started were
    /// (`.0`) and are now (`.1`).
    pub fn finish_rewrite(&mut self, rw: Rewrite) -> Result<(u64, u64), CompactError> {
        if rw.epoch != self.epoch || rw.from > self.pos {
            return Err(CompactError::Stale);
        }
        let tail = self
            .read_at(rw.from, (self.pos - rw.from) as usize)
            .map_err(CompactError::Snapshot)?;
        rw.file
            .write_all_at(&tail, rw.len)
            .and_then(|()| rw.file.sync_data())
            .map_err(CompactError::Snapshot)?;
        std::fs::rename(&rw.tmp, &self.path).map_err(CompactError::Snapshot)?;
        // Renamed: from here the journal is the new file, whatever happens.
        let file = rw.file.try_clone().map_err(CompactError::Journal)?;
        self.file = file;
        self.pos = rw.len + tail.len() as u64;
        self.allocated = self.file.metadata().map_err(CompactError::Journal)?.len();
        self.synced_to = self.pos;
        self.epoch += 1;
        fsutil::sync_dir(fsutil::parent_dir(&self.path)).map_err(CompactError::Journal)?;
        Ok((rw.from, rw.len))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Nothing changed: the old journal is still in use and complete.
    #[error("cannot write the snapshot or the new journal: {0}")]
    Snapshot(io::Error),
    /// The journal changed under the rewrite (another compaction): it is
    /// dropped, nothing changed.
    #[error("the journal was replaced while it was being compacted")]
    Stale,
    /// The journal may have been replaced under us: not safe to go on.
    #[error("cannot replace the journal: {0}")]
    Journal(io::Error),
}

/// A compaction cut short by a crash leaves its new journal next to the
/// live one; the live one is complete, so the leftover is only removed.
fn remove_stale_rewrites(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.compact-");
    let Ok(entries) = std::fs::read_dir(fsutil::parent_dir(path)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
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
    fn a_rewrite_keeps_the_records_written_while_it_ran() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        {
            let (mut j, _) = Journal::open(&path).unwrap();
            j.write(b"old1\n").unwrap();
            j.write(b"old2\n").unwrap();
            let (from, epoch) = j.position();
            let rw = Journal::start_rewrite(&path, b"kept\n", from, epoch).unwrap();
            let at = j.write(b"during\n").unwrap();
            let (was, now) = j.finish_rewrite(rw).unwrap();
            assert_eq!((was, now), (from, 5));
            assert_eq!(j.read_at(at - was + now, 6).unwrap(), b"during");
            j.write(b"after\n").unwrap();
            // A second rewrite started before the first was installed is
            // stale, and leaves nothing behind.
            let stale = Journal::start_rewrite(&path, b"x\n", from, epoch).unwrap();
            assert!(matches!(j.finish_rewrite(stale), Err(CompactError::Stale)));
        }
        assert_eq!(records(&path), "kept\nduring\nafter\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }

    #[test]
    fn a_sync_handle_makes_records_durable_outside_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(&dir.path().join("j")).unwrap();
        assert!(j.sync_handle().unwrap().is_none());
        j.write(b"a\n").unwrap();
        let h = j.sync_handle().unwrap().unwrap().sync().unwrap();
        j.write(b"b\n").unwrap();
        j.mark_synced(&h);
        assert_eq!(j.synced_to, 2, "only what the handle covered");
        j.sync().unwrap();
        assert!(j.sync_handle().unwrap().is_none());
    }
}
