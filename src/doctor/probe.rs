//! The backend checked step by step when no daemon runs: DNS, TCP, then
//! the WebSocket upgrade with the key (TLS, HTTP, key accepted) and the
//! server's `hello`, then a clean close. Nothing is sent that changes
//! anything on the server (no `ready`, no acks).

use std::time::Duration;

use super::live::key_fix;
use super::report::Row;
use crate::config::Secret;
use crate::runtime::transport::{ConnectError, Event, FrameReader, FrameWriter, ws};

const STEP: Duration = Duration::from_secs(5);

pub async fn backend(url: &str, key: &Secret, insecure: bool, key_home: &str) -> Row {
    let net = "check the server URL (the config row names the file), the network, and any proxy or firewall";
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Row::alert("backend", format!("{url} is not a URL"), net);
    };
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs =
        match tokio::time::timeout(STEP, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(a)) => a.collect::<Vec<_>>(),
            Ok(Err(e)) => {
                return Row::alert("backend", format!("DNS: cannot resolve {host}: {e}"), net);
            }
            Err(_) => return Row::alert("backend", format!("DNS: no answer for {host}"), net),
        };
    let Some(addr) = addrs.first() else {
        return Row::alert("backend", format!("DNS: no address for {host}"), net);
    };
    match tokio::time::timeout(STEP, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Row::alert(
                "backend",
                format!("TCP: cannot connect to {host}:{port} ({addr}): {e}"),
                net,
            );
        }
        Err(_) => {
            return Row::alert(
                "backend",
                format!("TCP: {host}:{port} ({addr}) did not answer"),
                net,
            );
        }
    }
    crate::runtime::transport::tls::install_crypto_provider();
    let ws_url = ws::url(url);
    let (mut reader, mut writer) = match ws::connect(&ws_url, key, insecure, 16 << 20).await {
        Ok(pair) => pair,
        Err(ConnectError::Auth(code)) => {
            return Row::alert(
                "backend",
                format!("{url} rejected the machine API key (HTTP {code})"),
                key_fix(key_home),
            );
        }
        Err(e @ ConnectError::Certificate { .. }) => {
            return Row::alert("backend", format!("TLS: {e}"), "see the message");
        }
        Err(ConnectError::Status { status, .. }) => {
            return Row::warn(
                "backend",
                format!(
                    "{url} reachable, but it answered the WebSocket upgrade with HTTP {status}; the key was not checked"
                ),
                "an SSE-only server is checked by the daemon itself: start it and run doctor again",
            );
        }
        Err(e) => return Row::alert("backend", e.to_string(), net),
    };
    let hello = tokio::time::timeout(STEP, reader.next()).await;
    // Nothing is queued by a probe: an empty outbox for the close.
    let none = crate::runtime::delivery::outbox::Outbox::default();
    writer.close("doctor", &none).await;
    match hello {
        Ok(Event::Frame(text)) => {
            let host_id = serde_json::from_str::<serde_json::Value>(text.as_str())
                .ok()
                .and_then(|v| v["payload"]["host_id"].as_str().map(String::from))
                .unwrap_or_default();
            Row::ok(
                "backend",
                format!(
                    "{url}: DNS, TCP, TLS and handshake fine, key accepted, hello received (host {host_id}); checked by doctor, no daemon running"
                ),
            )
        }
        _ => Row::warn(
            "backend",
            format!("{url}: key accepted, but no hello within {STEP:?}"),
            "check the server; the daemon waits 30 s for hello and retries",
        ),
    }
}
