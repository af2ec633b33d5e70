//! `doctor [--profile P] [--json]` (README "Commands"): see `crate::doctor`.

use std::path::Path;

use clap::Args;

use super::profile::ProfileArg;
use super::status::{profile_and_home, socket_for};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_flag: Option<&Path>, args: &DoctorArgs) -> u8 {
    let (profile, home) = match profile_and_home(&args.profile) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let socket = socket_for(&home, &profile);
    let rt = match crate::runtime::current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let report = rt.block_on(crate::doctor::collect(
        config_flag,
        &profile,
        &home,
        &socket,
    ));
    if args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        println!("{}", crate::redact::secrets(&text));
    } else {
        print!("{}", report.text());
    }
    report.exit_code()
}
