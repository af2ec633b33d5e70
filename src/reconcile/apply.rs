//! Executing a plan. Each change runs its operations in order and stops at
//! its first failure; other changes still run. The inventory records what
//! actually succeeded.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::plan::{Action, Change, Effect, Op, Plan, apply_effect};
use super::render::done_verb;
use crate::fsutil;
use crate::paths::ProfileName;
use crate::service::ServiceManager;

#[derive(Debug, Default)]
pub struct Report {
    /// One line per change that succeeded.
    pub done: Vec<String>,
    /// One message per failure, naming the resource and what to do.
    pub errors: Vec<String>,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

impl Report {
    /// `Apply complete: 1 added, 0 changed, 0 removed.` (or `incomplete`
    /// when a change failed).
    pub fn summary(&self) -> String {
        let how = if self.errors.is_empty() {
            "complete"
        } else {
            "incomplete"
        };
        format!(
            "Apply {how}: {} added, {} changed, {} removed.",
            self.added, self.changed, self.removed
        )
    }
}

pub fn apply(plan: &Plan, manager: &dyn ServiceManager, now: DateTime<Utc>) -> Report {
    let mut report = Report::default();
    let mut effects: BTreeMap<ProfileName, Vec<Effect>> = BTreeMap::new();
    for change in &plan.changes {
        let outcome = run_change(change, manager, now);
        let mut change_effects = change.effects.clone();
        match outcome {
            Outcome::Done => {
                report.done.push(format!(
                    "{} {}: {}",
                    change.action.symbol(),
                    change.id,
                    done_verb(change.action)
                ));
                count(&mut report, change.action);
            }
            Outcome::NotLoaded(err) => {
                for e in &mut change_effects {
                    if let Effect::Service(Some(rec)) = e {
                        rec.loaded = false;
                    }
                }
                report.errors.push(format!(
                    "{}: the unit file was written but the service manager could not load it: {err}. \
                     Run apply again from a session with a user service manager (e.g. a desktop login, or `loginctl enable-linger`).",
                    change.id
                ));
                count(&mut report, change.action);
            }
            Outcome::Failed(err) => {
                report.errors.push(format!("{}: {err}", change.id));
                continue;
            }
        }
        effects
            .entry(change.id.profile.clone())
            .or_default()
            .extend(change_effects);
    }
    for (profile, inv_plan) in &plan.inventories {
        let mut inv = inv_plan.base.clone();
        for e in effects.get(profile).into_iter().flatten() {
            apply_effect(&mut inv, e);
        }
        let unchanged =
            inv_plan.old.as_ref() == Some(&inv) || (inv_plan.old.is_none() && inv.is_empty());
        if unchanged && !inv_plan.rewrite {
            continue;
        }
        if let Err(e) = write_inventory(&inv_plan.path, &inv) {
            report.errors.push(format!(
                "profile \"{profile}\": cannot record what apply manages in {}: {e}",
                inv_plan.path.display()
            ));
        }
    }
    report
}

fn write_inventory(path: &Path, inv: &super::inventory::Inventory) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fsutil::create_dir_all(parent, 0o700)?;
    }
    inv.write(path)
}

fn count(report: &mut Report, action: Action) {
    match action {
        Action::Create => report.added += 1,
        Action::Update => report.changed += 1,
        Action::Remove => report.removed += 1,
        Action::Replace => {
            report.added += 1;
            report.removed += 1;
        }
    }
}

pub(super) enum Outcome {
    Done,
    /// Everything worked except loading the unit.
    NotLoaded(String),
    Failed(String),
}

fn run_change(change: &Change, manager: &dyn ServiceManager, now: DateTime<Utc>) -> Outcome {
    run_ops(&change.ops, manager, now, &change.id.to_string())
}

/// Execute operations in order, stopping at the first failure.
pub(super) fn run_ops(
    ops: &[Op],
    manager: &dyn ServiceManager,
    now: DateTime<Utc>,
    label: &str,
) -> Outcome {
    let mut not_loaded = None;
    let mut deactivated: Option<String> = None;
    for op in ops {
        let result = match op {
            Op::MkDir { path, mode } => {
                fsutil::create_dir_all(path, *mode).map_err(|e| io_msg("create directory", path, e))
            }
            Op::Chmod { path, to, .. } => {
                fsutil::set_mode(path, *to).map_err(|e| io_msg("change mode of", path, e))
            }
            Op::Write {
                path,
                mode,
                create_only: true,
                content,
                ..
            } => fsutil::write_new(path, content.as_bytes(), *mode)
                .map(|_| ())
                .map_err(|e| io_msg("write", path, e)),
            Op::Write {
                path,
                mode,
                content,
                ..
            } => ensure_parent(path)
                .and_then(|()| fsutil::write_atomic(path, content.as_bytes(), *mode))
                .map_err(|e| io_msg("write", path, e)),
            Op::RemoveFile { path } => {
                let r = match fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_msg("remove", path, e)),
                    _ => Ok(()),
                };
                if r.is_ok()
                    && let Some(unit) = deactivated.take()
                    && let Err(e) = manager.forget(&unit)
                {
                    tracing::warn!("after removing {}: {e}", path.display());
                }
                r
            }
            Op::Archive {
                path,
                archive_dir,
                agent,
            } => archive(path, archive_dir, agent, now),
            Op::Adopt { .. } => Ok(()),
            Op::Activate { unit, path, .. } => {
                if let Err(e) = manager.activate(unit, path) {
                    not_loaded = Some(e.to_string());
                }
                Ok(())
            }
            Op::Deactivate { unit, path, .. } => {
                // A unit that cannot be stopped (no user session) cannot be
                // running either; removing its file still uninstalls it.
                if let Err(e) = manager.deactivate(unit, path) {
                    tracing::warn!("{label}: {e}");
                }
                deactivated = Some(unit.clone());
                Ok(())
            }
        };
        if let Err(e) = result {
            return Outcome::Failed(e);
        }
    }
    match not_loaded {
        Some(e) => Outcome::NotLoaded(e),
        None => Outcome::Done,
    }
}

/// Unit directories such as `~/.config/systemd/user` may not exist yet.
fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsutil::create_dir_all(parent, 0o755),
        _ => Ok(()),
    }
}

fn io_msg(what: &str, path: &Path, e: io::Error) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// Move a workspace to `<archive dir>/<agent>-<UTC timestamp>`, leaving a
/// note of when inside it. Never deletes anything.
fn archive(path: &Path, archive_dir: &Path, agent: &str, now: DateTime<Utc>) -> Result<(), String> {
    fsutil::create_dir_all(archive_dir, 0o700)
        .map_err(|e| io_msg("create directory", archive_dir, e))?;
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let mut dest: PathBuf = archive_dir.join(format!("{agent}-{stamp}"));
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = archive_dir.join(format!("{agent}-{stamp}-{n}"));
    }
    let meta = path.join(".meta");
    if meta.is_dir() {
        let marker = meta.join("archived.txt");
        fsutil::write_atomic(&marker, now.to_rfc3339().as_bytes(), 0o644)
            .map_err(|e| io_msg("write", &marker, e))?;
    }
    fs::rename(path, &dest)
        .map_err(|e| format!("cannot move {} to {}: {e}", path.display(), dest.display()))
}
