//! Opening the WebSocket (PROTOCOL §1.5): `Authorization: Bearer` on the
//! upgrade, rustls with the system's and webpki's roots, or — for
//! `insecure` self-signed development servers only — no certificate check.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream, tungstenite};

use crate::config::Secret;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ConnectError {
    /// 401/403 on the upgrade: the key is wrong or revoked. Terminal.
    #[error(
        "the server rejected the machine API key (HTTP {0}); check the key (api_key_file / api_key_env) or create a new one in the cloudagent UI"
    )]
    Auth(u16),
    #[error(
        "TLS certificate problem connecting to {url}: {detail} (for a self-signed development server set `insecure = true` on the server)"
    )]
    Certificate { url: String, detail: String },
    #[error("cannot connect to {url}: {detail}")]
    Other { url: String, detail: String },
}

/// Install the process-wide rustls crypto provider (ring). Must run before
/// the first TLS connection; a second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn connect(url: &str, key: &Secret, insecure: bool) -> Result<Ws, ConnectError> {
    let other = |detail: String| ConnectError::Other {
        url: url.to_string(),
        detail,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| other(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        // The error would quote the key: say only what is wrong.
        .map_err(|_| {
            other("the API key contains characters not allowed in an HTTP header".into())
        })?;
    request.headers_mut().insert("Authorization", auth);
    let connector = match insecure {
        true => Some(Connector::Rustls(Arc::new(
            insecure_config().map_err(|e| other(e.to_string()))?,
        ))),
        false => None,
    };
    // The original accepted 1 MiB messages; tool results can be larger.
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Err(_) => Err(other(format!("timed out after {CONNECT_TIMEOUT:?}"))),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let code = resp.status().as_u16();
            if code == 401 || code == 403 {
                Err(ConnectError::Auth(code))
            } else {
                Err(other(format!(
                    "the server answered the upgrade with HTTP {code}"
                )))
            }
        }
        Ok(Err(tungstenite::Error::Io(e))) => {
            let cert = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(|r| r.to_string());
            match cert {
                Some(detail) => Err(ConnectError::Certificate {
                    url: url.to_string(),
                    detail,
                }),
                None => Err(other(e.to_string())),
            }
        }
        Ok(Err(e)) => Err(other(e.to_string())),
    }
}

fn insecure_config() -> Result<rustls::ClientConfig, rustls::Error> {
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
