//! `login`: check a machine key against the backend, keep it in a 0600 key
//! file, and declare the profile (and its server) in cloudagent.toml
//! referencing that file, so that `start` needs no flags.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::edit::{self, DryRunArg, Outcome};
use super::profile::ProfileArg;
use crate::config::{Secret, server_url};
use crate::fsutil;
use crate::paths::{Home, ProfileName};
use crate::runtime::session::handshake::{self, Failure};
use crate::runtime::transport::{ConnectError, tls};

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The backend, e.g. https://api.cloudagent.chat (a trailing / or /v1
    /// is removed).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The machine API key (sk_machine_…). Better left out: it is then
    /// asked for without echo on a terminal, or read from stdin, instead of
    /// showing up in the process list and shell history.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Skip TLS certificate verification (self-signed development servers);
    /// recorded as insecure = true in the server's section.
    #[arg(long)]
    pub insecure: bool,
    /// Allow an http:// URL to another machine (the key then crosses the
    /// network unencrypted); recorded as allow_insecure_http = true.
    #[arg(long)]
    pub allow_insecure_http: bool,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

fn usage(msg: &str) -> u8 {
    eprintln!("Error: {msg}");
    2
}

pub fn run(config_flag: Option<&Path>, args: &LoginArgs) -> u8 {
    let (profile, home) = match super::status::profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let (url, key) = match inputs(args) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if args.insecure {
        eprintln!("⚠️  Insecure: TLS certificate verification disabled.");
    }
    // The edit is made and checked first: a file that cannot take it is
    // said before the backend is asked, and nothing is written.
    let server = Server {
        url: &url,
        insecure: args.insecure,
        allow_insecure_http: args.allow_insecure_http,
    };
    let (file, key_file) = match prepared_edit(config_flag, &home, &profile, &server) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let host_id = match verify(&url, &key, args.insecure, &home) {
        Ok(h) => h,
        Err(msg) => {
            eprintln!("Login failed: {msg}");
            return 1;
        }
    };
    if !args.dry_run.dry_run
        && let Err(c) = save_key(&key_file, &key, &home)
    {
        return c;
    }
    let outcome = edit::commit(&file, &home, &profile, args.dry_run.dry_run);
    if let Outcome::Applied(_) = outcome {
        println!("Logged in. host_id={host_id} profile={profile}");
    } else {
        println!("Key verified: host_id={host_id} profile={profile}");
    }
    outcome.code()
}

/// The normalised URL and the key; exit 2 on bad input.
fn inputs(args: &LoginArgs) -> Result<(String, Secret), u8> {
    let url = server_url::normalize(&args.server).map_err(|e| usage(&e))?;
    server_url::check_cleartext(&url, args.allow_insecure_http, "pass --allow-insecure-http")
        .map_err(|e| usage(&e))?;
    let key = read_key(args.api_key.as_deref()).map_err(|e| usage(&e))?;
    if !key.expose().starts_with("sk_machine_") {
        return Err(usage("api_key must start with sk_machine_"));
    }
    Ok((url, key))
}

/// The config file with the profile declared, checked; and its key file.
fn prepared_edit(
    config_flag: Option<&Path>,
    home: &Home,
    profile: &ProfileName,
    server: &Server,
) -> Result<(crate::config::edit::ConfigFile, PathBuf), u8> {
    let mut file = edit::open_or_fail(config_flag, home)?;
    let key_file = declare_profile(&mut file, home, profile, server).map_err(|e| {
        eprintln!("Error: {e}");
        1u8
    })?;
    edit::check(&file, home)?;
    Ok((file, key_file))
}

/// Write the key file and say where it is; exit 1 when it cannot be
/// written.
pub fn save_key(path: &Path, key: &Secret, home: &Home) -> Result<(), u8> {
    write_key(path, key).map_err(|e| {
        eprintln!("Error: cannot write the key to {}: {e}", path.display());
        1u8
    })?;
    println!(
        "Key saved in {} (mode 0600).",
        fsutil::display_path(path, &home.home)
    );
    Ok(())
}

/// A server as the command line gives it.
pub struct Server<'a> {
    /// Normalised.
    pub url: &'a str,
    pub insecure: bool,
    pub allow_insecure_http: bool,
}

/// Declare `profile` in the file: its server (reused when the URL is
/// declared, else named after the host) and `api_key_file` naming the
/// profile's key file, which is returned (the caller writes the key).
pub fn declare_profile(
    file: &mut crate::config::edit::ConfigFile,
    home: &Home,
    profile: &ProfileName,
    server: &Server,
) -> Result<PathBuf, String> {
    let key_file = key_file(home, profile);
    let name = file.server_for(server.url)?;
    let t = file.table(&["servers", &name])?;
    if server.insecure {
        crate::config::edit::set(t, "insecure", true);
    }
    if server.allow_insecure_http {
        crate::config::edit::set(t, "allow_insecure_http", true);
    }
    let shown = fsutil::display_path(&key_file, &home.home);
    file.set_profile_key(profile.as_str(), &name, &shown)?;
    Ok(key_file)
}

/// `$XDG_CONFIG_HOME/cloudagent/<profile>.key`.
pub fn key_file(home: &Home, profile: &ProfileName) -> PathBuf {
    home.config_home
        .join("cloudagent")
        .join(format!("{profile}.key"))
}

pub fn write_key(path: &Path, key: &Secret) -> std::io::Result<()> {
    fsutil::create_dir_all(fsutil::parent_dir(path), 0o700)?;
    fsutil::write_atomic(path, format!("{}\n", key.expose()).as_bytes(), 0o600)
}

/// `--api-key`, else a line from the terminal without echo, else a line
/// from stdin.
fn read_key(flag: Option<&str>) -> Result<Secret, String> {
    if let Some(k) = flag {
        return Ok(Secret::new(k.trim()));
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("Machine API key (sk_machine_…, input hidden): ");
        let _ = std::io::stderr().flush();
        let restore = no_echo(&stdin);
        let read = stdin.lock().read_line(&mut line);
        if let Some(old) = restore {
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &old);
        }
        eprintln!();
        read.map_err(|e| format!("cannot read the key: {e}"))?;
    } else {
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the key from stdin: {e}"))?;
    }
    let key = line.trim();
    if key.is_empty() {
        return Err(
            "no API key given: pass --api-key, or type it when asked (or pipe it to stdin)".into(),
        );
    }
    Ok(Secret::new(key))
}

/// Turn the terminal's echo off; returns the settings to restore.
fn no_echo(stdin: &std::io::Stdin) -> Option<rustix::termios::Termios> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let old = tcgetattr(stdin).ok()?;
    let mut quiet = old.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(stdin, OptionalActions::Now, &quiet).ok()?;
    Some(old)
}

/// Open the WebSocket with the key (PROTOCOL §2.9 of the original): the
/// host id, or the reason with what to do about it.
fn verify(url: &str, key: &Secret, insecure: bool, home: &Home) -> Result<String, String> {
    let rt = crate::runtime::current_thread_runtime()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    tls::install_crypto_provider();
    let env: Vec<_> = std::env::vars_os().collect();
    rt.block_on(async {
        let runtimes = crate::runtime::detect::detect(&home.home, &env).await;
        match handshake::verify_key(url, key, insecure, runtimes.clone()).await {
            Err(Failure::NoWebSocket(why)) => {
                eprintln!(
                    "No WebSocket at this server ({why}); checking the key with POST /v1/daemon/ready instead (the SSE + POST transport)."
                );
                handshake::verify_key_sse(url, key, insecure, runtimes)
                    .await
                    .map_err(|f| explain(&f, "POST /v1/daemon/ready"))
            }
            other => other.map_err(|f| explain(&f, "WebSocket connection")),
        }
    })
}

/// The failure and the original's troubleshooting hint for it; `what`
/// names the request that was refused.
fn explain(f: &Failure, what: &str) -> String {
    match f {
        Failure::Auth(ConnectError::Auth(code)) => format!(
            "server rejected {what}: HTTP {code}\n  The sk_machine_ key was revoked or mistyped: create a new one in the cloudagent UI (host machine settings) and log in again."
        ),
        Failure::Auth(e) => e.to_string(),
        Failure::NoWebSocket(e) => format!(
            "{e}\n  login checks the key over WebSocket (/v1/daemon/ws): check the URL, and that a proxy in between passes WebSocket upgrades."
        ),
        Failure::Other(e) | Failure::Later { reason: e, .. } => {
            format!("{e}\n  Check the URL and that the backend is reachable from this machine.")
        }
        Failure::TooLarge { size, max } => handshake::too_large(*size, *max),
        Failure::Shutdown => "interrupted".into(),
    }
}
