//! Injected failures for the tests of the fault-tolerance promises (a
//! panicking wake, a crash between two steps of a compaction). Off unless
//! `CLOUDAGENT_DAEMON_TEST_FAILPOINTS` names them, e.g.
//! `wake_panic=m1,compaction_crash=after_snapshot`; read once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub const FAILPOINTS_ENV: &str = "CLOUDAGENT_DAEMON_TEST_FAILPOINTS";

fn points() -> &'static BTreeMap<String, String> {
    static POINTS: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    POINTS.get_or_init(|| parse(&std::env::var(FAILPOINTS_ENV).unwrap_or_default()))
}

fn parse(spec: &str) -> BTreeMap<String, String> {
    spec.split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Whether failpoint `name` is set to `value`.
pub fn is(name: &str, value: &str) -> bool {
    points().get(name).is_some_and(|v| v == value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_names_and_values() {
        let p = super::parse("wake_panic=m1, compaction_crash = after_snapshot,,bare");
        assert_eq!(p["wake_panic"], "m1");
        assert_eq!(p["compaction_crash"], "after_snapshot");
        assert_eq!(p["bare"], "");
        assert_eq!(p.len(), 3);
    }
}
