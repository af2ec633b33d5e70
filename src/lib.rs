//! cloudagent-daemon: connects a developer machine to a cloudagent backend
//! and runs the Claude Code CLI for the messages its agents receive. The
//! setup is declarative: `cloudagent.toml` → `config::Desired` →
//! `reconcile` (plan/apply).

pub mod bridge;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod fsutil;
pub mod logging;
pub mod paths;
pub mod platform;
pub mod protocol;
pub mod reconcile;
pub mod redact;
pub mod runtime;
pub mod service;
pub mod workspace;
