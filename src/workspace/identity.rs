//! `.meta/identity.json`: who the agent is. The bridge reads `is_chief` to
//! decide which tools to offer.

use serde::{Deserialize, Serialize};

use crate::config::Agent;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub agent_name: String,
    #[serde(default)]
    pub is_chief: bool,
    #[serde(default = "default_role")]
    pub role: String,
    #[serde(default = "default_slug")]
    pub workspace_slug: String,
    #[serde(default = "default_reports_to")]
    pub reports_to: String,
}

fn default_role() -> String {
    "staff".to_string()
}
fn default_slug() -> String {
    "default".to_string()
}
fn default_reports_to() -> String {
    "(unset)".to_string()
}

impl Identity {
    /// An agent's `.meta/identity.json`, if it reads and parses. Bounded:
    /// an identity is a few hundred bytes, and the file is ours to trust
    /// only so far.
    pub fn read(path: &std::path::Path) -> Option<Self> {
        use std::io::Read;
        let mut text = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(64 * 1024)
            .read_to_end(&mut text)
            .ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn from_agent(agent: &Agent) -> Self {
        Self {
            agent_id: agent.id.to_string(),
            agent_name: agent.name.clone(),
            is_chief: agent.chief,
            role: agent.role.clone(),
            workspace_slug: agent.workspace_slug.clone(),
            reports_to: agent.reports_to.clone(),
        }
    }

    /// The original's default staff identity for agents the server binds
    /// without details.
    pub fn default_staff(agent_id: &str) -> Self {
        Self {
            agent_id: agent_id.to_string(),
            agent_name: agent_id.to_string(),
            is_chief: false,
            role: default_role(),
            workspace_slug: default_slug(),
            reports_to: default_reports_to(),
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = crate::fsutil::json_pretty("identity.json", self);
        s.push('\n');
        s
    }
}
