//! Where the backend may make claude run (SECURITY.md, "Working
//! directories"). A per-agent working directory chosen in the backend's UI
//! is a feature, so it is honoured — but only after the checks here, for
//! every way such a path arrives: an `assign` frame's `workspace_root`, the
//! agents of the SSE `/ready` answer, and `.meta/agent_workspace_root` files
//! left by the original daemon. Declared agents' `workdir`s come from the
//! user and are not checked here.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// What a server-provided working directory is checked against.
#[derive(Debug, Clone)]
pub struct WorkdirPolicy<'a> {
    pub home: &'a Path,
    /// The daemon's own directories (`~/.cloudagent`): never a workdir.
    pub own: PathBuf,
    /// The profile's `allowed_workdirs`: when set, only paths under these.
    pub allowed: Option<&'a [PathBuf]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    /// `~user/…`: only `~/` is expanded (as the original does for `~/`).
    OtherUsersHome,
    Relative,
    ParentComponent,
    Root,
    Home,
    OwnDirectory,
    NotAllowed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::OtherUsersHome => "only ~/ is expanded, not ~user",
            Self::Relative => "it is not an absolute path",
            Self::ParentComponent => "it contains a `..` component",
            Self::Root => "it is the root directory",
            Self::Home => "it is the home directory itself",
            Self::OwnDirectory => "it is inside the daemon's own directory ~/.cloudagent",
            Self::NotAllowed => "it is not under any of the profile's allowed_workdirs",
        })
    }
}

impl WorkdirPolicy<'_> {
    /// The normalised path to use, or why not.
    pub fn check(&self, raw: &str) -> Result<PathBuf, Refusal> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Refusal::Empty);
        }
        let expanded = if raw == "~" {
            return Err(Refusal::Home);
        } else if let Some(rest) = raw.strip_prefix("~/") {
            self.home.join(rest)
        } else if raw.starts_with('~') {
            return Err(Refusal::OtherUsersHome);
        } else {
            PathBuf::from(raw)
        };
        let path = normalise(&expanded)?;
        self.check_place(&path)?;
        // A symlink must not lead where the path itself may not be.
        if let Some(real) = resolve_existing(&path)
            && real != path
        {
            self.check_place(&real)?;
        }
        Ok(path)
    }

    fn check_place(&self, path: &Path) -> Result<(), Refusal> {
        if path == Path::new("/") {
            return Err(Refusal::Root);
        }
        if path == self.home {
            return Err(Refusal::Home);
        }
        if path.starts_with(&self.own) {
            return Err(Refusal::OwnDirectory);
        }
        match self.allowed {
            Some(roots) if !roots.iter().any(|r| path.starts_with(r)) => Err(Refusal::NotAllowed),
            _ => Ok(()),
        }
    }
}

/// `path` with its longest existing ancestor's symlinks resolved (the
/// rest does not exist yet, so it cannot be a link).
fn resolve_existing(path: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut cur = path;
    loop {
        if let Ok(real) = cur.canonicalize() {
            return Some(rest.iter().rev().fold(real, |acc: PathBuf, c| acc.join(c)));
        }
        rest.push(cur.file_name()?);
        cur = cur.parent()?;
    }
}

/// Absolute, without `.`, repeated or trailing slashes; `..` refused rather
/// than resolved (resolving it lexically would be wrong across symlinks).
fn normalise(path: &Path) -> Result<PathBuf, Refusal> {
    if !path.is_absolute() {
        return Err(Refusal::Relative);
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => return Err(Refusal::ParentComponent),
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy<'a>(home: &'a Path, own: &Path, allowed: Option<&'a [PathBuf]>) -> WorkdirPolicy<'a> {
        WorkdirPolicy {
            home,
            own: own.to_path_buf(),
            allowed,
        }
    }

    #[test]
    fn refuses_what_the_backend_must_not_choose() {
        let home = Path::new("/nonexistent-home/u");
        let own = home.join(".cloudagent");
        let p = policy(home, &own, None);
        for (raw, why) in [
            ("", Refusal::Empty),
            ("  ", Refusal::Empty),
            ("~", Refusal::Home),
            ("~root/x", Refusal::OtherUsersHome),
            ("code/x", Refusal::Relative),
            ("./x", Refusal::Relative),
            ("/srv/../etc", Refusal::ParentComponent),
            ("~/code/../../etc", Refusal::ParentComponent),
            ("/", Refusal::Root),
            ("//", Refusal::Root),
            ("/nonexistent-home/u", Refusal::Home),
            ("/nonexistent-home/u/", Refusal::Home),
            ("~/.cloudagent", Refusal::OwnDirectory),
            ("~/.cloudagent/agents/x/workspace", Refusal::OwnDirectory),
        ] {
            assert_eq!(p.check(raw), Err(why.clone()), "{raw:?}");
        }
    }

    #[test]
    fn expands_and_normalises_what_it_accepts() {
        let home = Path::new("/nonexistent-home/u");
        let own = home.join(".cloudagent");
        let p = policy(home, &own, None);
        assert_eq!(p.check("~/code/x").unwrap(), home.join("code/x"));
        assert_eq!(
            p.check("/srv//proj/./a/").unwrap(),
            PathBuf::from("/srv/proj/a")
        );
        assert_eq!(
            p.check("~/.cloudagentx").unwrap(),
            home.join(".cloudagentx")
        );
    }

    #[test]
    fn allowed_workdirs_restrict_further() {
        let home = Path::new("/nonexistent-home/u");
        let own = home.join(".cloudagent");
        let allowed = [home.join("code"), PathBuf::from("/srv/work")];
        let p = policy(home, &own, Some(&allowed));
        assert!(p.check("~/code/a").is_ok());
        assert!(p.check("/srv/work").is_ok());
        assert_eq!(p.check("/srv/workshop"), Err(Refusal::NotAllowed));
        assert_eq!(p.check("/tmp/x"), Err(Refusal::NotAllowed));
    }

    #[test]
    fn a_symlink_into_a_refused_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().canonicalize().unwrap();
        let own = home.join(".cloudagent");
        std::fs::create_dir_all(&own).unwrap();
        std::os::unix::fs::symlink(&own, home.join("innocent")).unwrap();
        std::os::unix::fs::symlink("/", home.join("slash")).unwrap();
        let p = policy(&home, &own, None);
        assert_eq!(p.check("~/innocent/agents"), Err(Refusal::OwnDirectory));
        assert_eq!(p.check("~/slash"), Err(Refusal::Root));
    }
}
