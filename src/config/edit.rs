//! Editing `cloudagent.toml` for the imperative commands (`login`, `agent
//! register`, `install-service`, ...): the user's comments, key order and
//! formatting are kept (toml_edit), the result is checked like any config
//! before it is written, and the change is shown as a diff. A file that is
//! a symlink (e.g. into a nix store) or read-only is managed elsewhere: it
//! is never written, and the command prints the TOML to add to its source
//! instead (README, "Commands that edit the file").

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::fsutil;
use crate::paths::Home;

/// The first line of a file this program creates: editors that know
/// `#:schema` (taplo, Even Better TOML) then complete and check every key.
pub const SCHEMA_FILE: &str = "cloudagent.schema.json";

/// Who may write the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Ours to edit, with the mode it has.
    Writable { mode: u32 },
    /// No file yet: the edit creates it.
    Missing,
    /// A symlink or a read-only file: someone else generates it.
    Managed(String),
}

/// An open config file and the edits made to it in memory.
pub struct ConfigFile {
    pub path: PathBuf,
    pub access: Access,
    original: String,
    doc: DocumentMut,
    /// Tables the edits touched, for the snippet of a managed file.
    touched: Vec<Vec<String>>,
    /// Tables the edits removed (dotted), for the same.
    removed: Vec<String>,
}

impl ConfigFile {
    pub fn open(path: &Path) -> Result<Self, String> {
        let access = access(path);
        let original = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let doc = original.parse::<DocumentMut>().map_err(|e| {
            format!(
                "cannot edit {}: it is not valid TOML ({}); fix it first (`cloudagent-daemon plan` shows where)",
                path.display(),
                e.message().trim()
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            access,
            original,
            doc,
            touched: Vec::new(),
            removed: Vec::new(),
        })
    }

    /// The text as edited; a new file starts with its `#:schema` line.
    pub fn text(&self) -> String {
        let body = self.doc.to_string();
        if self.access == Access::Missing {
            let body = body.trim_start_matches('\n');
            format!(
                "#:schema ./{SCHEMA_FILE}\n# Written by cloudagent-daemon; edit freely (comments and order are kept).\n\n{body}"
            )
        } else {
            body
        }
    }

    /// The text as it was read (empty for a missing file).
    pub fn original(&self) -> &str {
        &self.original
    }

    pub fn changed(&self) -> bool {
        self.text() != self.original
    }

    /// The change as a unified diff with a `---`/`+++` header.
    pub fn diff(&self, home: &Home) -> String {
        let shown = fsutil::display_path(&self.path, &home.home);
        let old = if self.access == Access::Missing {
            "/dev/null".to_string()
        } else {
            shown.clone()
        };
        let hunks = crate::reconcile::file_diff::unified_diff(&self.original, &self.text());
        format!("--- {old}\n+++ {shown}\n{hunks}")
    }

    /// The table at `path`, created (with implicit parents) when missing.
    pub fn table(&mut self, path: &[&str]) -> Result<&mut Table, String> {
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        if !self.touched.contains(&owned) {
            self.touched.push(owned);
        }
        let non_empty = !self.doc.as_table().is_empty();
        let mut t = self.doc.as_table_mut();
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let item = t.entry(seg).or_insert_with(|| {
                let mut nt = Table::new();
                nt.set_implicit(!last);
                if last && non_empty {
                    nt.decor_mut().set_prefix("\n");
                }
                Item::Table(nt)
            });
            t = item.as_table_mut().ok_or_else(|| {
                format!(
                    "cannot edit [{}]: it is written as an inline table or a value; write it as a [table] section first",
                    path[..=i].join(".")
                )
            })?;
        }
        Ok(t)
    }

    /// Does the table at `path` exist?
    pub fn has_table(&self, path: &[&str]) -> bool {
        self.get_table(path).is_some()
    }

    pub fn get_table(&self, path: &[&str]) -> Option<&Table> {
        let mut t = self.doc.as_table();
        for seg in path {
            t = t.get(seg)?.as_table()?;
        }
        Some(t)
    }

    /// Remove the table at `path`; false when there was none.
    pub fn remove_table(&mut self, path: &[&str]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut t = self.doc.as_table_mut();
        for seg in parents {
            match t.get_mut(seg).and_then(Item::as_table_mut) {
                Some(next) => t = next,
                None => return false,
            }
        }
        let gone = t.remove(last).is_some();
        if gone {
            self.removed.push(path.join("."));
        }
        gone
    }

    /// The servers declared, as (name, url) pairs.
    pub fn servers(&self) -> Vec<(String, String)> {
        self.get_table(&["servers"])
            .map(|t| {
                t.iter()
                    .filter_map(|(name, item)| {
                        let url = item.get("url")?.as_str()?;
                        Some((name.to_string(), url.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What to add to the source of a file managed elsewhere: the tables
    /// the edits touched, with their keys as edited, and the tables to
    /// remove.
    pub fn snippet(&self) -> String {
        let mut out = DocumentMut::new();
        for path in &self.touched {
            let segs: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some(src) = self.get_table(&segs) else {
                continue;
            };
            let mut dst = out.as_table_mut();
            for (i, seg) in segs.iter().enumerate() {
                let item = dst.entry(seg).or_insert_with(|| {
                    let mut nt = Table::new();
                    nt.set_implicit(true);
                    Item::Table(nt)
                });
                let Some(next) = item.as_table_mut() else {
                    break;
                };
                if i + 1 == segs.len() {
                    next.set_implicit(false);
                    for (k, v) in src.iter().filter(|(_, v)| !v.is_table()) {
                        next.insert(k, v.clone());
                    }
                }
                dst = next;
            }
        }
        let mut text = out.to_string();
        for r in &self.removed {
            text.push_str(&format!(
                "# remove the table [{r}] and everything under it\n"
            ));
        }
        text
    }

    /// Write the edited file atomically, with the mode it had (0600 for a
    /// new one). A new file gets the schema beside it for its `#:schema`
    /// line.
    pub fn save(&self) -> io::Result<()> {
        let mode = match self.access {
            Access::Writable { mode } => mode,
            Access::Missing => 0o600,
            Access::Managed(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the file is managed elsewhere",
                ));
            }
        };
        if self.access == Access::Missing {
            let dir = fsutil::parent_dir(&self.path);
            fsutil::create_dir_all(dir, 0o700)?;
            fsutil::write_atomic(
                &dir.join(SCHEMA_FILE),
                super::schema_json().as_bytes(),
                0o644,
            )?;
        }
        fsutil::write_atomic(&self.path, self.text().as_bytes(), mode)
    }
}

impl ConfigFile {
    /// The `[servers]` entry for `url` (normalised): the one already
    /// declaring it, else a new one named after the host. Returns its name.
    pub fn server_for(&mut self, url: &str) -> Result<String, String> {
        let same = |u: &str| super::server_url::normalize(u).is_ok_and(|n| n == url);
        let servers = self.servers();
        if let Some((name, _)) = servers.iter().find(|(_, u)| same(u)) {
            let name = name.clone();
            self.table(&["servers", &name])?;
            return Ok(name);
        }
        let base = server_name(url);
        let taken =
            |n: &str| servers.iter().any(|(s, _)| s == n) || self.has_table(&["servers", n]);
        let name = std::iter::once(base.clone())
            .chain((2..).map(|i| format!("{base}-{i}")))
            .find(|n| !taken(n))
            .unwrap_or(base);
        set(self.table(&["servers", &name])?, "url", url);
        Ok(name)
    }

    /// Point `profile` at `server` and at the key in `key_file` (shown as
    /// written to the file, e.g. `~/.config/cloudagent/default.key`); any
    /// other way of giving the key is removed (only one is allowed).
    pub fn set_profile_key(
        &mut self,
        profile: &str,
        server: &str,
        key_file: &str,
    ) -> Result<(), String> {
        let t = self.table(&["profiles", profile])?;
        set(t, "server", server);
        t.remove("api_key");
        t.remove("api_key_env");
        set(t, "api_key_file", key_file);
        Ok(())
    }
}

/// A readable `[servers]` name for a URL: `https://api.cloudagent.chat` →
/// `cloudagent`, `https://api-fr.cloudagent.chat` → `fr`, a loopback
/// address → `local`.
pub fn server_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = super::server_url::host_of(rest);
    if super::server_url::is_loopback(host) {
        return "local".into();
    }
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let labels: Vec<&str> = host.split('.').collect();
    let first = match labels.as_slice() {
        _ if is_ip => host,
        [a, b, _, ..] if matches!(*a, "api" | "www") => b,
        [a, ..] => a.strip_prefix("api-").unwrap_or(a),
        [] => host,
    };
    let name: String = first
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "server".into()
    } else {
        name
    }
}

/// Set `key` to `value`, keeping the comment and spacing around an old
/// value (toml_edit drops them on assignment); an equal value is left as
/// written.
pub fn set(table: &mut Table, key: &str, value: impl Into<Value>) {
    let mut value: Value = value.into();
    if let Some(Item::Value(old)) = table.get(key) {
        if same(old, &value) {
            return;
        }
        *value.decor_mut() = old.decor().clone();
    }
    table.insert(key, Item::Value(value));
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.value() == y.value(),
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        _ => false,
    }
}

/// Whether the file may be edited: a symlink (a nix store, a dotfiles
/// manager) or a file or directory without write permission for us is
/// someone else's.
pub fn access(path: &Path) -> Access {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Access::Missing,
    };
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Access::Managed(format!("it is a symlink (to {to})"));
    }
    let writable = |p: &Path| {
        rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_ok()
            && std::fs::symlink_metadata(p).is_ok_and(|m| m.permissions().mode() & 0o222 != 0)
    };
    if !writable(path) {
        return Access::Managed("it is read-only".into());
    }
    if !writable(fsutil::parent_dir(path)) {
        return Access::Managed("its directory is read-only".into());
    }
    Access::Writable {
        mode: fsutil::mode_of(&meta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMENTED: &str = "# my servers\n[servers.prod]\nurl = \"https://a\" # the old one\n\n# default profile\n[profiles.default]\nserver = \"prod\"\napi_key_file = \"~/k\"\n";

    fn open(text: &str) -> (tempfile::TempDir, ConfigFile) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let f = ConfigFile::open(&p).unwrap();
        (dir, f)
    }

    #[test]
    fn edits_keep_comments_and_the_comment_after_a_replaced_value() {
        let (_d, mut f) = open(COMMENTED);
        let t = f.table(&["servers", "prod"]).unwrap();
        set(t, "url", "https://b");
        let a = f.table(&["profiles", "default", "agents", "x"]).unwrap();
        set(a, "name", "X");
        let text = f.text();
        assert_eq!(
            text,
            "# my servers\n[servers.prod]\nurl = \"https://b\" # the old one\n\n# default profile\n[profiles.default]\nserver = \"prod\"\napi_key_file = \"~/k\"\n\n[profiles.default.agents.x]\nname = \"X\"\n"
        );
    }

    #[test]
    fn server_names_are_readable() {
        assert_eq!(server_name("https://api.cloudagent.chat"), "cloudagent");
        assert_eq!(server_name("https://api-fr.cloudagent.chat"), "fr");
        assert_eq!(server_name("http://127.0.0.1:8080"), "local");
        assert_eq!(server_name("https://10.0.0.2"), "10-0-0-2");
        assert_eq!(server_name("https://backend.example.org/x"), "backend");
    }

    #[test]
    fn a_declared_url_is_reused_and_a_taken_name_gets_a_suffix() {
        let (_d, mut f) = open("[servers.cloudagent]\nurl = \"https://api.cloudagent.chat/v1\"\n");
        assert_eq!(
            f.server_for("https://api.cloudagent.chat").unwrap(),
            "cloudagent"
        );
        assert!(!f.changed());
        assert_eq!(
            f.server_for("https://www.cloudagent.io").unwrap(),
            "cloudagent-2"
        );
    }

    #[test]
    fn an_equal_value_is_left_as_written() {
        let (_d, mut f) = open("[servers.prod]\nurl = 'https://a'   # c\n");
        set(f.table(&["servers", "prod"]).unwrap(), "url", "https://a");
        assert!(!f.changed());
    }

    #[test]
    fn a_new_file_starts_with_the_schema_line_and_snippets_name_the_tables() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = ConfigFile::open(&dir.path().join("new.toml")).unwrap();
        assert_eq!(f.access, Access::Missing);
        set(f.table(&["profiles", "fr"]).unwrap(), "server", "x");
        assert!(f.text().starts_with("#:schema ./cloudagent.schema.json\n"));
        assert!(f.text().ends_with("[profiles.fr]\nserver = \"x\"\n"));
        assert_eq!(f.snippet(), "[profiles.fr]\nserver = \"x\"\n");
    }

    #[test]
    fn symlinks_and_read_only_files_are_managed_elsewhere() {
        let (d, f) = open(COMMENTED);
        let link = d.path().join("link.toml");
        std::os::unix::fs::symlink(&f.path, &link).unwrap();
        assert!(matches!(access(&link), Access::Managed(m) if m.contains("symlink")));
        fsutil::set_mode(&f.path, 0o444).unwrap();
        assert!(matches!(access(&f.path), Access::Managed(_)));
    }
}
