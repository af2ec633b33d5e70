//! The daemon's log files: `daemon-YYYY-MM-DD.log` (UTC date, the name the
//! original daemon's README gives, README "Logs") in a 0700
//! directory, each created 0600. Our own writer because the rolling
//! appender creates files with the process umask (0644 usually) and has no
//! way to set a mode; a chmod after it created a file would leave a window
//! in which lines are world-readable.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::Datelike;

use crate::fsutil;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Create the log directory 0700, or make an existing one 0700, and make
/// every regular file in it 0600 (files of an older version, or the ones a
/// service manager writes the daemon's stdout and stderr to). Symlinks are
/// left alone.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fsutil::create_dir_all(dir, DIR_MODE)?;
    fsutil::set_mode(dir, DIR_MODE)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_file() && fsutil::mode_of(&meta) != FILE_MODE {
            fsutil::set_mode(&path, FILE_MODE)?;
        }
    }
    Ok(())
}

/// Appends to today's file; the first write of a new (UTC) day opens the
/// next one.
pub struct DailyFile {
    dir: PathBuf,
    day: String,
    file: File,
}

impl DailyFile {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let day = today();
        let file = open_day(dir, &day)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            day,
            file,
        })
    }

    /// Switch to today's file when the day changed. When it cannot be
    /// opened, lines keep going to the previous day's file rather than
    /// being lost.
    fn roll(&mut self) {
        let day = today();
        if day == self.day {
            return;
        }
        if let Ok(file) = open_day(&self.dir, &day) {
            self.file = file;
            self.day = day;
        }
    }
}

impl Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.roll();
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `daemon-YYYY-MM-DD.log`, so `tail -F logs/daemon-*.log` from the
/// original's README follows it. (Versions before this wrote
/// `daemon.YYYY-MM-DD.log`; those files are left as they are.)
fn file_name(day: &str) -> String {
    format!("daemon-{day}.log")
}

fn today() -> String {
    let d = chrono::Utc::now().date_naive();
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// Append-only, created 0600 (and made 0600 if it existed wider); a
/// symlink in its place is refused.
fn open_day(dir: &Path, day: &str) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(file_name(day)))?;
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(FILE_MODE))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_whatever_the_umask_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        fsutil::set_mode(&logs, 0o755).unwrap();
        let old = logs.join(file_name(&today()));
        std::fs::write(&old, "before\n").unwrap();
        fsutil::set_mode(&old, 0o644).unwrap();

        private_dir(&logs).unwrap();
        let mut f = DailyFile::open(&logs).unwrap();
        f.write_all(b"after\n").unwrap();
        drop(f);
        let mode = |p: &Path| fsutil::mode_of(&std::fs::metadata(p).unwrap());
        assert_eq!(mode(&logs), 0o700);
        assert_eq!(mode(&old), 0o600);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "before\nafter\n");
    }

    #[test]
    fn the_file_is_named_as_the_original_readme_says() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DailyFile::open(dir.path()).unwrap();
        f.write_all(b"x\n").unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let d = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(names, [format!("daemon-{d}.log")]);
    }

    #[test]
    fn a_symlink_in_place_of_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(file_name(&today()))).unwrap();
        assert!(DailyFile::open(dir.path()).is_err());
    }
}
