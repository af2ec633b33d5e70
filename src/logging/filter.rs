//! Which events are written: the user's level or filter (`log_level` in
//! cloudagent.toml, `CLOUDAGENT_LOG`), and below it a cap no filter can
//! lift: the HTTP, WebSocket and TLS libraries log nothing below `info`.
//! At `debug`/`trace` they log whole requests, and the upgrade request
//! carries `Authorization: Bearer sk_machine_…` (README "Logs").

use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::registry::LookupSpan;

/// Overrides the configured level: a level, or comma-separated
/// `target=level` directives (`debug`, `info,cloudagent_daemon=trace`).
/// Empty means unset. Parsed as `tracing_subscriber`'s `Targets` rather
/// than `EnvFilter`: the same syntax without span and field filters, and
/// without the regex engine they bring into the daemon's resident code
/// (README "Benchmarks", idle RSS).
pub const ENV: &str = "CLOUDAGENT_LOG";

/// Every crate that handles a connection's bytes or headers, the ones
/// linked today and the ones a transport would bring (SSE over reqwest,
/// hyper, h2, native TLS). A target matches by prefix, so `hyper` covers
/// `hyper_util` and `rustls` covers `rustls_native_certs`.
const TRANSPORT_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "rustls",
    "tokio_rustls",
    "webpki",
    "hyper",
    "reqwest",
    "h2",
    "h3",
    "http",
    "quinn",
    "eventsource_stream",
    "native_tls",
    "tokio_native_tls",
    "openssl",
    "tower",
];

/// The user's filter (else `default`), and the transport cap.
///
/// The cap is a second filter every event must also pass rather than
/// `tungstenite=info`-style directives added to the user's filter: inside
/// one filter a more specific directive of the user's
/// (`tungstenite::handshake=trace`) would win over ours, and ours would
/// raise those libraries to `info` when the user asked for `warn`.
pub fn chosen<S>(default: &str) -> impl Filter<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    user(default).and(transport_cap())
}

fn user(default: &str) -> Targets {
    let from_env = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    let spec = from_env.as_deref().unwrap_or(default);
    parse(spec).unwrap_or_else(|e| {
        eprintln!("warning: {ENV}: cannot use the log filter {spec:?} ({e}); using {default:?}");
        parse(default).unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
    })
}

fn parse(spec: &str) -> Result<Targets, tracing_subscriber::filter::ParseError> {
    spec.trim().parse()
}

fn transport_cap() -> Targets {
    TRANSPORT_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |cap, target| cap.with_target(*target, LevelFilter::INFO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_targets_are_capped_at_info() {
        let cap = transport_cap();
        for target in [
            "tungstenite::handshake::client",
            "tokio_tungstenite",
            "rustls::client::hs",
            "hyper_util::client::legacy",
            "reqwest::connect",
            "h2::codec",
            "http",
        ] {
            assert!(cap.would_enable(target, &tracing::Level::INFO), "{target}");
            assert!(
                !cap.would_enable(target, &tracing::Level::DEBUG),
                "{target}"
            );
            assert!(
                !cap.would_enable(target, &tracing::Level::TRACE),
                "{target}"
            );
        }
        assert!(cap.would_enable("cloudagent_daemon::runtime", &tracing::Level::TRACE));
        assert!(cap.would_enable("rmcp::service", &tracing::Level::TRACE));
    }

    #[test]
    fn user_filters_parse_as_levels_and_directives() {
        let f = parse("debug").unwrap();
        assert!(f.would_enable("anything", &tracing::Level::DEBUG));
        assert!(!f.would_enable("anything", &tracing::Level::TRACE));
        let f = parse(" info,cloudagent_daemon::runtime=trace ").unwrap();
        assert!(f.would_enable("cloudagent_daemon::runtime::wake", &tracing::Level::TRACE));
        assert!(!f.would_enable("cloudagent_daemon::config", &tracing::Level::DEBUG));
        assert!(f.would_enable("cloudagent_daemon::config", &tracing::Level::INFO));
        assert!(parse("info,=nonsense=").is_err());
    }
}
