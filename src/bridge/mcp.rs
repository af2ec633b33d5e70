//! The stdio MCP server claude starts per agent (PROTOCOL §5): it offers the
//! agent's tools and forwards each call to the daemon over the bridge
//! socket. Nothing slow happens before serving: the identity is one small
//! file read, and the daemon is only contacted when a tool is called.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ServerCapabilities,
    ServerConfig, ToolsCapability,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Serialize;
use serde_json::Value;

use super::ipc::{self, ClientError};
use super::tools::{self, *};
use crate::paths::{AgentId, Home, ProfileName};
use crate::protocol::env::SOCKET_PATH as SOCKET_PATH_ENV;
use crate::protocol::ipc::{Request, ToolCallArgs};
use crate::protocol::tools::{CHIEF_TOOLS, is_chief_tool};
use crate::runtime::timing::Timing;
use crate::runtime::wake::token;
use crate::workspace::AgentLayout;

/// How much longer the bridge waits for the daemon than the daemon waits
/// for the backend, so that the daemon's answer (even its SERVER_TIMEOUT)
/// always reaches claude.
pub const IPC_MARGIN: Duration = Duration::from_secs(15);

/// Everything the bridge needs, resolved once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub agent_id: String,
    pub profile: ProfileName,
    /// `$CLOUDAGENT_DAEMON_SOCKET_PATH`, else the profile's `bridge.sock`.
    pub socket: PathBuf,
    /// From the profile's `<agents root>/<agent>/.meta/identity.json`.
    pub is_chief: bool,
    /// The daemon's tool timeout + [`IPC_MARGIN`].
    pub ipc_timeout: Duration,
    /// Where the running wake's token is (`--token-file`, else the
    /// agent's `.meta/claude-token.txt`); read at each call, since the
    /// daemon writes it per wake.
    pub token_file: Option<PathBuf>,
}

impl BridgeConfig {
    /// Resolve from the environment (HOME, the socket override, the test
    /// timing) for an agent of `profile`.
    pub fn from_env(
        agent_id: &str,
        profile: ProfileName,
        token_file: Option<PathBuf>,
    ) -> Result<Self, String> {
        let id = AgentId::parse(agent_id).map_err(|e| format!("--agent-id: {e}"))?;
        let timing = Timing::from_env()?;
        let override_socket = std::env::var_os(SOCKET_PATH_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        // Without HOME the bridge can still serve (as staff) when the
        // socket is given explicitly.
        let (socket, paths) = match (Home::from_env(), override_socket) {
            (Ok(home), socket) => {
                let paths = home.profile(&profile);
                (socket.unwrap_or_else(|| paths.socket()), Some(paths))
            }
            (Err(_), Some(socket)) => (socket, None),
            (Err(e), None) => return Err(e),
        };
        let layout = paths.as_ref().map(|p| AgentLayout::new(p, &id));
        let is_chief = layout
            .as_ref()
            .is_some_and(|l| read_is_chief(&l.identity()));
        let token_file = token_file.or_else(|| layout.map(|l| l.claude_token()));
        Ok(Self {
            agent_id: id.as_str().to_string(),
            profile,
            socket,
            is_chief,
            ipc_timeout: timing.tool_timeout + IPC_MARGIN,
            token_file,
        })
    }

    pub fn server_name(&self) -> String {
        format!("cloudagent-bridge-{}", self.agent_id)
    }
}

/// `is_chief` exactly `true` in the identity file; anything else (missing
/// or unreadable file, other values) means staff.
pub fn read_is_chief(identity: &Path) -> bool {
    let text = match std::fs::read(identity) {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(
                "no identity at {} ({e}): serving staff tools",
                identity.display()
            );
            return false;
        }
    };
    match serde_json::from_slice::<Value>(&text) {
        Ok(v) => v.get("is_chief") == Some(&Value::Bool(true)),
        Err(e) => {
            tracing::warn!(
                "unreadable identity {} ({e}): serving staff tools",
                identity.display()
            );
            false
        }
    }
}

/// The MCP server.
#[derive(Debug, Clone)]
pub struct Bridge {
    config: Arc<BridgeConfig>,
    tool_router: ToolRouter<Self>,
}

impl Bridge {
    pub fn new(config: BridgeConfig) -> Self {
        let mut tool_router = Self::tool_router();
        if !config.is_chief {
            for name in CHIEF_TOOLS {
                tool_router.remove_route(name);
            }
        }
        Self {
            config: Arc::new(config),
            tool_router,
        }
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    /// One IPC `tool_call`; the daemon fills in the running wake's business
    /// session (session_id null).
    async fn forward<T: Serialize>(&self, tool: &str, args: &T) -> CallToolResult {
        let started = Instant::now();
        let cfg = &self.config;
        let request = Request::ToolCall(ToolCallArgs {
            agent_id: cfg.agent_id.clone(),
            tool_name: tool.to_string(),
            tool_args: tools::forwarded_args(args),
            session_id: None,
            token: cfg.token_file.as_deref().and_then(token::read_presented),
        });
        let outcome = ipc::call(&cfg.socket, &request, cfg.ipc_timeout).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(data) => {
                tracing::info!("{tool}: ok ({elapsed:.1?})");
                tools::success_result(data)
            }
            Err(e) => {
                let text = match &e {
                    ClientError::NotRunning(path) => format!(
                        "the cloudagent daemon is not running (no socket at {}); start it with `cloudagent-daemon start{}`",
                        path.display(),
                        if cfg.profile.is_default() {
                            String::new()
                        } else {
                            format!(" --profile {}", cfg.profile)
                        },
                    ),
                    other => other.to_string(),
                };
                tracing::warn!("{tool}: {text} ({elapsed:.1?})");
                tools::error_result(tool, &text)
            }
        }
    }
}

#[tool_router]
impl Bridge {
    #[tool(description = tools::SEND_MESSAGE)]
    async fn send_message(&self, Parameters(args): Parameters<SendMessageArgs>) -> CallToolResult {
        self.forward("send_message", &args).await
    }

    #[tool(description = tools::LIST_MESSAGES)]
    async fn list_messages(
        &self,
        Parameters(args): Parameters<ListMessagesArgs>,
    ) -> CallToolResult {
        self.forward("list_messages", &args).await
    }

    #[tool(description = tools::UPLOAD_FILE)]
    async fn upload_file(&self, Parameters(args): Parameters<UploadFileArgs>) -> CallToolResult {
        self.forward("upload_file", &args).await
    }

    #[tool(description = tools::SCHEDULE_REMINDER)]
    async fn schedule_reminder(
        &self,
        Parameters(args): Parameters<ScheduleReminderArgs>,
    ) -> CallToolResult {
        self.forward("schedule_reminder", &args).await
    }

    #[tool(description = tools::DELEGATE_TO_STAFF)]
    async fn delegate_to_staff(
        &self,
        Parameters(args): Parameters<DelegateToStaffArgs>,
    ) -> CallToolResult {
        self.forward("delegate_to_staff", &args).await
    }

    #[tool(description = tools::CLOSE_TASK)]
    async fn close_task(&self, Parameters(args): Parameters<CloseTaskArgs>) -> CallToolResult {
        self.forward("close_task", &args).await
    }

    #[tool(description = tools::REQUEST_USER_APPROVAL)]
    async fn request_user_approval(
        &self,
        Parameters(args): Parameters<RequestUserApprovalArgs>,
    ) -> CallToolResult {
        self.forward("request_user_approval", &args).await
    }

    #[tool(description = tools::SET_COMPANY_STATUS)]
    async fn set_company_status(
        &self,
        Parameters(args): Parameters<SetCompanyStatusArgs>,
    ) -> CallToolResult {
        self.forward("set_company_status", &args).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::default();
        let mut tools_cap = ToolsCapability::default();
        tools_cap.list_changed = Some(false);
        capabilities.tools = Some(tools_cap);
        ServerConfig::new(capabilities).with_server_info(Implementation::new(
            self.config.server_name(),
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !self.config.is_chief && is_chief_tool(&request.name) {
            tracing::warn!("refused {}: a chief-only tool", request.name);
            return Err(ErrorData::invalid_params(
                format!(
                    "tool {} is only available to chief agents; {} is staff",
                    request.name, self.config.agent_id
                ),
                None,
            ));
        }
        let tcc = ToolCallContext::new(self, request, context);
        self.tool_router.call(tcc).await
    }
}

/// Serve MCP on stdin/stdout until claude closes stdin.
pub async fn serve_stdio(bridge: Bridge) -> Result<(), String> {
    let running = bridge
        .serve(rmcp::transport::io::stdio_pipes())
        .await
        .map_err(|e| format!("MCP initialisation failed: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("MCP server stopped: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tools::STAFF_TOOLS;

    #[test]
    fn is_chief_only_when_exactly_true() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("identity.json");
        assert!(!read_is_chief(&f));
        for (text, chief) in [
            (r#"{"agent_id":"a","is_chief":true}"#, true),
            (r#"{"agent_id":"a","is_chief":false}"#, false),
            (r#"{"agent_id":"a","is_chief":"true"}"#, false),
            (r#"{"agent_id":"a","is_chief":1}"#, false),
            (r#"{"agent_id":"a"}"#, false),
            ("not json", false),
        ] {
            std::fs::write(&f, text).unwrap();
            assert_eq!(read_is_chief(&f), chief, "{text}");
        }
    }

    fn config(is_chief: bool) -> BridgeConfig {
        BridgeConfig {
            agent_id: "agent_x".into(),
            profile: ProfileName::default_profile(),
            socket: "/nonexistent/bridge.sock".into(),
            is_chief,
            ipc_timeout: Duration::from_secs(1),
            token_file: None,
        }
    }

    #[test]
    fn tool_sets() {
        let names = |b: &Bridge| {
            let mut n: Vec<String> = b
                .tool_router
                .list_all()
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            n.sort();
            n
        };
        let mut staff: Vec<String> = STAFF_TOOLS.iter().map(|s| s.to_string()).collect();
        staff.sort();
        assert_eq!(names(&Bridge::new(config(false))), staff);
        let mut all: Vec<String> = STAFF_TOOLS
            .iter()
            .chain(CHIEF_TOOLS.iter())
            .map(|s| s.to_string())
            .collect();
        all.sort();
        assert_eq!(names(&Bridge::new(config(true))), all);
        let b = Bridge::new(config(true));
        let info = b.get_info();
        assert_eq!(info.server_info.name, "cloudagent-bridge-agent_x");
        assert_eq!(info.server_info.version, env!("CARGO_PKG_VERSION"));
    }
}
