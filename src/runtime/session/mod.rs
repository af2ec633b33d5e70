//! The link to the backend, kept up until shutdown: connect and handshake
//! (`handshake`), exchange frames until the connection ends (`pump`), then
//! reconnect — at once when the settings changed, after a backoff when the
//! connection was lost. 401/403 and a `bye` for a removed host end the
//! daemon; everything else is retried (docs/PROTOCOL.md, "Reconnecting").

mod choice;
pub mod handshake;
pub mod pump;

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;

use super::metrics::Reconnect;
use super::settings::Settings;
use super::shared::{Connection, Shared};
use super::timing::Backoff;
use super::transport::{ConnectError, FrameReader, FrameWriter};
use super::wake::scheduler::Scheduler;
use crate::protocol::outbound::{Runtime, now_ts};
use choice::Kind;
use handshake::{Established, Failure};

#[derive(Debug, Error)]
pub enum Fatal {
    #[error(transparent)]
    Auth(ConnectError),
    #[error(
        "the backend removed this host (bye: {0:?}); not reconnecting. Register the machine again in the cloudagent UI."
    )]
    HostRemoved(String),
}

/// How a session ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Shutdown,
    /// The settings it was connected with changed (server, key, TLS):
    /// reconnect at once, with the new ones.
    Reconfigured,
    /// The connection went away; `handshake` tells whether it got as far as
    /// a complete handshake (which resets the backoff).
    Lost {
        handshake: bool,
        reason: String,
    },
    HostRemoved(String),
    /// The backend sent a frame over `max_frame_mib`. It will send it again,
    /// so the backoff is not reset: no tight reconnect loop.
    FrameTooLarge {
        size: usize,
        max: usize,
    },
}

/// Keep the daemon connected until shutdown or a terminal error.
/// `runtimes`: what `start` just detected (and printed), for the first
/// handshake; later handshakes detect again.
pub async fn run(
    shared: Arc<Shared>,
    scheduler: Arc<Scheduler>,
    runtimes: Vec<Runtime>,
) -> Result<(), Fatal> {
    let mut startup = Some(runtimes);
    let mut backoff = Backoff::new(shared.timing.backoff_base, shared.timing.backoff_max);
    let mut settings_rx = shared.watch_settings();
    let mut choice = choice::Choice::default();
    // The oversized frame last reported: the same one, sent again after
    // each reconnect, is logged once.
    let mut reported_oversize = None;
    loop {
        let settings = settings_rx.borrow_and_update().clone();
        if let Some(why) = &settings.parked {
            shared.with_live(|l| l.connection = Connection::Parked { why: why.clone() });
            tokio::select! {
                () = reconnect_needed(&mut settings_rx, &settings) => continue,
                () = shared.cancel.cancelled() => return Ok(()),
            }
        }
        shared.with_live(|l| l.connection = Connection::Connecting);
        let kind = choice.pick(&settings, shared.timing.ws_retry);
        let link = Link {
            kind,
            label: choice.describe(&settings, kind),
            shared: &shared,
            scheduler: &scheduler,
            settings_rx: &mut settings_rx,
            settings: &settings,
        };
        let attempt = match kind {
            Kind::Ws => session(handshake::ws(&shared, &settings, &mut startup), link).await,
            Kind::Sse => session(handshake::sse(&shared, &settings, &mut startup), link).await,
        };
        let mut floor = None;
        let ended = match attempt {
            Err(Failure::Auth(e)) => {
                if choice.falls_back_on(&settings, kind, &e) {
                    continue;
                }
                shared.with_live(|l| {
                    l.connection = Connection::AuthFailed;
                    l.last_error = Some(e.to_string());
                });
                return Err(Fatal::Auth(e));
            }
            Err(Failure::Shutdown) => return Ok(()),
            Err(Failure::TooLarge { size, max }) => Ended::FrameTooLarge { size, max },
            Err(Failure::NoWebSocket(reason)) if choice.fall_back(&settings, &reason) => continue,
            Err(Failure::Other(reason) | Failure::NoWebSocket(reason)) => Ended::Lost {
                handshake: false,
                reason,
            },
            Err(Failure::Later { reason, after }) => {
                floor = Some(after);
                Ended::Lost {
                    handshake: false,
                    reason,
                }
            }
            Ok(ended) => ended,
        };
        let (reason, brief) = match ended {
            Ended::Shutdown => return Ok(()),
            Ended::HostRemoved(reason) => return Err(Fatal::HostRemoved(reason)),
            Ended::Reconfigured => {
                tracing::info!("the server settings changed: reconnecting");
                shared
                    .metrics
                    .reconnect(Reconnect::Reconfigured, kind == Kind::Sse);
                continue;
            }
            Ended::Lost { handshake, reason } => {
                if handshake {
                    backoff.reset();
                }
                let why = if handshake {
                    Reconnect::Lost
                } else {
                    Reconnect::ConnectFailed
                };
                shared.metrics.reconnect(why, kind == Kind::Sse);
                (reason.clone(), reason)
            }
            Ended::FrameTooLarge { size, max } => {
                shared
                    .metrics
                    .reconnect(Reconnect::FrameTooLarge, kind == Kind::Sse);
                let reason = handshake::too_large(size, max);
                if reported_oversize.replace((size, max)) != Some((size, max)) {
                    tracing::error!("{reason}");
                }
                (reason, format!("an oversized frame ({size} bytes) again"))
            }
        };
        let delay = backoff.next_delay().max(floor.unwrap_or_default());
        tracing::warn!(
            "connection to {}: {brief}; reconnecting in {:.1} s",
            settings.server_url,
            delay.as_secs_f64()
        );
        shared.with_live(|l| {
            l.connection = Connection::Disconnected { since: now_ts() };
            l.last_error = Some(reason);
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = reconnect_needed(&mut settings_rx, &settings) => {}
            () = shared.cancel.cancelled() => return Ok(()),
        }
    }
}

/// Open a session over one transport and pump it until it ends. A
/// settings change during the handshake reconnects at once.
/// What one session over either transport needs.
struct Link<'a> {
    kind: Kind,
    /// The transport, and for `auto` why it was chosen (log and `status`).
    label: String,
    shared: &'a Arc<Shared>,
    scheduler: &'a Arc<Scheduler>,
    settings_rx: &'a mut watch::Receiver<Arc<Settings>>,
    settings: &'a Settings,
}

async fn session<R: FrameReader, W: FrameWriter>(
    open: impl Future<Output = Result<Established<R, W>, Failure>>,
    link: Link<'_>,
) -> Result<Ended, Failure> {
    let Link {
        kind,
        label,
        shared,
        scheduler,
        settings_rx,
        settings,
    } = link;
    let established = tokio::select! {
        r = open => r?,
        () = reconnect_needed(settings_rx, settings) => {
            tracing::info!("the server settings changed during the handshake: reconnecting");
            return Ok(Ended::Reconfigured);
        }
        () = shared.cancel.cancelled() => return Err(Failure::Shutdown),
    };
    tracing::info!("transport: {label}");
    shared.with_live(|l| {
        l.transport = Some(label);
        l.streams_partials = kind == Kind::Sse;
    });
    Ok(pump::run(established, shared, scheduler, settings_rx, settings).await)
}

/// Whether a connection made with `old` must be made again with `new`.
pub fn needs_reconnect(old: &Settings, new: &Settings) -> bool {
    old.server_url != new.server_url
        || old.api_key != new.api_key
        || old.insecure != new.insecure
        || old.transport != new.transport
        || old.max_frame_mib != new.max_frame_mib
        || old.parked != new.parked
}

/// Resolves once the settings have changed in a way that needs a new
/// connection (other changes, such as the agents, are taken as they come).
pub async fn reconnect_needed(rx: &mut watch::Receiver<Arc<Settings>>, connected_with: &Settings) {
    loop {
        if rx.changed().await.is_err() {
            // The daemon is going away; shutdown ends the session.
            return std::future::pending().await;
        }
        if needs_reconnect(connected_with, &rx.borrow_and_update()) {
            return;
        }
    }
}
