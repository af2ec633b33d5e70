//! The daemon's side of the bridge socket: typed requests in, answers out
//! (docs/PROTOCOL.md, "IPC").

use std::sync::Arc;

use serde_json::{Value, json};

use super::shared::Shared;
use super::tool_calls::Call;
use crate::bridge::ipc::Handler;
use crate::paths::AgentId;
use crate::protocol::ipc::{IpcError, Request, ToolCallArgs};

pub struct DaemonIpc {
    pub shared: Arc<Shared>,
}

impl Handler for DaemonIpc {
    async fn handle(&self, request: Request) -> Result<Value, IpcError> {
        match request {
            Request::Status => serde_json::to_value(super::status::report(&self.shared))
                .map_err(|e| IpcError::new("INTERNAL", e.to_string())),
            Request::GetCurrentSession(a) => {
                let agent = agent_id(&a.agent_id)?;
                let session = self.running_session(&agent);
                Ok(json!({ "session_id": session }))
            }
            Request::ToolCall(call) => self.tool_call(call).await,
        }
    }
}

fn agent_id(raw: &str) -> Result<AgentId, IpcError> {
    AgentId::parse(raw).map_err(|e| IpcError::new("BRIDGE_DISPATCH_FAILED", e))
}

impl DaemonIpc {
    fn running_session(&self, agent: &AgentId) -> Option<String> {
        self.shared
            .with_live(|l| l.running.get(agent).and_then(|r| r.session_id.clone()))
    }

    async fn tool_call(&self, call: ToolCallArgs) -> Result<Value, IpcError> {
        let agent = agent_id(&call.agent_id)?;
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
