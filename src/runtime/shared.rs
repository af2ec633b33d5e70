//! State shared by the connection, the delivery path, the wakes and the IPC
//! server of one daemon.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use super::outbox::Outbox;
use super::settings::Settings;
use super::timing::Timing;
use super::tool_calls::ToolCalls;

pub struct Shared {
    settings: RwLock<Arc<Settings>>,
    pub timing: Timing,
    pub outbox: Arc<Outbox>,
    pub ledger: Mutex<Ledger>,
    pub tools: ToolCalls,
    /// Root of every task: cancelled on SIGTERM/SIGINT.
    pub cancel: CancellationToken,
    pub live: Mutex<Live>,
    /// Ends the current connection (new server settings); the daemon then
    /// reconnects with the settings in force.
    pub reconnect: tokio::sync::Notify,
}

/// What `status` shows about a running daemon.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    pub connection: String,
    pub connected_since: Option<String>,
    pub last_error: Option<String>,
    pub host_id: Option<String>,
    pub running: BTreeMap<String, RunningWake>,
    pub queued: usize,
    pub started_at: String,
    /// Why the last change to the config file was not used, if it was not.
    pub config_error: Option<String>,
    pub config_loaded_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningWake {
    pub message_id: Value,
    /// Business session id of the message (for the bridge's
    /// `get_current_session`).
    pub session_id: Option<String>,
    pub started_at: String,
    pub pid: Option<u32>,
}

impl Shared {
    pub fn new(settings: Settings, timing: Timing, ledger: Ledger) -> Arc<Self> {
        let outbox = Arc::new(Outbox::default());
        let live = Live {
            connection: "connecting".into(),
            host_id: ledger.host_id().map(String::from),
            started_at: super::frames::now_ts(),
            ..Live::default()
        };
        Arc::new(Self {
            settings: RwLock::new(Arc::new(settings)),
            timing,
            tools: ToolCalls::new(outbox.clone()),
            outbox,
            ledger: Mutex::new(ledger),
            cancel: CancellationToken::new(),
            live: Mutex::new(live),
            reconnect: tokio::sync::Notify::new(),
        })
    }

    pub fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace_settings(&self, s: Settings) {
        match self.settings.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(s),
        }
    }

    pub fn with_ledger<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        match self.ledger.lock() {
            Ok(mut l) => f(&mut l),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn with_live<R>(&self, f: impl FnOnce(&mut Live) -> R) -> R {
        match self.live.lock() {
            Ok(mut l) => f(&mut l),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}
