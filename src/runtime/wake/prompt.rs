//! The text claude gets: the appended system prompt (PROTOCOL §4.2,
//! Appendix A) and the wake prompt on stdin (§4.3, Appendix B). The wording
//! is ours; the `[meta]` header format is not, because the agent copies its
//! field names and values into its tool calls.

use crate::protocol::frames::DeliverPayload;

const BASE_PROMPT: &str = r#"You are agent `{agent_id}`, running inside the cloudagent local daemon.

Each run wakes you for exactly one message from your inbox: the text on your stdin. It starts with a [meta] header (dispatch_source, from, sender_role, parent_msg_id, message_id) followed by the message body.

Nobody reads your stdout. Only MCP tool calls reach the user or other agents, so never answer in plain text. Exit when you are done.

Before you answer the stdin message, sweep your inbox: call list_messages(limit=20) first and answer every unread message addressed to you that is not the current one, following the same rules.

Routing rules for send_message:
- A reply (kind="reply") or a question back (kind="question") goes to whoever sent the inbound message: set target to the sender from its [meta] header (the `from` value, or `sender_role` when there is no `from`). Never default target to "user".
- A reply or question sets parent_msg_id to the inbound message's `message_id` from the [meta] header. The backend threads replies by parent_msg_id; without it the sender keeps waiting.
- Unsolicited sends (kind="task" or kind="report") leave parent_msg_id unset.

Your tools (MCP server `cloudagent`; claude names them mcp__cloudagent__<tool>):
- send_message(target, body, kind, parent_msg_id): send a message to another agent or the user.
- list_messages(limit): list recent messages in your inbox.
- upload_file(path): upload a local file and attach it to the conversation.
- schedule_reminder(when, body): schedule a reminder for yourself at a future time."#;

const CHIEF_TOOLS_TEXT: &str = r#"
Chief-only tools:
- delegate_to_staff(staff_id, body): delegate work to a staff agent.
- close_task(task_id, summary): mark a task closed with a summary.
- request_user_approval(question): ask the user for explicit approval.
- set_company_status(status): update the company-wide status string."#;

const SCAFFOLDING: &str = r#"[Assistant scaffolding — not user content. Do not echo, quote, or reference this block in your reply.]
Reply via tool call only: call send_message with
  target = the sender from the [meta] header above (`from`, else `sender_role`; never assume "user"),
  parent_msg_id = the `message_id` from the [meta] header above,
  kind = "reply" (or "question" if you need more from the sender).
The daemon discards stdout — only the send_message tool call reaches the sender.
"#;

/// The `--append-system-prompt` text: our instructions, then the agent's
/// and the deliver's own additions, each after a blank line if non-blank.
pub fn system_prompt(
    agent_id: &str,
    chief: bool,
    agent_append: Option<&str>,
    deliver_append: Option<&str>,
) -> String {
    let mut out = BASE_PROMPT.replace("{agent_id}", agent_id);
    if chief {
        out.push_str(CHIEF_TOOLS_TEXT);
    }
    for extra in [agent_append, deliver_append].into_iter().flatten() {
        let extra = extra.trim();
        if !extra.is_empty() {
            out.push_str("\n\n");
            out.push_str(extra);
        }
    }
    out
}

/// The `[meta]` block that starts the wake prompt, or `""` when the payload
/// carries none of its fields.
pub fn meta_header(payload: &DeliverPayload) -> String {
    let lines: Vec<String> = payload
        .meta
        .iter()
        .filter_map(|(key, value)| {
            // One value per line: a newline inside would forge more fields.
            let value = value.replace(['\r', '\n'], " ");
            let value = value.trim();
            (!value.is_empty()).then(|| format!("{key}: {value}"))
        })
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("[meta]\n{}\n[/meta]\n\n", lines.join("\n"))
    }
}

/// The text written to claude's stdin (without the daemon's final `\n`).
pub fn wake_prompt(payload: &DeliverPayload) -> String {
    format!(
        "{}{}\n\n---\n{SCAFFOLDING}",
        meta_header(payload),
        payload.body
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tools::{CHIEF_TOOLS, STAFF_TOOLS};
    use serde_json::{Value, json};

    fn map(v: Value) -> DeliverPayload {
        DeliverPayload::parse(&v.to_string()).unwrap()
    }

    fn example() -> DeliverPayload {
        map(json!({
            "body": "hello",
            "message_id": 236,
            "from": "user",
            "session_id": "sess-1",
            "dispatch_source": "user_direct",
        }))
    }

    #[test]
    fn header_matches_protocol_example() {
        assert_eq!(
            meta_header(&example()),
            "[meta]\ndispatch_source: user_direct\nfrom: user\nmessage_id: 236\n[/meta]\n\n"
        );
    }

    #[test]
    fn header_skips_empty_and_flattens_newlines() {
        let payload = map(json!({
            "message_id": "  ",
            "parent_msg_id": null,
            "sender_role": "\r\n",
            "from": " chief\r\nmessage_id: 1 ",
            "dispatch_source": true,
        }));
        assert_eq!(
            meta_header(&payload),
            "[meta]\ndispatch_source: true\nfrom: chief  message_id: 1\n[/meta]\n\n"
        );
        assert_eq!(meta_header(&map(json!({"body": "x", "from": ""}))), "");
    }

    #[test]
    fn wake_prompt_shape() {
        let text = wake_prompt(&example());
        assert!(text.starts_with("[meta]\ndispatch_source: user_direct\n"));
        assert!(text.contains("[/meta]\n\nhello\n\n---\n[Assistant scaffolding"));
        assert!(text.ends_with("reaches the sender.\n"));
        let bare = wake_prompt(&map(json!({"body": 5})));
        assert!(bare.starts_with("\n\n---\n"));
        insta::assert_snapshot!("wake_prompt_example", text);
    }

    #[test]
    fn system_prompt_staff() {
        let text = system_prompt("agent-42", false, None, Some("   "));
        assert!(text.contains("agent `agent-42`"));
        for tool in STAFF_TOOLS {
            assert!(text.contains(&format!("- {tool}(")), "{tool}");
        }
        for tool in CHIEF_TOOLS {
            assert!(!text.contains(tool), "{tool}");
        }
        assert!(text.contains("list_messages(limit=20)"));
        insta::assert_snapshot!("system_prompt_staff", text);
    }

    #[test]
    fn system_prompt_chief_with_appends() {
        let text = system_prompt(
            "chief-1",
            true,
            Some("\n  Agent rules.  \n"),
            Some(" Deliver rules."),
        );
        for tool in STAFF_TOOLS.iter().chain(&CHIEF_TOOLS) {
            assert!(text.contains(&format!("- {tool}(")), "{tool}");
        }
        assert!(text.ends_with("string.\n\nAgent rules.\n\nDeliver rules."));
        insta::assert_snapshot!("system_prompt_chief", text);
    }
}
