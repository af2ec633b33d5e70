//! State shared by the session, the delivery path, the wakes and the IPC
//! server of one daemon.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::assign_queue::AssignQueue;
use super::delivery::ledger::Ledger;
use super::delivery::outbox::Outbox;
use super::metrics::Metrics;
use super::settings::Settings;
use super::timing::Timing;
use super::tool_calls::ToolCalls;
use super::wake::token::WakeToken;
use crate::paths::AgentId;
use crate::protocol::outbound::now_ts;
use crate::protocol::{MessageId, Usage, WakeStatus};

pub struct Shared {
    /// The settings in force. A `watch` keeps the latest value for every
    /// reader, so a change that lands while the session is busy (in its
    /// handshake, say) is seen at its next look, never lost.
    settings: watch::Sender<Arc<Settings>>,
    pub timing: Timing,
    pub outbox: Arc<Outbox>,
    ledger: Mutex<Ledger>,
    pub tools: ToolCalls,
    /// Root of every task: cancelled on SIGTERM/SIGINT.
    pub cancel: CancellationToken,
    /// Wakes the journal syncer (`delivery::syncer`); a permit is stored
    /// when it is busy, so no request is lost.
    pub sync_wanted: Notify,
    /// `assign` frames waiting to be applied (`assign_queue`).
    pub assigns: AssignQueue,
    /// Counters and histograms served on the metrics socket.
    pub metrics: Arc<Metrics>,
    live: Mutex<Live>,
}

/// What `status` shows about a running daemon.
#[derive(Debug, Clone)]
pub struct Live {
    pub connection: Connection,
    /// The transport of the current (or last) connection, and for `auto`
    /// why it was chosen.
    pub transport: Option<String>,
    /// Whether the current connection is SSE + POST, where the text claude
    /// streams is published as it comes (`publish-partial`).
    pub streams_partials: bool,
    /// Why the last attempt or connection failed, until one succeeds.
    pub last_error: Option<String>,
    pub host_id: Option<String>,
    pub running: BTreeMap<AgentId, RunningWake>,
    pub queued: usize,
    /// Waiting wakes by agent (only agents with some).
    pub queued_by_agent: BTreeMap<String, usize>,
    /// Finished wakes by agent since the daemon started: the last one's
    /// outcome and the usage summed.
    pub wakes: BTreeMap<AgentId, AgentWakes>,
    pub started_at: String,
    /// Why the last change to the config file was not used, if it was not.
    pub config_error: Option<String>,
    /// Why the key file cannot be read (the key read before stays in use).
    pub key_error: Option<String>,
    pub config_loaded_at: Option<String>,
    /// Why the last reconcile of local resources failed, until one works.
    pub reconcile_error: Option<String>,
    /// The last reconcile of local resources (reload or resync).
    pub last_reconcile: Option<Reconcile>,
    /// What `apply` would change in the profile's service unit.
    pub service_drift: Vec<String>,
    /// How many configurations have been put in force: 1 at start (with a
    /// config file), one more per reload that took.
    pub config_generation: u64,
    /// Directories the backend asked agents to run in that were refused
    /// (SECURITY.md, "Working directories"), by agent.
    pub refusals: BTreeMap<AgentId, String>,
}

/// The state of the link to the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    Connecting,
    Connected {
        since: String,
    },
    /// Lost; the next attempt comes after a backoff.
    Disconnected {
        since: String,
    },
    /// The key was refused: the daemon stops.
    AuthFailed,
    /// The profile is gone from the config file: no connection, no work,
    /// until it comes back.
    Parked {
        why: String,
    },
}

impl Connection {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected { .. } => "connected",
            Self::Disconnected { .. } => "disconnected",
            Self::AuthFailed => "auth failed",
            Self::Parked { .. } => "parked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningWake {
    pub message_id: MessageId,
    /// Business session id of the message (for the bridge's
    /// `get_current_session`).
    pub session_id: Option<String>,
    pub started_at: String,
    pub pid: Option<u32>,
    /// What the wake's bridge may do; never shown.
    #[serde(skip)]
    pub grant: Option<Grant>,
}

/// One reconcile of the profile's local resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    pub at: String,
    /// What ran it: `config reload` or `resync`.
    pub trigger: String,
    /// Its plan's summary line, e.g. `Plan: 1 to add, 0 to change, 0 to remove.`
    pub summary: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// One agent's finished wakes, as `status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentWakes {
    /// Wakes run to a final status since the daemon started.
    pub finished: u64,
    pub last: Option<LastWake>,
    /// Summed over the wakes that reported usage.
    pub usage: Usage,
}

/// How an agent's last wake ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastWake {
    pub message_id: MessageId,
    pub status: WakeStatus,
    pub exit_code: i64,
    pub finished_at: String,
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl AgentWakes {
    pub fn record(&mut self, last: LastWake) {
        self.finished = self.finished.saturating_add(1);
        if let Some(u) = &last.usage {
            self.usage.add(u);
        }
        self.last = Some(last);
    }
}

/// The tool rights of a running wake: calls must present its token, and
/// chief tools need a chief.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub token: WakeToken,
    pub chief: bool,
}

impl Shared {
    pub fn new(settings: Settings, timing: Timing, ledger: Ledger) -> Arc<Self> {
        let outbox = Arc::new(Outbox::default());
        let metrics = Arc::new(Metrics::new());
        let live = Live {
            connection: Connection::Connecting,
            transport: None,
            streams_partials: false,
            last_error: None,
            host_id: ledger.host_id().map(String::from),
            running: BTreeMap::new(),
            queued: 0,
            queued_by_agent: BTreeMap::new(),
            wakes: BTreeMap::new(),
            started_at: now_ts(),
            config_error: None,
            key_error: None,
            config_loaded_at: settings.config_file.as_ref().map(|_| now_ts()),
            reconcile_error: None,
            last_reconcile: None,
            service_drift: Vec::new(),
            config_generation: u64::from(settings.config_file.is_some()),
            refusals: BTreeMap::new(),
        };
        Arc::new(Self {
            settings: watch::Sender::new(Arc::new(settings)),
            timing,
            tools: ToolCalls::new(outbox.clone(), metrics.clone()),
            outbox,
            ledger: Mutex::new(ledger),
            cancel: CancellationToken::new(),
            sync_wanted: Notify::new(),
            assigns: AssignQueue::default(),
            metrics,
            live: Mutex::new(live),
        })
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    /// A receiver that sees every later change of the settings.
    pub fn watch_settings(&self) -> watch::Receiver<Arc<Settings>> {
        self.settings.subscribe()
    }

    /// Put `s` in force. Variables scrubbed from children so far stay
    /// scrubbed (see [`Settings::scrub_env`]).
    pub fn replace_settings(&self, mut s: Settings) {
        s.scrub_env
            .extend(self.settings().scrub_env.iter().cloned());
        self.settings.send_replace(Arc::new(s));
    }

    /// Ask for the journal's unsynced records (`done`) to be made durable
    /// soon, and for a compaction if one is due.
    pub fn want_sync(&self) {
        self.sync_wanted.notify_one();
    }

    pub fn with_ledger<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut lock(&self.ledger, "ledger"))
    }

    /// Record why something the backend asked of an agent was refused:
    /// logged the first time, shown by `status` until it changes.
    pub fn note_refusal(&self, id: &AgentId, text: String) {
        let new =
            self.with_live(|l| l.refusals.insert(id.clone(), text.clone()) != Some(text.clone()));
        if new {
            tracing::warn!("{text}");
        }
    }

    pub fn clear_refusal(&self, id: &AgentId) {
        self.with_live(|l| l.refusals.remove(id));
    }

    pub fn with_live<R>(&self, f: impl FnOnce(&mut Live) -> R) -> R {
        f(&mut lock(&self.live, "status"))
    }
}

/// A poisoned lock means a thread panicked while changing what it guards;
/// the ledger's promises do not survive that, so stop (see
/// [`crate::runtime::fatal`]).
fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    match m.lock() {
        Ok(g) => g,
        Err(_) => super::fatal(&format!("the {what} lock is poisoned")),
    }
}
