//! The MCP tools' names (docs/PROTOCOL.md, "Tools"). Their schemas and
//! descriptions live with the bridge (`bridge::tools`).

/// The MCP server key in claude's MCP config: tools are named
/// `mcp__cloudagent__<tool>` on claude's side.
pub const MCP_SERVER: &str = "cloudagent";

pub const SEND_MESSAGE: &str = "send_message";

/// Tools every agent gets, in the original's registration order.
pub const STAFF_TOOLS: [&str; 4] = [
    SEND_MESSAGE,
    "list_messages",
    "upload_file",
    "schedule_reminder",
];
/// Tools only chiefs get.
pub const CHIEF_TOOLS: [&str; 4] = [
    "delegate_to_staff",
    "close_task",
    "request_user_approval",
    "set_company_status",
];

pub fn is_chief_tool(name: &str) -> bool {
    CHIEF_TOOLS.contains(&name)
}

/// Whether an agent (chief or not) may call `tool`.
pub fn allowed(tool: &str, chief: bool) -> bool {
    STAFF_TOOLS.contains(&tool) || (chief && is_chief_tool(tool))
}

/// The tools an agent gets.
pub fn names(chief: bool) -> Vec<&'static str> {
    let chief_tools: &[&str] = if chief { &CHIEF_TOOLS } else { &[] };
    STAFF_TOOLS.iter().chain(chief_tools).copied().collect()
}

/// The name claude knows a tool by.
pub fn claude_name(tool: &str) -> String {
    format!("mcp__{MCP_SERVER}__{tool}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_get_staff_tools_and_chiefs_get_all() {
        assert!(allowed("send_message", false));
        assert!(!allowed("close_task", false));
        assert!(allowed("close_task", true));
        assert!(!allowed("rm_rf", true));
        assert_eq!(claude_name(SEND_MESSAGE), "mcp__cloudagent__send_message");
    }
}
