use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cloudagent_daemon::cli::Cli::parse();
    cloudagent_daemon::cli::run(cli)
}
