//! Command line: clap definitions and dispatch. Each command lives in its
//! own file and returns an exit code.

mod agent;
mod bridge;
mod completions;
mod doctor;
mod edit;
mod import;
mod login;
mod profile;
mod profiles;
mod reconcile;
mod schema;
mod service;
mod start;
mod status;
mod status_render;
mod stop;
mod supervisor;

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
    /// Run a profile's daemon in the foreground: connect to the backend and
    /// run claude for every message its agents receive.
    ///
    /// Settings come from cloudagent.toml (the profile's section), else from
    /// the profile's config.json (as written by the original daemon's `login`),
    /// or from --server-url and
    /// --api-key (one-shot). Local resources are applied first. Stops
    /// cleanly on SIGTERM/SIGINT (exit 0); exits 1 when the key is rejected.
    Start(start::StartArgs),
    /// Show whether a profile's daemon runs, its connection, host id,
    /// last_seq, agents and running wakes. Exit 1 when it is not running.
    Status(status::StatusArgs),
    /// Stop a profile's daemon (SIGTERM, then wait for a clean exit). Only
    /// a process proven to be the daemon (it holds the profile's lock or
    /// listens on its socket) is signalled, never a pid from the PID file
    /// alone.
    Stop(stop::StopArgs),
    /// Check a profile's setup and health: config, key, claude, the MCP
    /// bridge, file modes, the service unit, the backend, and the running
    /// daemon's live figures. Each fault says its fix.
    ///
    /// Exit status: 1 when any row is ALERT (so always 1 while the daemon is
    /// down), else 0.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell) generated from this program's commands and options.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), generated from this program's commands
    /// and options.
    Man,
    /// Print the JSON Schema of cloudagent.toml (for editor completion and
    /// validation).
    Schema,
    /// The stdio MCP server claude starts for an agent (from the MCP config
    /// the daemon writes). Not for interactive use.
    #[command(hide = true)]
    McpBridge(bridge::BridgeArgs),
    /// The process between the daemon and claude for one wake (started by
    /// the daemon). Not for interactive use.
    #[command(hide = true)]
    WakeSupervisor(supervisor::SupervisorArgs),
    /// Check a machine API key with the backend, save it in a 0600 key
    /// file and declare the profile and its server in cloudagent.toml, then
    /// apply the profile. `start` then needs no flags.
    ///
    /// The key is asked for without echo on a terminal (or read from
    /// stdin). Exit 1 with `Login failed: …` when the backend refuses it.
    Login(login::LoginArgs),
    /// Declare, remove or list a profile's agents (edits cloudagent.toml,
    /// then applies the profile).
    Agent {
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// Run the profile's daemon as a user service (systemd user unit on
    /// Linux, launchd agent on macOS; restarted on crash, started at
    /// login): adds [profiles.P.service] to cloudagent.toml, with the
    /// server, key, permission mode and workspace root when given, then
    /// applies the profile.
    InstallService(service::InstallArgs),
    /// Stop and remove the profile's service unit: removes
    /// [profiles.P.service] from cloudagent.toml, then applies the profile.
    UninstallService(service::UninstallArgs),
    /// List the profiles on this machine (declared in cloudagent.toml or
    /// installed by the original daemon) with their server, host id and
    /// whether their daemon runs.
    ListProfiles(profiles::ListProfilesArgs),
    /// Turn an install of the original Python daemon (config.json of each
    /// profile, claude_permission_mode, service units holding --api-key)
    /// into cloudagent.toml plus 0600 key files, then show the plan.
    /// Changes nothing else: run `apply` next.
    Import(import::ImportArgs),
}

/// ` --profile NAME` for messages, empty for the default profile.
pub fn profile_flag(p: &crate::paths::ProfileName) -> String {
    profile::flag(p)
}

pub fn run(cli: Cli) -> ExitCode {
    // The daemon sets up its own logging (files per profile), the bridge
    // its own (stderr only); the wake supervisor's stderr is claude's.
    if !matches!(
        cli.command,
        Command::Start(_) | Command::McpBridge(_) | Command::WakeSupervisor(_)
    ) {
        crate::logging::init_cli();
    }
    let code = match cli.command {
        Command::Plan(args) => reconcile::plan(cli.config.as_deref(), &args),
        Command::Apply(args) => reconcile::apply(cli.config.as_deref(), &args),
        Command::Start(args) => start::run(cli.config.as_deref(), &args),
        Command::Status(args) => status::status(&args),
        Command::Stop(args) => stop::stop(&args),
        Command::Doctor(args) => doctor::run(cli.config.as_deref(), &args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
        Command::Schema => schema::run(),
        Command::McpBridge(args) => bridge::run(&args),
        Command::WakeSupervisor(args) => supervisor::run(&args),
        Command::Login(args) => login::run(cli.config.as_deref(), &args),
        Command::Agent { command } => agent::run(cli.config.as_deref(), &command),
        Command::InstallService(args) => service::install(cli.config.as_deref(), &args),
        Command::UninstallService(args) => service::uninstall(cli.config.as_deref(), &args),
        Command::ListProfiles(args) => profiles::run(cli.config.as_deref(), &args),
        Command::Import(args) => import::run(cli.config.as_deref(), &args),
    };
    ExitCode::from(code)
}
