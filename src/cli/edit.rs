//! What every command that edits `cloudagent.toml` does after its edit:
//! check the result like any config, show the diff, write the file (or,
//! when the file is managed elsewhere, print what to add to its source),
//! then plan and apply the edited profile the way `apply` does, so that
//! `plan` afterwards has nothing left to do.

use std::path::Path;

use clap::Args;

use crate::config::edit::{Access, ConfigFile};
use crate::config::{self, Desired};
use crate::fsutil::display_path;
use crate::paths::{Home, ProfileName};
use crate::reconcile::{self, Context, lock, render};
use crate::service::{Platform, manager::CliManager};

#[derive(Debug, Clone, Args)]
pub struct DryRunArg {
    /// Show the change to cloudagent.toml and the plan, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The config file an edit goes to: `-f`, `$CLOUDAGENT_CONFIG`, else the
/// default path (created by the first edit).
pub fn open(config_flag: Option<&Path>, home: &Home) -> Result<ConfigFile, String> {
    ConfigFile::open(&config::resolve_path(config_flag, home))
}

/// The config file an edit goes to, or exit 1 having said why.
pub fn open_or_fail(config_flag: Option<&Path>, home: &Home) -> Result<ConfigFile, u8> {
    open(config_flag, home).map_err(|e| {
        eprintln!("Error: {e}");
        1
    })
}

/// The edited file as a config, or exit 1 having said why: checked before
/// anything (a key file included) is written.
pub fn check(file: &ConfigFile, home: &Home) -> Result<Desired, u8> {
    let shown = display_path(&file.path, &home.home);
    config::parse(&file.text(), file.path.clone(), home).map_err(|e| {
        if config::parse(file.original(), file.path.clone(), home).is_err() {
            eprintln!("Error: {shown} is not valid, so it was not edited; fix it first (`cloudagent-daemon plan` shows the same):\n{e}");
        } else {
            eprintln!("Error: the change would leave {shown} invalid, so it was not made:\n{e}");
        }
        1
    })
}

pub fn context(home: &Home) -> Result<Context, String> {
    let exe = std::env::current_exe().map_err(|e| {
        format!("cannot find the path of this program (needed for the MCP config and service units): {e}")
    })?;
    Ok(Context {
        home: home.clone(),
        exe,
        platform: Platform::detect()?,
    })
}

/// How an edit ended.
pub enum Outcome {
    /// Written (or already so); the profile was applied with this exit
    /// code.
    Applied(u8),
    /// A dry run: shown, nothing written.
    DryRun,
    /// The file is someone else's: the snippet was printed, nothing
    /// applied.
    Managed,
    /// The edit would break the file, or writing failed (printed).
    Failed,
}

impl Outcome {
    pub fn code(&self) -> u8 {
        match self {
            Self::Applied(c) => *c,
            Self::DryRun => 0,
            Self::Managed | Self::Failed => 1,
        }
    }
}

/// Check, show, write and apply an edit of `profile`.
pub fn commit(file: &ConfigFile, home: &Home, profile: &ProfileName, dry_run: bool) -> Outcome {
    let plan = |d: &Desired, ctx: &Context| reconcile::plan_one_profile(d, ctx, profile);
    match write(file, home, dry_run, plan) {
        Ok((desired, ctx)) => Outcome::Applied(apply_profile(&desired, &ctx, profile)),
        Err(outcome) => outcome,
    }
}

/// Check and show an edit, then write it. A dry run prints `plan`'s
/// plan instead of writing; a managed file gets the snippet. Returns the
/// edited config when it is in place (written, or already so).
pub fn write(
    file: &ConfigFile,
    home: &Home,
    dry_run: bool,
    plan: impl Fn(&Desired, &Context) -> reconcile::Plan,
) -> Result<(Desired, Context), Outcome> {
    let shown = display_path(&file.path, &home.home);
    let desired = check(file, home).map_err(|_| Outcome::Failed)?;
    if file.changed() {
        print!("{}", file.diff(home));
    } else {
        println!("{shown} already says so; not changed.");
    }
    let ctx = context(home).map_err(|e| {
        eprintln!("Error: {e}");
        Outcome::Failed
    })?;
    if dry_run {
        let p = plan(&desired, &ctx);
        print!("{}", render::text(&p, &desired.warnings, &home.home));
        println!("(dry run: nothing was written)");
        return Err(Outcome::DryRun);
    }
    if let Access::Managed(why) = &file.access {
        if file.changed() {
            println!(
                "\n{shown} is managed elsewhere ({why}), so it was not changed. Add this to the file's source (e.g. your dotfiles or home-manager config), then run `cloudagent-daemon apply`:\n\n{}",
                file.snippet()
            );
            return Err(Outcome::Managed);
        }
    } else if file.changed() {
        if let Err(e) = file.save() {
            eprintln!("Error: cannot write {}: {e}", file.path.display());
            return Err(Outcome::Failed);
        }
        println!("Wrote {shown}.");
    }
    Ok((desired, ctx))
}

/// `apply` for one profile (under the apply lock), printed like `apply`.
pub fn apply_profile(desired: &Desired, ctx: &Context, profile: &ProfileName) -> u8 {
    let root = ctx.home.cloudagent_root();
    let _lock = match lock::acquire(&root, lock::DEFAULT_TIMEOUT, |pid| {
        let who = lock::holder_note(pid);
        eprintln!(
            "Waiting for another apply{who} to finish (it holds {})...",
            lock::lock_path(&root).display()
        );
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let plan = reconcile::plan_one_profile(desired, ctx, profile);
    print!("{}", render::text(&plan, &desired.warnings, &ctx.home.home));
    let manager = CliManager {
        platform: ctx.platform,
    };
    let report = reconcile::apply::apply(&plan, &manager, chrono::Utc::now());
    let shown = |s: &str| s.replace(&format!("{}/", ctx.home.home.display()), "~/");
    for line in &report.done {
        println!("{}", shown(line));
    }
    if plan.has_changes() {
        println!("\n{}", report.summary());
    }
    for e in &report.errors {
        eprintln!("error: {}", shown(e));
    }
    u8::from(!(report.errors.is_empty() && plan.errors.is_empty()))
}

/// A command that changes a profile needs it declared; one known only from
/// the original daemon's `config.json` is pointed to `login`.
pub fn require_profile(file: &ConfigFile, home: &Home, profile: &ProfileName) -> Result<(), u8> {
    if file.has_table(&["profiles", profile.as_str()]) {
        return Ok(());
    }
    let f = super::profile::flag(profile);
    let legacy = home.profile(profile).legacy_config_file();
    let origin = if legacy.exists() {
        format!(
            " (it is known only from the original daemon's {})",
            display_path(&legacy, &home.home)
        )
    } else {
        String::new()
    };
    let fix = if legacy.exists() {
        "cloudagent-daemon import` (or `cloudagent-daemon login{f} --server URL`)"
    } else {
        "cloudagent-daemon login{f} --server URL`"
    }
    .replace("{f}", &f);
    eprintln!(
        "Error: profile '{profile}' is not declared in {}{origin}. Run `{fix} first.",
        display_path(&file.path, &home.home)
    );
    Err(1)
}
