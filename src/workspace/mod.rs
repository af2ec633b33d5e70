//! An agent's workspace on disk (PROTOCOL §6.2): its layout and the content
//! of the files the daemon owns. Shared by the reconciler (which creates
//! them), the daemon (which runs claude there) and the bridge (which reads
//! the identity).

pub mod assigned;
pub mod identity;
pub mod pending_spawn;
pub mod workdir;

use std::path::{Path, PathBuf};

pub use identity::Identity;

use crate::paths::{AgentId, ProfileName, ProfilePaths};

/// Paths inside `<agents root>/<agent id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLayout {
    pub dir: PathBuf,
}

impl AgentLayout {
    pub fn new(profile: &ProfilePaths, id: &AgentId) -> Self {
        Self {
            dir: profile.agent_dir(id),
        }
    }
    pub fn notes(&self) -> PathBuf {
        self.dir.join("notes")
    }
    pub fn claude(&self) -> PathBuf {
        self.dir.join("claude")
    }
    pub fn default_cwd(&self) -> PathBuf {
        self.dir.join("workspace")
    }
    pub fn memory(&self) -> PathBuf {
        self.dir.join("MEMORY.md")
    }
    pub fn meta(&self) -> PathBuf {
        self.dir.join(".meta")
    }
    pub fn identity(&self) -> PathBuf {
        self.meta().join("identity.json")
    }
    pub fn mcp_config(&self) -> PathBuf {
        self.meta().join("claude-mcp-config.json")
    }
    /// Per-agent cwd override, an absolute path without newline.
    pub fn cwd_override(&self) -> PathBuf {
        self.meta().join("agent_workspace_root")
    }
    pub fn last_spawn(&self) -> PathBuf {
        self.meta().join("last-spawn.json")
    }
    pub fn current_session(&self) -> PathBuf {
        self.meta().join("current-session.txt")
    }
    /// The running wake's bridge token (SECURITY.md, "The bridge socket").
    pub fn claude_token(&self) -> PathBuf {
        self.meta().join("claude-token.txt")
    }
    pub fn archived_marker(&self) -> PathBuf {
        self.meta().join("archived.txt")
    }
}

/// The MCP config claude is started with (PROTOCOL §5.1). The server key
/// `cloudagent` gives claude-side names `mcp__cloudagent__<tool>`. Unlike the
/// original we name the bridge by absolute path (claude's PATH may not
/// contain us), pass the profile explicitly (the original's bridge read the
/// default profile's identity for every profile), join each flag to its
/// value (an id starting with `-` stays a value), and the token file the
/// original named but never wrote is the running wake's token
/// (SECURITY.md).
pub fn mcp_config_json(
    bridge_exe: &Path,
    layout: &AgentLayout,
    id: &AgentId,
    profile: &ProfileName,
) -> String {
    // Typed rather than json!: rendered for every agent on every plan.
    #[derive(serde::Serialize)]
    struct Config {
        #[serde(rename = "mcpServers")]
        mcp_servers: Servers,
    }
    #[derive(serde::Serialize)]
    struct Servers {
        cloudagent: Server,
    }
    #[derive(serde::Serialize)]
    struct Server {
        command: String,
        args: [String; 4],
    }
    let config = Config {
        mcp_servers: Servers {
            cloudagent: Server {
                command: bridge_exe.display().to_string(),
                args: [
                    "mcp-bridge".to_string(),
                    format!("--agent-id={id}"),
                    format!("--token-file={}", layout.claude_token().display()),
                    format!("--profile={profile}"),
                ],
            },
        },
    };
    let mut s = crate::fsutil::json_pretty("the MCP config", &config);
    s.push('\n');
    s
}

/// MEMORY.md, written once and then owned by the agent. Same information as
/// the original's template: who the agent is and empty sections to fill.
pub fn memory_md(identity: &Identity) -> String {
    format!(
        "# {name} — memory\n\
         \n\
         This file was created by cloudagent-daemon. It is yours: the daemon never\n\
         rewrites it. Keep what you need to remember between messages here.\n\
         \n\
         ## Identity\n\
         \n\
         - Agent id: {id}\n\
         - Role: {role}\n\
         - Reports to: {reports_to}\n\
         - Workspace: {slug}\n\
         \n\
         ## Active context\n\
         \n\
         ## Notes index\n\
         \n\
         ## Long-term memory\n",
        name = identity.agent_name,
        id = identity.agent_id,
        role = identity.role,
        reports_to = identity.reports_to,
        slug = identity.workspace_slug,
    )
}
