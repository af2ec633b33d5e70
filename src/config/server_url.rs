//! Server URLs, wherever they come from (`cloudagent.toml`, `start
//! --server-url`, the original daemon's `config.json`): normalised the same
//! way, and refused over plain `http://` to another machine. The daemon
//! sends the machine key as `Authorization: Bearer …` on every connection;
//! over `http://` anyone on the path reads it. Loopback stays allowed (a
//! local backend, tests, an SSH tunnel); anything else needs an explicit
//! opt-in (README, "The config file" and "The daemon").

use std::net::{IpAddr, Ipv6Addr};

/// Normalise a server URL as the original does (trim `/` and a trailing
/// `/v1`); the scheme must be http or https.
pub fn normalize(raw: &str) -> Result<String, String> {
    let mut url = raw.trim().trim_end_matches('/').to_string();
    if let Some(stripped) = url.strip_suffix("/v1") {
        url = stripped.trim_end_matches('/').to_string();
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("server URL must start with http:// or https://, got {raw:?}"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("server URL has no host: {raw:?}"));
    }
    Ok(url)
}

/// Refuse `http://` to a host that is not this machine unless the user
/// opted in. `opt_in` says how (it ends the message), e.g. "set
/// allow_insecure_http = true in [servers.prod]".
pub fn check_cleartext(url: &str, allowed: bool, opt_in: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Ok(());
    };
    let host = host_of(rest);
    if allowed || is_loopback(host) {
        return Ok(());
    }
    Err(format!(
        "http:// would send the machine key unencrypted to {host}, which is not this machine; \
         use https://, or {opt_in} if the network to it is trusted"
    ))
}

/// The host of `host[:port][/path]`, without user info, port or the
/// brackets of an IPv6 literal.
pub fn host_of(authority_and_path: &str) -> &str {
    let end = authority_and_path
        .find(['/', '?', '#'])
        .unwrap_or(authority_and_path.len());
    let authority = &authority_and_path[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// localhost, 127.0.0.0/8 and ::1 (also as an IPv4-mapped address).
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// What `check_cleartext` accepts without an opt-in, for tests.
#[cfg(test)]
fn plain_ok(url: &str) -> bool {
    check_cleartext(url, false, "opt in").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_normalisation() {
        assert_eq!(normalize("https://a.b/").unwrap(), "https://a.b");
        assert_eq!(normalize("https://a.b/v1").unwrap(), "https://a.b");
        assert_eq!(normalize("http://a.b/pre/v1/").unwrap(), "http://a.b/pre");
        assert!(normalize("ftp://a.b").is_err());
        assert!(normalize("https://").is_err());
    }

    #[test]
    fn cleartext_only_to_this_machine() {
        for ok in [
            "https://example.com",
            "http://localhost",
            "http://LOCALHOST:8080/x",
            "http://127.0.0.1",
            "http://127.0.0.1:4000",
            "http://127.8.9.10:1/p",
            "http://[::1]:4000",
            "http://[::ffff:127.0.0.1]",
            "http://user@127.0.0.1:4000",
        ] {
            assert!(plain_ok(ok), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://example.com:80/v",
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://128.0.0.1",
            "http://0.0.0.0:9",
            "http://[::2]",
            "http://127.0.0.1@example.com",
            "http://10.0.0.1",
        ] {
            assert!(!plain_ok(bad), "{bad}");
        }
        assert!(check_cleartext("http://example.com", true, "x").is_ok());
        let e = check_cleartext("http://example.com:80", false, "pass --flag").unwrap_err();
        assert!(
            e.contains("unencrypted to example.com")
                && e.ends_with("pass --flag if the network to it is trusted"),
            "{e}"
        );
    }
}
