//! The reconciler's vocabulary: what a path should be (`Want`), what it is
//! (`Seen`), and the resources that group paths into things a user thinks
//! about (a profile's directories, an agent's workspace, a service unit).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::paths::ProfileName;
use crate::service::Platform;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Profile,
    Agent,
    Service,
}

/// A resource's address, e.g. `agent "default/agent_x"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourceId {
    pub kind: Kind,
    pub profile: ProfileName,
    /// Agent id for agents; empty for profile and service resources.
    pub name: String,
}

impl ResourceId {
    pub fn profile(p: &ProfileName) -> Self {
        Self {
            kind: Kind::Profile,
            profile: p.clone(),
            name: String::new(),
        }
    }
    pub fn agent(p: &ProfileName, id: &str) -> Self {
        Self {
            kind: Kind::Agent,
            profile: p.clone(),
            name: id.to_string(),
        }
    }
    pub fn service(p: &ProfileName) -> Self {
        Self {
            kind: Kind::Service,
            profile: p.clone(),
            name: String::new(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Profile => write!(f, "profile \"{}\"", self.profile),
            Kind::Agent => write!(f, "agent \"{}/{}\"", self.profile, self.name),
            Kind::Service => write!(f, "service \"{}\"", self.profile),
        }
    }
}

/// How a file's content is shown in plan output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Plain,
    /// A service unit: environment values other than known-public ones are
    /// masked.
    Unit(Platform),
}

/// What a path should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// A directory.
    Dir { mode: DirMode },
    File {
        content: String,
        mode: u32,
        /// Written only when absent, never updated (MEMORY.md).
        create_only: bool,
        display: Display,
    },
}

/// How a directory's mode is managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirMode {
    /// Ours: created with this mode, and drift is repaired.
    Exact(u32),
    /// Someone else's (a `workdir` the user declared, or one the server
    /// chose): created with this mode if missing, its mode never touched.
    OnCreate(u32),
}

impl DirMode {
    pub fn bits(self) -> u32 {
        match self {
            Self::Exact(m) | Self::OnCreate(m) => m,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub want: Want,
}

/// A service unit a profile should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitTarget {
    pub platform: Platform,
    /// Name the manager knows it by.
    pub name: String,
    pub path: PathBuf,
    pub content: String,
    pub mode: u32,
}

/// What a path is, as observed (lstat; symlinks are not followed except to
/// learn whether they point at a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Missing,
    Dir {
        mode: u32,
    },
    /// `content` is read only for files whose content matters.
    File {
        mode: u32,
        content: Option<Vec<u8>>,
    },
    Symlink {
        target: PathBuf,
        to_dir: bool,
    },
    Other,
}

impl Seen {
    pub fn describe(&self) -> &'static str {
        match self {
            Seen::Missing => "missing",
            Seen::Dir { .. } => "a directory",
            Seen::File { .. } => "a file",
            Seen::Symlink { .. } => "a symlink",
            Seen::Other => "a special file",
        }
    }
}
