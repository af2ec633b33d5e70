//! The reconciler: make the machine match `Desired`.
//!
//! `target` turns the config into paths and contents, `observe` reads the
//! machine, `plan` diffs the two (pure), `render` shows the result and
//! `apply` executes it, recording what it manages in an `inventory`.

pub mod apply;
pub mod file_diff;
pub mod inventory;
pub mod lock;
pub mod model;
pub mod observe;
pub mod plan;
pub mod render;
pub mod target;

pub use plan::{Plan, plan};
pub use target::{Context, Target};

use crate::config::Desired;

/// Bring a few entries in line now, through the same diff and executor as
/// `apply`: the daemon uses it for workspaces of agents the server assigns.
pub fn converge(entries: &[model::Entry]) -> Result<(), String> {
    let wanted = entries
        .iter()
        .map(|e| {
            (
                e.path.clone(),
                matches!(
                    e.want,
                    model::Want::File {
                        create_only: false,
                        ..
                    }
                ),
            )
        })
        .collect();
    let observed = observe::Observed {
        paths: observe::observe_paths(wanted),
        profiles: Default::default(),
    };
    let ops = plan::entries_ops(entries, &observed)?;
    match apply::run_ops(&ops, &NoServices, chrono::Utc::now(), "workspace") {
        apply::Outcome::Failed(e) | apply::Outcome::NotLoaded(e) => Err(e),
        apply::Outcome::Done => Ok(()),
    }
}

/// Workspaces have no service units.
struct NoServices;

impl crate::service::ServiceManager for NoServices {
    fn activate(&self, _: &str, _: &std::path::Path) -> Result<(), crate::service::ManagerError> {
        Ok(())
    }
    fn deactivate(&self, _: &str, _: &std::path::Path) -> Result<(), crate::service::ManagerError> {
        Ok(())
    }
    fn forget(&self, _: &str) -> Result<(), crate::service::ManagerError> {
        Ok(())
    }
}

/// The plan a running daemon applies for its own profile: its directories
/// and declared agents (pruning its own removed agents), never its service
/// unit and never other profiles.
pub fn plan_for_profile(
    desired: &Desired,
    ctx: &Context,
    profile: &crate::paths::ProfileName,
) -> Plan {
    let target = target::build_scoped(desired, ctx, target::Scope::Local(profile));
    let observed = observe::observe(&target, &ctx.home, false);
    plan::plan(&target, &observed)
}

/// What `apply` would change in the profile's service unit, one plan line
/// each (`~ service "default"`). A running daemon shows it in `status` and
/// never applies it itself: rewriting its own unit would restart it
/// mid-change (README.md, "Live configuration").
pub fn service_drift(
    desired: &Desired,
    ctx: &Context,
    profile: &crate::paths::ProfileName,
) -> Vec<String> {
    let target = target::build_scoped(desired, ctx, target::Scope::Profile(profile));
    let observed = observe::observe(&target, &ctx.home, false);
    plan::plan(&target, &observed)
        .changes
        .iter()
        .filter(|c| c.kind == model::Kind::Service)
        .map(|c| format!("{} {}", c.action.symbol(), c.id))
        .collect()
}

/// A daemon reconciling its own profile (at start, on every config
/// reload): under the apply lock, plan it and apply the plan. `waiting` is
/// told when another apply holds the lock. Returns the plan (for display)
/// and what applying it did; an error only when the lock was not had.
pub fn apply_profile(
    desired: &Desired,
    ctx: &Context,
    profile: &crate::paths::ProfileName,
    waiting: impl FnOnce(Option<u32>),
) -> Result<(Plan, apply::Report), String> {
    let _lock = lock::acquire(&ctx.home.cloudagent_root(), lock::DEFAULT_TIMEOUT, waiting)?;
    let plan = plan_for_profile(desired, ctx, profile);
    let manager = crate::service::manager::CliManager {
        platform: ctx.platform,
    };
    let report = apply::apply(&plan, &manager, chrono::Utc::now());
    Ok((plan, report))
}

/// One profile as `apply` would handle it, service unit included, other
/// profiles left alone: what a command that edited this profile in the
/// file runs next.
pub fn plan_one_profile(
    desired: &Desired,
    ctx: &Context,
    profile: &crate::paths::ProfileName,
) -> Plan {
    let target = target::build_scoped(desired, ctx, target::Scope::Profile(profile));
    let observed = observe::observe(&target, &ctx.home, false);
    plan::plan(&target, &observed)
}

/// Target, observation and plan in one call: what `plan` and `apply` run.
pub fn plan_for(desired: &Desired, ctx: &Context) -> (Target, Plan) {
    let target = target::build(desired, ctx);
    let observed = observe::observe(&target, &ctx.home, true);
    let plan = plan::plan(&target, &observed);
    (target, plan)
}

#[cfg(test)]
mod tests;
