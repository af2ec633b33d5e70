//! Reading the machine: the state of every path a target or an inventory
//! names, and the inventories themselves. The only IO of a plan.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::inventory::Inventory;
use super::model::{Seen, Want};
use super::target::{ServiceWant, Target};
use crate::fsutil::mode_of;
use crate::paths::{Home, ProfileName, ProfilePaths};

/// Paths by their bytes.
pub type PathMap<V> = foldhash::HashMap<OsString, V>;

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Keyed by the path's bytes: std's `Path` hash and equality walk its
    /// components, which was a third of a 1,000-agent plan. Every path is
    /// built by the same joins, so bytes identify it. foldhash, not SipHash:
    /// these keys are our own paths, not hostile input.
    pub paths: PathMap<Seen>,
    /// Every profile that has an inventory on disk, or is in the target.
    pub profiles: BTreeMap<ProfileName, ObservedProfile>,
}

#[derive(Debug, Clone)]
pub struct ObservedProfile {
    pub paths: ProfilePaths,
    /// Only the entries that pass `Inventory::keep_managed`.
    pub inventory: Result<Option<Inventory>, String>,
    /// One line per inventory entry that was dropped as not ours.
    pub rejected: Vec<String>,
    /// Agents the server assigned (recorded by the running daemon).
    pub assigned: BTreeSet<String>,
    /// Their identities, where readable (for `plan`'s adoption snippets).
    pub assigned_identities: BTreeMap<String, crate::workspace::Identity>,
    /// Workspaces under the agents root that the file does not declare
    /// (server-assigned, or left by the original daemon) and that have a
    /// `.meta/`: their MCP config is kept pointing at this binary.
    pub undeclared: BTreeSet<crate::paths::AgentId>,
}

/// Directories under the agents root that are agent workspaces (a valid id,
/// a real `.meta/` directory) and not in `declared`.
fn undeclared_workspaces(
    paths: &ProfilePaths,
    declared: Option<&BTreeMap<String, super::target::AgentTarget>>,
) -> BTreeSet<crate::paths::AgentId> {
    let Some(declared) = declared else {
        return BTreeSet::new();
    };
    fs::read_dir(&paths.agents_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| crate::paths::AgentId::parse(e.file_name().to_str()?).ok())
        .filter(|id| !declared.contains_key(id.as_str()))
        .filter(|id| {
            fs::symlink_metadata(paths.agent_dir(id).join(".meta")).is_ok_and(|m| m.is_dir())
        })
        .collect()
}

/// The identity files of `agents` that parse (the daemon wrote them from
/// the server's `assign`).
fn read_identities(
    paths: &ProfilePaths,
    agents: &BTreeSet<String>,
) -> BTreeMap<String, crate::workspace::Identity> {
    use crate::workspace::{AgentLayout, Identity};
    agents
        .iter()
        .filter_map(|id| {
            let layout = AgentLayout {
                dir: paths.agents_root.join(id),
            };
            Some((id.clone(), Identity::read(&layout.identity())?))
        })
        .collect()
}

impl Observed {
    pub fn seen(&self, path: &Path) -> &Seen {
        self.paths.get(path.as_os_str()).unwrap_or(&Seen::Missing)
    }
}

/// `discover`: also read the inventories of profiles the target does not
/// have (they may have to be pruned); a single-profile reconciliation skips
/// that.
pub fn observe(target: &Target, home: &Home, discover: bool) -> Observed {
    let mut profiles = BTreeMap::new();
    let others = if discover {
        profiles_with_inventory(home)
    } else {
        Vec::new()
    };
    for name in others.into_iter().chain(target.profiles.keys().cloned()) {
        profiles.entry(name.clone()).or_insert_with(|| {
            let paths = home.profile(&name);
            let file = paths.inventory_file();
            let mut inventory = Inventory::read(&file);
            let rejected = match &mut inventory {
                Ok(Some(inv)) => inv.keep_managed(&name, &paths, &file),
                _ => Vec::new(),
            };
            let assigned = crate::workspace::assigned::read(&paths.assigned_agents_file());
            let assigned_identities = read_identities(&paths, &assigned);
            let undeclared =
                undeclared_workspaces(&paths, target.profiles.get(&name).map(|p| &p.agents));
            ObservedProfile {
                paths,
                inventory,
                rejected,
                assigned,
                assigned_identities,
                undeclared,
            }
        });
    }

    let mut wanted: Vec<(PathBuf, bool)> = Vec::new();
    for pt in target.profiles.values() {
        for e in &pt.dirs {
            wanted.push((e.path.clone(), false));
        }
        for at in pt.agents.values() {
            for e in &at.entries {
                let read = matches!(
                    &e.want,
                    Want::File {
                        create_only: false,
                        ..
                    }
                );
                wanted.push((e.path.clone(), read));
            }
            // The override file matters when wanted (it is an entry) or
            // when a recorded one may have to be pruned.
            if !at.wants_cwd_override {
                let recorded = profiles
                    .get(&pt.name)
                    .and_then(|op| op.inventory.as_ref().ok().and_then(Option::as_ref))
                    .is_some_and(|inv| inv.files.contains(&at.cwd_override));
                if recorded {
                    wanted.push((at.cwd_override.clone(), false));
                }
            }
        }
        if let ServiceWant::Unit(u) = &pt.service {
            wanted.push((u.path.clone(), true));
        }
        for id in profiles
            .get(&pt.name)
            .map(|o| &o.undeclared)
            .into_iter()
            .flatten()
        {
            let e = super::target::undeclared_mcp_entry(pt, id);
            wanted.push((e.path, true));
        }
    }
    for op in profiles.values() {
        if let Ok(Some(inv)) = &op.inventory {
            for id in &inv.agents {
                wanted.push((op.paths.agents_root.join(id), false));
            }
            for f in &inv.files {
                wanted.push((f.clone(), false));
            }
            if let Some(s) = &inv.service {
                wanted.push((s.path.clone(), false));
            }
        }
    }

    Observed {
        paths: observe_paths(wanted),
        profiles,
    }
}

/// lstat (and read, where asked) many paths. Paths are grouped by parent
/// directory, each parent is opened once and its entries looked up relative
/// to it, and groups are spread over a few threads: a plan of a thousand
/// agents is mostly kernel path walks, and this cuts them to one component.
pub(crate) fn observe_paths(wanted: Vec<(PathBuf, bool)>) -> PathMap<Seen> {
    // A path wanted twice is read if any asks for its content.
    let mut unique: PathMap<bool> =
        PathMap::with_capacity_and_hasher(wanted.len(), Default::default());
    for (path, read) in wanted {
        *unique.entry(path.into_os_string()).or_default() |= read;
    }
    let mut groups: PathMap<Vec<(PathBuf, bool)>> = PathMap::default();
    for (path, read) in unique {
        let path = PathBuf::from(path);
        let parent = path.parent().map(Path::as_os_str).unwrap_or_default();
        groups
            .entry(parent.to_os_string())
            .or_default()
            .push((path, read));
    }
    let groups: Vec<(PathBuf, Vec<(PathBuf, bool)>)> = groups
        .into_iter()
        .map(|(parent, items)| (PathBuf::from(parent), items))
        .collect();
    // Threads pay off for thousands of paths (a whole config), not for the
    // handful of one workspace the daemon checks before a wake.
    let total: usize = groups.iter().map(|(_, items)| items.len()).sum();
    if total < 512 {
        let mut out = Vec::with_capacity(total);
        for (parent, items) in &groups {
            observe_group(parent, items, &mut out);
        }
        return out
            .into_iter()
            .map(|(p, seen)| (p.into_os_string(), seen))
            .collect();
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let chunk = groups.len().div_ceil(threads).max(1);
    let mut paths = PathMap::with_capacity_and_hasher(total, Default::default());
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (parent, items) in chunk {
                        observe_group(parent, items, &mut out);
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            // A panicked worker is a bug. Its paths must not read as
            // "missing" (apply would then overwrite files that exist):
            // pass the panic on.
            let seen = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            paths.extend(seen.into_iter().map(|(p, seen)| (p.into_os_string(), seen)));
        }
    });
    paths
}

fn observe_group(parent: &Path, items: &[(PathBuf, bool)], out: &mut Vec<(PathBuf, Seen)>) {
    let dir = match crate::platform::open_dir_for_lookup(parent) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => {
            out.extend(items.iter().map(|(p, _)| (p.clone(), Seen::Missing)));
            return;
        }
        Err(_) => {
            out.extend(items.iter().map(|(p, read)| (p.clone(), lstat(p, *read))));
            return;
        }
    };
    for (path, read) in items {
        let seen = match path.file_name() {
            Some(name) => lstat_at(&dir, name, *read),
            None => lstat(path, *read),
        };
        out.push((path.clone(), seen));
    }
}

/// `st_mode` is u32 on Linux and u16 on macOS.
fn perm_bits(mode: impl Into<u32>) -> u32 {
    mode.into() & 0o7777
}

/// Read a file we already fstat'ed (std's read_to_end would stat it again).
fn read_all(fd: &rustix::fd::OwnedFd, size_hint: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size_hint + 1];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match rustix::io::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

fn lstat_at(dir: &rustix::fd::OwnedFd, name: &std::ffi::OsStr, read: bool) -> Seen {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    if read {
        // open + fstat: one lookup instead of two for the files we read.
        match rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let Ok(st) = rustix::fs::fstat(&fd) else {
                    return Seen::Other;
                };
                let mode = perm_bits(st.st_mode);
                return match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => match read_all(&fd, st.st_size.max(0) as usize) {
                        Ok(content) => Seen::File {
                            mode,
                            content: Some(content),
                        },
                        Err(_) => Seen::Other,
                    },
                    FileType::Directory => Seen::Dir { mode },
                    _ => Seen::Other,
                };
            }
            Err(rustix::io::Errno::NOENT) => return Seen::Missing,
            // ELOOP: a symlink; fall through to describe it.
            Err(_) => {}
        }
    }
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Seen::Missing,
        Err(_) => return Seen::Other,
    };
    let mode = perm_bits(st.st_mode);
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Seen::Dir { mode },
        FileType::RegularFile => Seen::File {
            mode,
            content: None,
        },
        FileType::Symlink => Seen::Symlink {
            target: rustix::fs::readlinkat(dir, name, Vec::new())
                .map(|t| {
                    PathBuf::from(
                        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                            t.into_bytes(),
                        ),
                    )
                })
                .unwrap_or_default(),
            to_dir: rustix::fs::statat(dir, name, AtFlags::empty())
                .is_ok_and(|t| FileType::from_raw_mode(t.st_mode) == FileType::Directory),
        },
        _ => Seen::Other,
    }
}

fn profiles_with_inventory(home: &Home) -> Vec<ProfileName> {
    let mut out = Vec::new();
    let default = ProfileName::default_profile();
    if home.profile(&default).inventory_file().exists() {
        out.push(default);
    }
    if let Ok(entries) = fs::read_dir(home.named_profiles_dir()) {
        for entry in entries.flatten() {
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| ProfileName::parse(n).ok())
            else {
                continue;
            };
            if !name.is_default() && entry.path().join("inventory.json").exists() {
                out.push(name);
            }
        }
    }
    out
}

pub fn lstat(path: &Path, read_content: bool) -> Seen {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Seen::Missing,
        Err(_) => return Seen::Other,
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        Seen::Dir {
            mode: mode_of(&meta),
        }
    } else if ft.is_file() {
        Seen::File {
            mode: mode_of(&meta),
            content: if read_content {
                fs::read(path).ok()
            } else {
                None
            },
        }
    } else if ft.is_symlink() {
        Seen::Symlink {
            target: fs::read_link(path).unwrap_or_default(),
            to_dir: path.is_dir(),
        }
    } else {
        Seen::Other
    }
}
