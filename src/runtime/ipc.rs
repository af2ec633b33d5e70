//! The daemon's side of the bridge socket: typed requests in, answers out
//! (docs/PROTOCOL.md, "IPC").

use std::sync::Arc;

use serde_json::{Value, json};

use super::shared::Shared;
use super::tool_calls::Call;
use crate::bridge::ipc::Handler;
use crate::paths::AgentId;
use crate::protocol::ipc::{IpcError, Request, ToolCallArgs};
use crate::protocol::tools;

pub struct DaemonIpc {
    pub shared: Arc<Shared>,
}

impl Handler for DaemonIpc {
    async fn handle(&self, request: Request) -> Result<Value, IpcError> {
        match request {
            Request::Status => serde_json::to_value(super::status::report(&self.shared))
                .map_err(|e| IpcError::new("INTERNAL", e.to_string())),
            Request::GetCurrentSession(a) => {
                let agent = self.authorize(&a.agent_id, a.token.as_deref(), None)?;
                let session = self.running_session(&agent);
                Ok(json!({ "session_id": session }))
            }
            Request::ToolCall(call) => self.tool_call(call).await,
        }
    }
}

fn not_in_wake(agent: &AgentId, why: &str) -> IpcError {
    IpcError::new(
        "NOT_IN_WAKE",
        format!(
            "refused: {why}. {agent}'s tools work only from the bridge of a wake the daemon started (claude run by hand with the MCP config cannot use them; see SECURITY.md)"
        ),
    )
}

fn agent_id(raw: &str) -> Result<AgentId, IpcError> {
    AgentId::parse(raw).map_err(|e| IpcError::new("BRIDGE_DISPATCH_FAILED", e))
}

impl DaemonIpc {
    /// Serve a call only for an agent with a running wake whose token the
    /// peer presents, and a tool in that agent's set (SECURITY.md, "The
    /// bridge socket"): a same-uid process cannot act as another agent, nor
    /// a staff agent as a chief.
    fn authorize(
        &self,
        raw_agent: &str,
        token: Option<&str>,
        tool: Option<&str>,
    ) -> Result<AgentId, IpcError> {
        let agent = agent_id(raw_agent)?;
        let grant = self
            .shared
            .with_live(|l| l.running.get(&agent).and_then(|r| r.grant.clone()));
        let grant = match (grant, token) {
            (Some(g), Some(t)) if g.token.matches(t) => g,
            (_, None) => return Err(not_in_wake(&agent, "it presented no wake token")),
            (None, Some(_)) => return Err(not_in_wake(&agent, "the agent has no running wake")),
            (Some(_), Some(_)) => {
                return Err(not_in_wake(&agent, "its token is not the running wake's"));
            }
        };
        if let Some(tool) = tool
            && !tools::allowed(tool, grant.chief)
        {
            return Err(IpcError::new(
                "TOOL_NOT_ALLOWED",
                format!(
                    "{agent} may not call {tool:?} ({} tools: {})",
                    if grant.chief { "chief" } else { "staff" },
                    tools::names(grant.chief).join(", ")
                ),
            ));
        }
        Ok(agent)
    }

    fn running_session(&self, agent: &AgentId) -> Option<String> {
        self.shared
            .with_live(|l| l.running.get(agent).and_then(|r| r.session_id.clone()))
    }

    async fn tool_call(&self, call: ToolCallArgs) -> Result<Value, IpcError> {
        let agent = self.authorize(&call.agent_id, call.token.as_deref(), Some(&call.tool_name))?;
        // The business session of the running wake, if the bridge did not
        // know it.
        let session = call
            .session_id
            .filter(|s| !s.is_empty())
            .or_else(|| self.running_session(&agent));
        let outcome = self
            .shared
            .tools
            .call(Call {
                agent_id: &agent,
                session_id: session.as_deref(),
                tool_name: &call.tool_name,
                args: call.tool_args,
                timeout: self.shared.timing.tool_timeout,
            })
            .await;
        outcome.map_err(|e| IpcError::new(&e.code, e.message))
    }
}
