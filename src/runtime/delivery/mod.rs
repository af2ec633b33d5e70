//! What makes "nothing lost, nothing run twice" true: the journal (durable
//! records), the ledger (dedup, pending wakes, `last_seq`) and the outbox
//! (frames waiting for a connection).

pub mod journal;
pub mod ledger;
pub mod original_outbox;
pub mod outbox;
pub mod syncer;
