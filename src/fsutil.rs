//! Filesystem helpers shared by every writer: atomic replacement with an
//! explicit mode, and a few stat helpers that never follow a symlink we do
//! not expect to follow.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write `contents` to `path` atomically: temp file in the same directory,
/// fsync, rename over the target, fsync the directory. The final file has
/// exactly `mode`, whatever the umask, so a reader never sees a partial file
/// nor a moment where a secret-bearing file is world-readable.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace_via_temp(path, contents, mode, true)
}

/// Replace `path` atomically (temp file + rename, exact mode) without the
/// fsyncs: for files a crash may lose but must never leave half-written
/// (claude's current session, the last spawn's summary). Keeps `fsync` off
/// the path of every wake.
pub fn write_replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace_via_temp(path, contents, mode, false)
}

fn replace_via_temp(path: &Path, contents: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = create_exclusive(&tmp, mode)?;
        f.write_all(contents)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durable { sync_dir(dir) } else { Ok(()) }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new file with exactly `mode` (open() filters the mode by the umask).
fn create_exclusive(path: &Path, mode: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Create `path` with `contents` only if it does not exist yet, atomically
/// (temp file + hard link, which fails rather than replacing). Returns false
/// when the file already existed.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<bool> {
    let dir = parent_dir(path);
    let tmp = dir.join(format!(".new.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = create_exclusive(&tmp, mode)?;
        f.write_all(contents)?;
        f.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => sync_dir(dir).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Create one directory with an exact mode (the parent must exist).
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => set_mode(path, mode),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create a directory and any missing parents; only the leaf gets `mode`,
/// parents get 0755 (they are ordinary directories such as `~/code`).
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        create_dir_all(parent, 0o755)?;
    }
    create_dir(path, mode)
}

pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Permission bits of an lstat result.
pub fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `value` as 2-space JSON, for a file we write. Our own plain types
/// always encode; if one ever did not, writing an empty file instead (an
/// empty inventory, identity or MCP config) would be acted on as if it were
/// the truth, so this stops loudly instead.
pub fn json_pretty<T: serde::Serialize + ?Sized>(what: &str, value: &T) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| panic!("cannot encode {what} as JSON (a bug): {e}"))
}

/// Expand a leading `~` or `~/` against `home`. Other paths are returned as is.
pub fn expand_tilde(raw: &str, home: &Path) -> PathBuf {
    if raw == "~" {
        home.to_path_buf()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(raw)
    }
}

/// Show a path with the home directory abbreviated to `~`, so output is the
/// same on every machine and in every temporary test home.
pub fn display_path(path: &Path, home: &Path) -> String {
    match path.strip_prefix(home) {
        Ok(rest) if rest.as_os_str().is_empty() => "~".to_string(),
        Ok(rest) => format!("~/{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&fs::metadata(&p).unwrap()), 0o600);
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&fs::metadata(&p).unwrap()), 0o644);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    /// A value that cannot be encoded stops loudly: an empty file written
    /// instead (an empty inventory or identity) would be acted on as truth.
    #[test]
    #[should_panic(expected = "cannot encode inventory.json")]
    fn json_that_cannot_be_encoded_is_never_written_as_empty() {
        struct Broken;
        impl serde::Serialize for Broken {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("broken"))
            }
        }
        json_pretty("inventory.json", &Broken);
    }

    #[test]
    fn tilde_expansion_and_display() {
        let home = Path::new("/home/u");
        assert_eq!(expand_tilde("~/code", home), PathBuf::from("/home/u/code"));
        assert_eq!(expand_tilde("~", home), PathBuf::from("/home/u"));
        assert_eq!(expand_tilde("/abs", home), PathBuf::from("/abs"));
        assert_eq!(display_path(Path::new("/home/u/x/y"), home), "~/x/y");
        assert_eq!(display_path(Path::new("/etc/x"), home), "/etc/x");
    }
}
