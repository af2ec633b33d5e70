//! `--profile` as every command of the original takes it.

use clap::Args;

use crate::paths::ProfileName;
use crate::protocol::env::PROFILE as PROFILE_ENV;

#[derive(Debug, Clone, Args)]
pub struct ProfileArg {
    /// Profile to act on: `default` or [a-z0-9][a-z0-9-]{0,30}. Default:
    /// $CLOUDAGENT_DAEMON_PROFILE, else `default`.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

impl ProfileArg {
    /// `--profile` > `$CLOUDAGENT_DAEMON_PROFILE` (trimmed) > `default`. A bad
    /// name prints the original's message and exits 2.
    pub fn resolve(&self) -> Result<ProfileName, u8> {
        let raw = self
            .profile
            .clone()
            .or_else(|| {
                std::env::var(PROFILE_ENV)
                    .ok()
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| "default".to_string());
        ProfileName::parse(&raw).map_err(|_| {
            eprintln!("Error: invalid profile name: '{raw}' — must match [a-z0-9][a-z0-9-]{{0,30}} (e.g. 'fr', 'prod', 'staging-eu')");
            2
        })
    }
}

/// ` --profile NAME` for messages, empty for the default profile.
pub fn flag(p: &ProfileName) -> String {
    if p.is_default() {
        String::new()
    } else {
        format!(" --profile {p}")
    }
}
