//! Which transport a connection attempt uses (docs/PROTOCOL.md,
//! "Choosing the transport"): `ws` and `sse` are what they say; `auto`
//! tries WebSocket and falls back to SSE + POST when the upgrade is
//! answered with anything but 101 and 401 (404, 405, 426, a proxy's 403 or
//! 502…) or cut, then tries WebSocket again when an SSE session ends and
//! `ws_retry` (10 minutes) has passed since it fell back.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Transport;
use crate::runtime::settings::Settings;
use crate::runtime::transport::ConnectError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ws,
    Sse,
}

/// What `auto` learned: since when, and why, it uses SSE.
#[derive(Debug, Default)]
pub struct Choice {
    fallback: Option<(Instant, String)>,
}

impl Choice {
    pub fn pick(&mut self, settings: &Settings, ws_retry: Duration) -> Kind {
        match settings.transport {
            Transport::Ws => Kind::Ws,
            Transport::Sse => Kind::Sse,
            Transport::Auto => match &self.fallback {
                Some((since, _)) if since.elapsed() < ws_retry => Kind::Sse,
                Some(_) => {
                    tracing::info!("transport auto: trying WebSocket again");
                    Kind::Ws
                }
                None => Kind::Ws,
            },
        }
    }

    /// Under `auto`, a refused or cut upgrade switches to SSE (true: try
    /// again at once, over SSE).
    pub fn fall_back(&mut self, settings: &Settings, why: &str) -> bool {
        if settings.transport != Transport::Auto {
            return false;
        }
        tracing::warn!("transport auto: {why}; using SSE + POST instead");
        self.fallback = Some((Instant::now(), why.to_string()));
        true
    }

    /// A 403 on the WebSocket upgrade may be a proxy's: `auto` tries SSE,
    /// where a 401/403 is terminal. A 401 is always terminal.
    pub fn falls_back_on(&mut self, settings: &Settings, kind: Kind, e: &ConnectError) -> bool {
        match (kind, e) {
            (Kind::Ws, ConnectError::Auth(403)) => {
                self.fall_back(settings, "the WebSocket upgrade was answered with HTTP 403")
            }
            _ => false,
        }
    }

    /// What `status` and the log say about the transport in use. A working
    /// WebSocket ends a fallback.
    pub fn describe(&self, settings: &Settings, kind: Kind) -> String {
        match (settings.transport, kind, &self.fallback) {
            (Transport::Auto, Kind::Sse, Some((_, why))) => {
                format!("sse (auto: {why})")
            }
            (Transport::Auto, Kind::Ws, _) => "ws (auto)".into(),
            (_, Kind::Ws, _) => "ws".into(),
            (_, Kind::Sse, _) => "sse".into(),
        }
    }
}
