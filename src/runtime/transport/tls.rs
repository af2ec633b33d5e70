//! TLS for every transport: rustls with the system's and webpki's roots,
//! or — for `insecure` self-signed development servers only — no
//! certificate check; and connection errors in words a user can act on.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use thiserror::Error;

/// Said when the certificate's issuer is not trusted: the common case of a
/// private CA or a self-signed development server.
const HINT_UNTRUSTED: &str = "If the server's certificate comes from a private CA, trust that CA by setting SSL_CERT_FILE=/path/to/ca.pem in the daemon's environment; for a self-signed development server only, set `insecure = true` in its [servers.<name>] table (or run `start --insecure`) to skip certificate checks";
/// Said for any other certificate problem: the certificate itself is wrong.
const HINT_FIX: &str = "Fix the server's certificate; for a development server only, set `insecure = true` in its [servers.<name>] table (or run `start --insecure`) to skip certificate checks";

#[derive(Debug, Error)]
pub enum ConnectError {
    /// 401/403 on the upgrade: the key is wrong or revoked. Terminal.
    #[error(
        "the server rejected the machine API key (HTTP {0}); check the key (api_key_file / api_key_env) or create a new one in the cloudagent UI"
    )]
    Auth(u16),
    /// The server's certificate failed verification. Retried (the
    /// certificate or the trust store may be fixed while we wait).
    #[error("TLS certificate problem connecting to {url}: {detail}. {hint}")]
    Certificate {
        url: String,
        detail: String,
        hint: &'static str,
    },
    /// The server answered the upgrade with another status (404, 502…):
    /// retried.
    #[error("cannot connect to {url}: the server answered the upgrade with HTTP {status}")]
    Status { url: String, status: u16 },
    /// The connection was cut while the upgrade was under way (a proxy
    /// that does not pass WebSocket through): retried, or SSE for `auto`.
    #[error("cannot connect to {url}: the connection was cut during the upgrade ({detail})")]
    UpgradeCut { url: String, detail: String },
    #[error("cannot connect to {url}: {detail}")]
    Other { url: String, detail: String },
}

/// Install the process-wide rustls crypto provider (ring). Must run before
/// the first TLS connection; a second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rustls error somewhere in `e`'s chain, for [`tls_error`]. Both
/// transports get it wrapped in an `io::Error` (tokio-rustls under
/// tungstenite, hyper under reqwest), whose `source()` skips the error it
/// wraps, so each `io::Error` is opened by hand.
pub fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(err) = s.downcast_ref::<rustls::Error>() {
            return Some(err);
        }
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(err) = rustls_error(inner)
        {
            return Some(err);
        }
        source = s.source();
    }
    None
}

/// A rustls error from the handshake, in words a user can act on. Only a
/// rejected certificate is a [`ConnectError::Certificate`]; anything else
/// (a server that does not speak TLS, no common cipher suite, ...) is not
/// helped by `insecure` and says so by not suggesting it.
pub fn tls_error(url: &str, host: &str, err: &rustls::Error) -> ConnectError {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert) = err else {
        let hint = match err {
            rustls::Error::InvalidMessage(_) => {
                " (the server does not seem to speak TLS: for a plain server use an http:// URL)"
            }
            _ => "",
        };
        return ConnectError::Other {
            url: url.to_string(),
            detail: format!("TLS handshake failed: {err}{hint}"),
        };
    };
    let (what, hint) = match cert {
        C::UnknownIssuer => (
            "the server's certificate is not signed by a trusted certificate authority".to_string(),
            HINT_UNTRUSTED,
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => (
            format!("the server's certificate is not valid for the host name {host}"),
            HINT_FIX,
        ),
        C::Expired | C::ExpiredContext { .. } => {
            ("the server's certificate has expired".to_string(), HINT_FIX)
        }
        C::NotValidYet | C::NotValidYetContext { .. } => (
            "the server's certificate is not valid yet (check this machine's clock)".to_string(),
            HINT_FIX,
        ),
        C::Revoked => (
            "the server's certificate has been revoked".to_string(),
            HINT_FIX,
        ),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => (
            "the server's certificate is not meant for TLS servers (extended key usage)"
                .to_string(),
            HINT_FIX,
        ),
        // webpki's CaUsedAsEndEntity has no rustls variant of its own.
        C::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => (
            "the server presents a CA certificate as its own (a server certificate must be CA:FALSE and signed by the CA)"
                .to_string(),
            HINT_FIX,
        ),
        _ => ("the server's certificate was rejected".to_string(), HINT_FIX),
    };
    ConnectError::Certificate {
        url: url.to_string(),
        detail: format!("{what} (rustls: {err})"),
        hint,
    }
}

/// The client config of every transport: the system's and webpki's roots
/// (as tokio-tungstenite builds it for `wss://`), or no certificate check
/// for `insecure = true`. The roots are loaded once per process, not at
/// each connection.
pub fn client_config(insecure: bool) -> Result<rustls::ClientConfig, rustls::Error> {
    if insecure {
        return insecure_config();
    }
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!("loading the system's root certificates: {e}");
        }
        roots.add_parsable_certificates(native.certs);
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Arc::new(roots)
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_no_client_auth())
}

/// The config for a server reached without TLS (`http://`, `ws://`): no
/// roots at all, so none are loaded (the system's store costs a few MiB of
/// resident memory, README.md "Benchmarks"), and a redirect to `https://`
/// fails instead of leaving with an unchecked certificate.
pub fn plain_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// `client_config` for a server URL: roots only when it uses TLS.
pub fn config_for(url: &str, insecure: bool) -> Result<rustls::ClientConfig, rustls::Error> {
    let tls = ["https://", "wss://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    });
    match tls {
        true => client_config(insecure),
        false => plain_config(),
    }
}

/// A client config that accepts any certificate (`insecure = true`).
pub fn insecure_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    )
}

/// Accepts any certificate chain and name, but still checks that the
/// handshake is signed by the presented key.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "wss://api.example/v1/daemon/ws";

    fn certificate(e: rustls::CertificateError) -> String {
        let err = tls_error(URL, "api.example", &rustls::Error::InvalidCertificate(e));
        assert!(matches!(err, ConnectError::Certificate { .. }), "{err:?}");
        err.to_string()
    }

    #[test]
    fn untrusted_issuer_says_so_and_names_both_fixes() {
        assert_eq!(
            certificate(rustls::CertificateError::UnknownIssuer),
            "TLS certificate problem connecting to wss://api.example/v1/daemon/ws: the server's \
             certificate is not signed by a trusted certificate authority (rustls: invalid peer \
             certificate: UnknownIssuer). If the server's certificate comes from a private CA, \
             trust that CA by setting SSL_CERT_FILE=/path/to/ca.pem in the daemon's environment; \
             for a self-signed development server only, set `insecure = true` in its \
             [servers.<name>] table (or run `start --insecure`) to skip certificate checks"
        );
    }

    #[test]
    fn other_certificate_problems_name_the_problem() {
        let name = certificate(rustls::CertificateError::NotValidForName);
        assert!(
            name.contains("not valid for the host name api.example"),
            "{name}"
        );
        assert!(!name.contains("SSL_CERT_FILE") && name.contains("insecure = true"));
        let expired = certificate(rustls::CertificateError::Expired);
        assert!(expired.contains("has expired"), "{expired}");
    }

    /// A trusted self-signed CA:TRUE certificate used as the server's own:
    /// webpki's CaUsedAsEndEntity, which rustls only carries as `Other`.
    #[test]
    fn a_ca_certificate_served_as_the_leaf_is_explained() {
        use rustls::client::WebPkiServerVerifier;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let err = verifier
            .verify_server_cert(
                cert.der(),
                &[],
                &ServerName::try_from("localhost").unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_err();
        let text = tls_error(URL, "localhost", &err).to_string();
        assert!(
            text.contains("presents a CA certificate as its own"),
            "{text}"
        );
    }

    /// How hyper hands a failed TLS handshake up: the rustls error inside
    /// an `io::Error`, inside another error (tokio-rustls under tungstenite
    /// hands up the `io::Error` alone).
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn rustls_error_is_found_inside_an_io_error() {
        let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = Outer(std::io::Error::other(rustls.clone()));
        assert_eq!(rustls_error(&e), Some(&rustls));
        let plain = Outer(std::io::Error::other("connection refused"));
        assert_eq!(rustls_error(&plain), None);
    }
}
