//! `assigned-agents.json`: the agents the server assigned to this host,
//! kept so that `apply` never archives them and `status` lists them. Read by
//! the reconciler and written by the daemon. Outside input like any file we
//! read back: entries that break the agent id rules are dropped.

use std::collections::BTreeSet;
use std::path::Path;

use crate::fsutil;
use crate::paths::AgentId;

/// The recorded ids; a missing or unreadable file is an empty set.
pub fn read(path: &Path) -> BTreeSet<String> {
    let raw: BTreeSet<String> = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    raw.into_iter()
        .filter(|id| AgentId::parse(id).is_ok())
        .collect()
}

/// Add or remove `id`; written only when the set changes.
pub fn record(path: &Path, id: &AgentId, assigned: bool) {
    let mut set = read(path);
    let changed = if assigned {
        set.insert(id.to_string())
    } else {
        set.remove(id.as_str())
    };
    if changed {
        let mut text = fsutil::json_pretty("assigned-agents.json", &set);
        text.push('\n');
        if let Err(e) = fsutil::write_atomic(path, text.as_bytes(), 0o600) {
            tracing::warn!("cannot record assigned agents in {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_drops_entries_that_are_not_agent_ids() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assigned-agents.json");
        let a = AgentId::parse("agent_a").unwrap();
        record(&f, &a, true);
        assert_eq!(read(&f), BTreeSet::from(["agent_a".to_string()]));
        std::fs::write(&f, r#"["agent_a", "../../etc", ""]"#).unwrap();
        assert_eq!(read(&f), BTreeSet::from(["agent_a".to_string()]));
        record(&f, &a, false);
        assert!(read(&f).is_empty());
    }
}
