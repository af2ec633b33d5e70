//! Journal upkeep off the session task: the `done` records of finished
//! wakes made durable promptly (a power cut must not make a finished wake
//! run again), batched (many wakes finishing together cost one fdatasync),
//! and compaction, whose slow part runs without the ledger lock. Acks never
//! wait behind either: the session only ever syncs its own batch.

use std::sync::Arc;

use crate::runtime::shared::Shared;

/// Until shutdown, whenever [`Shared::want_sync`] was called.
pub async fn run(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.sync_wanted.notified() => {}
            _ = shared.cancel.cancelled() => return,
        }
        sync_done_records(&shared).await;
        compact_if_due(&shared).await;
    }
}

async fn sync_done_records(shared: &Arc<Shared>) {
    let Some(handle) = shared.with_ledger(|l| l.sync_handle()) else {
        return;
    };
    match tokio::task::spawn_blocking(move || handle.sync()).await {
        Ok(Ok(h)) => shared.with_ledger(|l| l.mark_synced(&h)),
        Ok(Err(e)) => crate::runtime::fatal(&format!("cannot sync the delivery journal: {e}")),
        Err(e) => crate::runtime::fatal(&format!("the journal sync task failed: {e}")),
    }
}

async fn compact_if_due(shared: &Arc<Shared>) {
    let Some(c) =
        shared.with_ledger(|l| l.compaction_due().then(|| l.begin_compaction()).flatten())
    else {
        return;
    };
    match tokio::task::spawn_blocking(move || c.prepare()).await {
        Ok(prepared) => shared.with_ledger(|l| l.finish_compaction(prepared)),
        Err(e) => crate::runtime::fatal(&format!("the journal compaction task failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::paths::{Home, ProfileName};
    use crate::protocol::MessageId;
    use crate::protocol::frames::{Inbound, parse};
    use crate::runtime::delivery::ledger::Ledger;
    use crate::runtime::settings::Settings;
    use crate::runtime::timing::Timing;

    #[tokio::test]
    async fn a_finished_wake_is_made_durable_without_another_deliver() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::one_shot(
            "http://127.0.0.1:9",
            "sk_machine_t",
            Default::default(),
            &ProfileName::default_profile(),
            Home::for_tests(dir.path()),
            PathBuf::from("/nonexistent"),
        )
        .unwrap();
        std::fs::create_dir_all(&settings.paths.base).unwrap();
        let (ledger, _) = Ledger::open(&settings.paths).unwrap();
        let shared = Shared::new(settings, Timing::default(), ledger);
        let text =
            r#"{"type":"deliver","seq":1,"payload":{"agent_id":"a","message_id":"m1","body":"b"}}"#;
        let Ok(Inbound::Deliver(d)) = parse(text) else {
            unreachable!()
        };
        shared.with_ledger(|l| {
            l.record_deliver(&d);
            l.sync();
            l.finish(&MessageId::string("m1"));
            assert!(
                l.sync_handle().is_some(),
                "the done record is not durable yet"
            );
        });
        let task = tokio::spawn(run(shared.clone()));
        shared.want_sync();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while shared.with_ledger(|l| l.sync_handle().is_some()) {
            assert!(tokio::time::Instant::now() < deadline, "never synced");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shared.cancel.cancel();
        task.await.unwrap();
    }
}
