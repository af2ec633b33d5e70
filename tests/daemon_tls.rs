//! The real daemon binary against a TLS WebSocket backend (wss://) whose
//! certificate comes from a CA made by the test: not trusted (the daemon
//! reports a certificate problem and keeps retrying), trusted through
//! `SSL_CERT_FILE` (full verification succeeds), and `insecure = true`
//! (no verification, the handshake succeeds).
//!
//! The server listens on 127.0.0.1:0 and is given to the daemon as
//! `https://localhost:PORT`, so the leaf's SAN `DNS:localhost` matches.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use support::TestHome;
use support::daemon::{Daemon, DaemonConfig};
use support::fake_backend::{WS_PATH, frame_type, now_ts};

const T: Duration = Duration::from_secs(20);
const TIMING: &str = "backoff_base_ms=100,backoff_max_ms=500";

// ──────────────────────────────────────────────────────────────── PKI ──

/// A CA and a `localhost` leaf (CA:FALSE, serverAuth) signed by it.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    leaf_key_der: Vec<u8>,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "cloudagent-daemon test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        leaf_key_der: leaf_key.serialize_der(),
    }
}

// ─────────────────────────────────────────────────────────── server ──

/// What the TLS backend has seen so far.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// TLS handshakes that failed, with the server-side error.
    tls_failures: Vec<String>,
    /// WebSocket upgrades completed (request path of each).
    upgrades: Vec<String>,
    /// Text frames received from the daemon, parsed.
    frames: Vec<Value>,
}

/// A wss:// backend: TLS with the test PKI's leaf, then the WebSocket
/// upgrade, a `hello`, and every frame the daemon sends recorded. Stops
/// (with all its connections) when dropped.
struct TlsBackend {
    addr: SocketAddr,
    seen: watch::Sender<Seen>,
    task: JoinHandle<()>,
}

impl TlsBackend {
    async fn start(pki: &Pki) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(pki.leaf_key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, _) = watch::channel(Seen::default());
        let task = tokio::spawn(accept_loop(listener, acceptor, seen.clone()));
        Self { addr, seen, task }
    }

    /// The server URL for the daemon's config.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn seen(&self) -> Seen {
        self.seen.borrow().clone()
    }

    /// Wait until `pred` holds for what the server has seen.
    async fn wait_for(&self, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let mut rx = self.seen.subscribe();
        match tokio::time::timeout(T, rx.wait_for(|s| pred(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        // Dropping the loop drops its JoinSet, which aborts the connections.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, seen: watch::Sender<Seen>) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        conns.spawn(serve(tcp, acceptor.clone(), seen.clone()));
        // Reap finished connections so the set does not grow while the
        // daemon retries.
        while conns.try_join_next().is_some() {}
    }
}

async fn serve(tcp: tokio::net::TcpStream, acceptor: TlsAcceptor, seen: watch::Sender<Seen>) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            seen.send_modify(|s| s.tls_failures.push(e.to_string()));
            return;
        }
    };
    let mut path = String::new();
    // The callback's signature is tungstenite's (its Err is a whole response).
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tls, callback).await else {
        return;
    };
    seen.send_modify(|s| s.upgrades.push(path));
    let hello = json!({
        "v": 1,
        "type": "hello",
        "id": "frm_x",
        "ts": now_ts(),
        "payload": {"host_id": "host_tls", "agents": []},
    });
    if ws.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    // Keep reading (answers WebSocket pings) until the daemon goes away.
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg
            && let Ok(v) = serde_json::from_str::<Value>(t.as_str())
        {
            seen.send_modify(|s| s.frames.push(v));
        }
    }
}

// ──────────────────────────────────────────────────────────── cases ──

struct Case {
    home: TestHome,
    pki: Pki,
    backend: TlsBackend,
}

/// A home whose config points at a fresh TLS backend; `insecure` adds
/// `insecure = true` to the `[servers.test]` table.
async fn setup(insecure: bool) -> Case {
    let home = TestHome::new();
    let pki = make_pki();
    let backend = TlsBackend::start(&pki).await;
    let url = backend.url();
    let mut config = DaemonConfig::new(&url, &[]).render(&home);
    if insecure {
        let line = format!("url = \"{url}\"\n");
        assert!(config.contains(&line), "{config}");
        config = config.replacen(&line, &format!("{line}insecure = true\n"), 1);
    }
    home.write_config(&config);
    Case { home, pki, backend }
}

impl Case {
    fn write_ca(&self) -> PathBuf {
        let p = self.home.path().join("test-ca.pem");
        std::fs::write(&p, &self.pki.ca_pem).unwrap();
        p
    }

    /// Panic with everything useful for diagnosing a failed wait.
    fn fail(&self, d: &Daemon, what: &str) -> ! {
        panic!(
            "timed out waiting for {what}\nserver saw: {:#?}\nstatus: {:#}\ndaemon output:\n{}",
            self.backend.seen(),
            status_json(&self.home),
            d.output(&self.home)
        )
    }

    /// The server gets the full handshake: upgrade on the daemon's path,
    /// then `ready` and `resume`, in that order; status says connected.
    async fn expect_handshake(&self, d: &Daemon) {
        let seen = match self.backend.wait_for(|s| s.frames.len() >= 2).await {
            Some(s) => s,
            None => self.fail(d, "ready and resume over TLS"),
        };
        assert!(seen.tls_failures.is_empty(), "{:?}", seen.tls_failures);
        assert_eq!(seen.upgrades, [WS_PATH]);
        let types: Vec<&str> = seen.frames.iter().map(frame_type).collect();
        assert_eq!(types[..2], ["ready", "resume"], "{:?}", seen.frames);
        let status = wait_status(&self.home, |v| v["connection"]["state"] == "connected")
            .await
            .unwrap_or_else(|| self.fail(d, "status connected"));
        assert_eq!(status["host_id"], "host_tls");
        assert!(status["last_error"].is_null(), "{status:#}");
    }
}

/// `cloudagent-daemon status --json` in that home (Null if unparsable).
fn status_json(home: &TestHome) -> Value {
    let out = home.cmd().args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Poll `status --json` until `pred` holds, up to `T`.
async fn wait_status(home: &TestHome, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + T;
    loop {
        let v = tokio::task::block_in_place(|| status_json(home));
        if pred(&v) {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn certificate_error(v: &Value) -> bool {
    v["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("certificate"))
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_ca_is_a_certificate_error_and_the_daemon_keeps_retrying() {
    let c = setup(false).await;
    let mut d = Daemon::start_with_env(&c.home, TIMING, &[]);

    let status = wait_status(&c.home, certificate_error)
        .await
        .unwrap_or_else(|| c.fail(&d, "a certificate error in status"));
    assert_ne!(status["connection"]["state"], "connected", "{status:#}");
    assert_eq!(status["running"], true, "{status:#}");
    let err = status["last_error"].as_str().unwrap();
    eprintln!("last_error: {err}");
    for needle in [
        "TLS certificate problem",
        &format!("wss://localhost:{}{WS_PATH}", c.backend.addr.port()),
        "not signed by a trusted certificate authority",
        "SSL_CERT_FILE",
        "insecure = true",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }

    // Not terminal (unlike a 401): it keeps trying, the handshake keeps
    // failing on the certificate, and no upgrade ever happens.
    let seen = c
        .backend
        .wait_for(|s| s.tls_failures.len() >= 3)
        .await
        .unwrap_or_else(|| c.fail(&d, "three failed TLS handshakes"));
    assert!(
        seen.upgrades.is_empty() && seen.frames.is_empty(),
        "{seen:?}"
    );
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon exited:\n{}",
        d.output(&c.home)
    );
    let status = status_json(&c.home);
    assert_eq!(status["running"], true, "{status:#}");
    assert_ne!(status["connection"]["state"], "connected", "{status:#}");
    assert!(certificate_error(&status), "{status:#}");
    // The same text is in the log.
    let out = d.output(&c.home);
    assert!(
        out.contains("not signed by a trusted certificate authority"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_trusted_through_ssl_cert_file_verifies_and_connects() {
    let c = setup(false).await;
    let ca = c.write_ca();
    let d = Daemon::start_with_env(&c.home, TIMING, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    c.expect_handshake(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_server_skips_verification_and_connects() {
    let c = setup(true).await;
    let d = Daemon::start_with_env(&c.home, TIMING, &[]);
    c.expect_handshake(&d).await;
}
