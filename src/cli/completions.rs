//! `completions SHELL` and `man`: generated from the clap definitions, so
//! they list exactly the commands and options `--help` does.

use std::io::Write;

use clap::{Args, CommandFactory};

use super::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The completion script on stdout, e.g.
/// `cloudagent-daemon completions bash > ~/.local/share/bash-completion/completions/cloudagent-daemon`.
pub fn completions(args: &CompletionsArgs) -> u8 {
    let mut cmd = without_hidden(Cli::command());
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cloudagent-daemon", &mut out);
    write_out(&out)
}

/// The man page (roff) on stdout, e.g.
/// `cloudagent-daemon man > ~/.local/share/man/man1/cloudagent-daemon.1`.
pub fn man() -> u8 {
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(without_hidden(Cli::command())).render(&mut out) {
        eprintln!("Error: cannot render the man page: {e}");
        return 1;
    }
    write_out(&out)
}

/// The command without its hidden subcommands (`mcp-bridge`,
/// `wake-supervisor` are started by programs, not typed): the generators
/// would otherwise offer them.
fn without_hidden(cmd: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut kept = clap::Command::new("cloudagent-daemon")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .args(cmd.get_arguments().cloned())
        .subcommands(visible);
    if let Some(about) = cmd.get_about() {
        kept = kept.about(about.clone());
    }
    if let Some(long) = cmd.get_long_about() {
        kept = kept.long_about(long.clone());
    }
    kept
}

fn write_out(bytes: &[u8]) -> u8 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("Error: cannot write to stdout: {e}");
            1
        }
    }
}
