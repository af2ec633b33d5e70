//! Reading the machine: the state of every path a target or an inventory
//! names, and the inventories themselves. The only IO of a plan.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::inventory::Inventory;
use super::model::{Seen, Want};
use super::target::{ServiceWant, Target};
use crate::fsutil::mode_of;
use crate::paths::{Home, ProfileName, ProfilePaths};

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub paths: HashMap<PathBuf, Seen>,
    /// Every profile that has an inventory on disk, or is in the target.
    pub profiles: BTreeMap<ProfileName, ObservedProfile>,
}

#[derive(Debug, Clone)]
pub struct ObservedProfile {
    pub paths: ProfilePaths,
    pub inventory: Result<Option<Inventory>, String>,
}

impl Observed {
    pub fn seen(&self, path: &Path) -> &Seen {
        self.paths.get(path).unwrap_or(&Seen::Missing)
    }
}

pub fn observe(target: &Target, home: &Home) -> Observed {
    let mut profiles = BTreeMap::new();
    for name in profiles_with_inventory(home)
        .into_iter()
        .chain(target.profiles.keys().cloned())
    {
        profiles.entry(name.clone()).or_insert_with(|| {
            let paths = home.profile(&name);
            let inventory = Inventory::read(&paths.inventory_file());
            ObservedProfile { paths, inventory }
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
            wanted.push((at.cwd_override.clone(), false));
        }
        if let ServiceWant::Unit(u) = &pt.service {
            wanted.push((u.path.clone(), true));
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

    let mut paths = HashMap::with_capacity(wanted.len());
    for (path, read) in wanted {
        let seen = lstat(&path, read);
        // A path wanted twice keeps the reading that has the content.
        match paths.get(&path) {
            Some(Seen::File {
                content: Some(_), ..
            }) => {}
            _ => {
                paths.insert(path, seen);
            }
        }
    }
    Observed { paths, profiles }
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
