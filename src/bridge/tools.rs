//! The bridge's tools (PROTOCOL §5.3): argument types (their JSON Schemas
//! are what claude sees), descriptions, who may call what, and the shape of
//! results. Pure: no I/O, so it is unit-tested here.

use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub const SEND_MESSAGE: &str = "Send a message to another agent or the user. When replying (kind=\"reply\" or \"question\"), MUST set parent_msg_id to the inbound message's message_id (shown in the [meta] header of your stdin) so the sender's wait_for_replies satisfies; leave parent_msg_id=None for unsolicited kind=\"task\" / \"report\" sends.";
pub const LIST_MESSAGES: &str = "List recent messages in the agent's inbox.";
pub const UPLOAD_FILE: &str = "Upload a local file and attach it to the conversation.";
pub const SCHEDULE_REMINDER: &str = "Schedule a reminder for the agent at a future time.";
pub const DELEGATE_TO_STAFF: &str = "[chief] Delegate work to a staff agent.";
pub const CLOSE_TASK: &str = "[chief] Mark a task closed with a summary.";
pub const REQUEST_USER_APPROVAL: &str = "[chief] Ask the user for explicit approval.";
pub const SET_COMPANY_STATUS: &str = "[chief] Update the company-wide status string.";

fn default_kind() -> String {
    "task".to_string()
}

fn default_limit() -> i64 {
    50
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct SendMessageArgs {
    /// Recipient: an agent id, or "user".
    #[schemars(title = "Target")]
    pub target: String,
    /// The message text.
    #[schemars(title = "Body")]
    pub body: String,
    /// Message kind: "task", "report", "reply" or "question".
    #[serde(default = "default_kind")]
    #[schemars(title = "Kind")]
    pub kind: String,
    /// The message_id of the inbound message this answers (from the [meta] header); null for unsolicited messages.
    #[serde(
        default,
        deserialize_with = "lenient_opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    // (skip_serializing_if would make schemars drop the default.)
    #[schemars(title = "Parent Msg Id", extend("default" = null))]
    pub parent_msg_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ListMessagesArgs {
    /// How many of the most recent messages to return.
    #[serde(default = "default_limit", deserialize_with = "lenient_int")]
    #[schemars(title = "Limit")]
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct UploadFileArgs {
    /// Path of the local file to upload.
    #[schemars(title = "Path")]
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ScheduleReminderArgs {
    /// When to be reminded (a time or a delay, e.g. an ISO 8601 timestamp).
    #[schemars(title = "When")]
    pub when: String,
    /// What the reminder should say.
    #[schemars(title = "Body")]
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct DelegateToStaffArgs {
    /// The staff agent's id.
    #[schemars(title = "Staff Id")]
    pub staff_id: String,
    /// The work to delegate.
    #[schemars(title = "Body")]
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct CloseTaskArgs {
    /// The task's id.
    #[schemars(title = "Task Id")]
    pub task_id: String,
    /// What was done.
    #[schemars(title = "Summary")]
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct RequestUserApprovalArgs {
    /// The question the user must approve or reject.
    #[schemars(title = "Question")]
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct SetCompanyStatusArgs {
    /// The new company-wide status.
    #[schemars(title = "Status")]
    pub status: String,
}

/// An integer, also accepted as a string of digits (the original's pydantic
/// arguments were that lenient, and models sometimes quote numbers).
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

fn to_int<E: serde::de::Error>(v: IntOrString) -> Result<i64, E> {
    match v {
        IntOrString::Int(i) => Ok(i),
        IntOrString::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("expected an integer, got {s:?}"))),
    }
}

fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    to_int(IntOrString::deserialize(d)?)
}

fn lenient_opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<IntOrString>::deserialize(d)?
        .map(to_int)
        .transpose()
}

/// The tool_args forwarded to the daemon: exactly the arguments, with the
/// defaults filled in (`kind`, `limit`) and a null `parent_msg_id` left out.
pub fn forwarded_args<T: Serialize>(args: &T) -> Value {
    serde_json::to_value(args).unwrap_or(Value::Null)
}

/// Success: the data as 2-space pretty JSON text, and as structuredContent
/// when it is an object (MCP allows only objects there).
pub fn success_result(data: Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(&data).unwrap_or_else(|_| data.to_string());
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    if data.is_object() {
        result.structured_content = Some(data);
    }
    result
}

/// Failure: `Error executing tool <name>: <what went wrong>`, isError true.
pub fn error_result(tool: &str, error: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "Error executing tool {tool}: {error}"
    ))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema<T: JsonSchema + 'static>() -> Value {
        Value::Object(
            rmcp::handler::server::tool::schema_for_type::<T>()
                .as_ref()
                .clone(),
        )
    }

    #[test]
    fn send_message_schema_and_forwarding() {
        let s = schema::<SendMessageArgs>();
        assert_eq!(s["required"], json!(["target", "body"]));
        assert_eq!(s["properties"]["kind"]["default"], "task");
        assert_eq!(
            s["properties"]["parent_msg_id"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(s["properties"]["parent_msg_id"]["default"], Value::Null);
        assert_eq!(s["properties"]["target"]["title"], "Target");
        assert!(
            s["properties"]["target"]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );

        let a: SendMessageArgs =
            serde_json::from_value(json!({"target": "user", "body": "hi"})).unwrap();
        assert_eq!(
            forwarded_args(&a),
            json!({"target": "user", "body": "hi", "kind": "task"})
        );
        let a: SendMessageArgs = serde_json::from_value(
            json!({"target": "u", "body": "b", "kind": "reply", "parent_msg_id": 236}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&forwarded_args(&a)).unwrap(),
            r#"{"target":"u","body":"b","kind":"reply","parent_msg_id":236}"#
        );
        let a: SendMessageArgs =
            serde_json::from_value(json!({"target": "u", "body": "b", "parent_msg_id": null}))
                .unwrap();
        assert_eq!(a.parent_msg_id, None);
        let a: SendMessageArgs =
            serde_json::from_value(json!({"target": "u", "body": "b", "parent_msg_id": " 7"}))
                .unwrap();
        assert_eq!(a.parent_msg_id, Some(7));
        assert!(
            serde_json::from_value::<SendMessageArgs>(
                json!({"target": "u", "body": "b", "parent_msg_id": "x"})
            )
            .is_err()
        );
        assert!(serde_json::from_value::<SendMessageArgs>(json!({"target": "u"})).is_err());
    }

    #[test]
    fn list_messages_always_sends_limit() {
        let s = schema::<ListMessagesArgs>();
        assert_eq!(s["properties"]["limit"]["type"], "integer");
        assert_eq!(s["properties"]["limit"]["default"], 50);
        assert!(s.get("required").is_none_or(|r| r == &json!([])));
        let a: ListMessagesArgs = serde_json::from_value(json!({})).unwrap();
        assert_eq!(forwarded_args(&a), json!({"limit": 50}));
        let a: ListMessagesArgs = serde_json::from_value(json!({"limit": "5"})).unwrap();
        assert_eq!(forwarded_args(&a), json!({"limit": 5}));
    }

    #[test]
    fn other_schemas_require_every_field() {
        assert_eq!(schema::<UploadFileArgs>()["required"], json!(["path"]));
        assert_eq!(
            schema::<ScheduleReminderArgs>()["required"],
            json!(["when", "body"])
        );
        assert_eq!(
            schema::<DelegateToStaffArgs>()["required"],
            json!(["staff_id", "body"])
        );
        assert_eq!(
            schema::<CloseTaskArgs>()["required"],
            json!(["task_id", "summary"])
        );
        assert_eq!(
            schema::<RequestUserApprovalArgs>()["required"],
            json!(["question"])
        );
        assert_eq!(
            schema::<SetCompanyStatusArgs>()["required"],
            json!(["status"])
        );
    }

    #[test]
    fn result_shapes() {
        let r =
            serde_json::to_value(success_result(json!({"message_id": "m1", "n": [1]}))).unwrap();
        assert_eq!(r["content"][0]["type"], "text");
        assert_eq!(
            r["content"][0]["text"],
            "{\n  \"message_id\": \"m1\",\n  \"n\": [\n    1\n  ]\n}"
        );
        assert_eq!(
            r["structuredContent"],
            json!({"message_id": "m1", "n": [1]})
        );
        assert_eq!(r["isError"], false);

        let r = serde_json::to_value(success_result(json!([1, 2]))).unwrap();
        assert!(r.get("structuredContent").is_none());
        assert_eq!(r["content"][0]["text"], "[\n  1,\n  2\n]");

        let r =
            serde_json::to_value(error_result("send_message", "IPC error SERVER_TIMEOUT")).unwrap();
        assert_eq!(
            r["content"][0]["text"],
            "Error executing tool send_message: IPC error SERVER_TIMEOUT"
        );
        assert_eq!(r["isError"], true);
        assert!(r.get("structuredContent").is_none());
    }
}
