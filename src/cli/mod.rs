//! Command line: clap definitions and dispatch. Each command lives in its
//! own file and returns an exit code.

mod reconcile;
mod schema;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cloudagent-daemon connects this machine to a cloudagent backend and runs
/// the Claude Code CLI for every message its agents receive.
///
/// The whole setup is declared in cloudagent.toml (servers, profiles, agents,
/// service units): `plan` shows how the machine differs from the file,
/// `apply` makes it match.
#[derive(Debug, Parser)]
#[command(
    name = "cloudagent-daemon",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Config file. Default: $CLOUDAGENT_CONFIG, else
    /// $XDG_CONFIG_HOME/cloudagent/cloudagent.toml (~/.config/cloudagent/cloudagent.toml).
    #[arg(short = 'f', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change, as a diff. Changes nothing.
    ///
    /// Exit status: 0 on success, 1 on error; with --detailed-exitcode,
    /// 0 = no changes, 2 = changes pending, 1 = error.
    Plan(reconcile::PlanArgs),
    /// Make the machine match the config file (idempotent): profile
    /// directories, agent workspaces, service units. Removed agents'
    /// workspaces are archived, never deleted.
    Apply(reconcile::ApplyArgs),
    /// Print the JSON Schema of cloudagent.toml (for editor completion and
    /// validation).
    Schema,
}

pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Plan(args) => reconcile::plan(cli.config.as_deref(), &args),
        Command::Apply(args) => reconcile::apply(cli.config.as_deref(), &args),
        Command::Schema => schema::run(),
    };
    ExitCode::from(code)
}
