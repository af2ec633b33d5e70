//! The reconciler: make the machine match `Desired`.
//!
//! `target` turns the config into paths and contents, `observe` reads the
//! machine, `plan` diffs the two (pure), `render` shows the result and
//! `apply` executes it, recording what it manages in an `inventory`.

pub mod apply;
pub mod inventory;
pub mod model;
pub mod observe;
pub mod plan;
pub mod render;
pub mod target;

pub use plan::{Plan, plan};
pub use target::{Context, Target};

use crate::config::Desired;

/// Target, observation and plan in one call: what `plan` and `apply` run.
pub fn plan_for(desired: &Desired, ctx: &Context) -> (Target, Plan) {
    let target = target::build(desired, ctx);
    let observed = observe::observe(&target, &ctx.home);
    let plan = plan::plan(&target, &observed);
    (target, plan)
}

#[cfg(test)]
mod tests;
