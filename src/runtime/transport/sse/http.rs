//! The HTTP client of one SSE session: one reqwest client (one connection
//! pool, HTTP/2 when the server offers it over TLS) with the machine key,
//! the same TLS trust as the WebSocket transport, and the status rules of
//! docs/PROTOCOL.md, "SSE + POST": 401/403 are terminal, 404, 408, 429 and
//! 5xx are retried (after `Retry-After` when the server sends one).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::super::tls::{self, ConnectError};
use crate::config::Secret;

/// Connecting (TCP + TLS) may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// One POST, answer included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// A `Retry-After` longer than this is not waited for in full.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    /// The server URL without a trailing `/`; paths are appended.
    base: String,
}

impl Client {
    pub fn new(server_url: &str, key: &Secret, insecure: bool) -> Result<Self, ConnectError> {
        let base = server_url.trim_end_matches('/').to_string();
        let other = |detail: String| ConnectError::Other {
            url: base.clone(),
            detail,
        };
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                other("the API key contains characters not allowed in an HTTP header".into())
            })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .tls_backend_preconfigured(
                tls_config(&base, insecure).map_err(|e| other(e.to_string()))?,
            )
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // Like the WebSocket transport: straight to the server.
            .no_proxy()
            .build()
            .map_err(|e| other(e.to_string()))?;
        Ok(Self { http, base })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The transports' TLS settings, with ALPN offering HTTP/2 first.
fn tls_config(base: &str, insecure: bool) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = tls::config_for(base, insecure)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What to do about an answer that is not 2xx, or a request that failed.
#[derive(Debug)]
pub enum Failed {
    /// 401/403: the key is refused.
    Auth(u16),
    /// Worth trying again, not before `after` if the server said so.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// The server will never accept this request (400, 413, 422…).
    Refused(String),
}

/// Classify a non-2xx answer.
pub fn status_failure(url: &str, resp: &reqwest::Response) -> Failed {
    let status = resp.status().as_u16();
    let why = format!("{url} answered HTTP {status}");
    match status {
        401 | 403 => Failed::Auth(status),
        404 | 408 | 425 | 429 | 500..=599 => Failed::Retry {
            why,
            after: retry_after(resp.headers()),
        },
        _ => Failed::Refused(why),
    }
}

/// A request that got no answer (refused, reset, timed out, bad TLS).
pub fn request_failure(url: &str, e: &reqwest::Error) -> Failed {
    Failed::Retry {
        why: describe(url, e),
        after: None,
    }
}

/// A reqwest error in words: a certificate problem is explained as over
/// WebSocket.
pub fn describe(url: &str, e: &reqwest::Error) -> String {
    let host = e
        .url()
        .and_then(|u| u.host_str())
        .unwrap_or_default()
        .to_string();
    if let Some(err) = tls::rustls_error(e) {
        return tls::tls_error(url, &host, err).to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    format!("cannot reach {url}: {text}")
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the backoff
/// applies), capped.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

impl Failed {
    /// As a connection error (for the handshake's requests).
    pub fn into_connect_error(self, url: &str) -> ConnectError {
        match self {
            Self::Auth(code) => ConnectError::Auth(code),
            Self::Retry { why, .. } | Self::Refused(why) => ConnectError::Other {
                url: url.to_string(),
                detail: why,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_is_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after", HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
