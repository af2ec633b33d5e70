//! Serving the metrics (README.md, "Metrics"): on the profile's own
//! `metrics.sock` in its daemon directory (0600, same-uid peers only, bound
//! like the bridge socket; the original shares one socket across profiles,
//! original §10), and over TCP at the profile's `metrics_listen` when set
//! (re-bound when a reload changes it). HTTP as the original speaks it: the
//! request is read up to its blank line (at most 2 s and 16 KiB), any path
//! is answered with `200`, the body and `Connection: close`.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use super::metrics::Snapshot;
use super::shared::Shared;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_HEAD: usize = 16 * 1024;

pub async fn run(shared: Arc<Shared>) {
    let path = shared.settings().paths.metrics_socket();
    let unix = async {
        match crate::bridge::ipc::Server::bind(&path) {
            // The guard removes the socket file when serving ends.
            Ok((_guard, listener)) => serve_unix(&shared, listener).await,
            Err(e) => tracing::warn!(
                "cannot serve metrics on {}: {e}; metrics are not available there",
                path.display()
            ),
        }
    };
    tokio::join!(unix, serve_tcp(&shared));
}

async fn serve_unix(shared: &Arc<Shared>, listener: UnixListener) {
    let uid = rustix::process::getuid().as_raw();
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics socket accept failed: {e}");
                    continue;
                }
            },
            () = shared.cancel.cancelled() => return,
        };
        match crate::platform::peer_credentials(stream.as_fd()) {
            Ok(cred) if cred.uid == uid => {}
            _ => continue,
        }
        tokio::spawn(answer(stream, shared.clone()));
    }
}

/// `metrics_listen`, following the settings: bound while set, re-bound
/// when it changes.
async fn serve_tcp(shared: &Arc<Shared>) {
    let mut rx = shared.watch_settings();
    loop {
        let want = rx.borrow_and_update().metrics_listen;
        if let Some(addr) = want {
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!("serving metrics on http://{addr}/metrics");
                    if accept_tcp(shared, &listener, &mut rx, addr).await {
                        return;
                    }
                    continue;
                }
                Err(e) => tracing::error!("cannot serve metrics on {addr} (metrics_listen): {e}"),
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = shared.cancel.cancelled() => return,
        }
    }
}

/// Accept until the address changes (`false`) or the daemon stops (`true`).
async fn accept_tcp(
    shared: &Arc<Shared>,
    listener: &TcpListener,
    rx: &mut tokio::sync::watch::Receiver<Arc<super::settings::Settings>>,
    addr: std::net::SocketAddr,
) -> bool {
    loop {
        tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(answer(s, shared.clone()));
                }
                Err(e) => tracing::warn!("metrics listener on {addr}: accept failed: {e}"),
            },
            changed = rx.changed() => {
                if changed.is_err() {
                    return true;
                }
                if rx.borrow().metrics_listen != Some(addr) {
                    return false;
                }
            }
            () = shared.cancel.cancelled() => return true,
        }
    }
}

/// Read the request head (bounded), answer with the metrics, close.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: Arc<Shared>) {
    let _ = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await;
    let body = render(&shared);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut reply = head.into_bytes();
    reply.extend_from_slice(body.as_bytes());
    if stream.write_all(&reply).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while head.len() < MAX_HEAD {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return;
        }
    }
}

/// The metrics text, with the state read now.
pub fn render(shared: &Shared) -> String {
    let s = shared.settings();
    let assigned = crate::workspace::assigned::read(&s.paths.assigned_agents_file());
    let undeclared = assigned
        .iter()
        .filter(|a| !s.agents.keys().any(|d| d.as_str() == a.as_str()))
        .count();
    let snapshot = Snapshot {
        outbox: shared.outbox.len(),
        queued: shared.with_live(|l| l.queued),
        agents: s.agents.len() + undeclared,
    };
    shared.metrics.render(snapshot)
}
