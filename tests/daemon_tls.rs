//! The real daemon binary against a TLS backend whose certificate comes
//! from a CA made by the test, over each transport (WebSocket `wss://` and
//! SSE + POST `https://`): not trusted (the daemon reports a certificate
//! problem and keeps retrying), trusted through `SSL_CERT_FILE` (full
//! verification succeeds, a deliver is acked and its wake reported), and
//! `insecure = true` (no verification, the same session works).
//!
//! The TLS side is a terminator in front of the usual fake backend (which
//! speaks both transports on one port): it completes the TLS handshake
//! with the test PKI's leaf and relays the plain bytes. It listens on
//! 127.0.0.1:0 and is given to the daemon as `https://localhost:PORT`, so
//! the leaf's SAN `DNS:localhost` matches.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use support::TestHome;
use support::daemon::{Daemon, DaemonConfig};
use support::fake_backend::{DEFAULT_HOST_ID, FakeBackend, deliver, frame_type};
use support::fake_claude::FakeClaude;
use support::scenario::Transport;

const T: Duration = Duration::from_secs(20);
const TIMING: &str = "backoff_base_ms=100,backoff_max_ms=500";

over_both_transports!(
    untrusted_ca_is_a_certificate_error_and_the_daemon_keeps_retrying,
    ca_trusted_through_ssl_cert_file_verifies_and_a_deliver_round_trips,
    insecure_server_skips_verification_and_a_deliver_round_trips,
);

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

/// TLS in front of a plain backend: every accepted connection is
/// TLS-handshaken with the test PKI's leaf, then relayed byte for byte to
/// `backend`. Failed handshakes are counted with the server-side error.
/// Stops (with all its connections) when dropped.
struct TlsFront {
    addr: SocketAddr,
    failures: watch::Sender<Vec<String>>,
    task: JoinHandle<()>,
}

impl TlsFront {
    async fn start(pki: &Pki, backend: SocketAddr) -> Self {
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
        let (failures, _) = watch::channel(Vec::new());
        let task = tokio::spawn(accept_loop(listener, acceptor, backend, failures.clone()));
        Self {
            addr,
            failures,
            task,
        }
    }

    /// The server URL for the daemon's config.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Wait until at least `n` TLS handshakes have failed.
    async fn wait_failures(&self, n: usize) -> Option<Vec<String>> {
        let mut rx = self.failures.subscribe();
        match tokio::time::timeout(T, rx.wait_for(|f| f.len() >= n)).await {
            Ok(Ok(f)) => Some(f.clone()),
            _ => None,
        }
    }

    fn failures(&self) -> Vec<String> {
        self.failures.borrow().clone()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        // Dropping the loop drops its JoinSet, which aborts the relays.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    failures: watch::Sender<Vec<String>>,
) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        conns.spawn(relay(tcp, acceptor.clone(), backend, failures.clone()));
        // Reap finished connections so the set does not grow while the
        // daemon retries.
        while conns.try_join_next().is_some() {}
    }
}

async fn relay(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    failures: watch::Sender<Vec<String>>,
) {
    let mut tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            failures.send_modify(|f| f.push(e.to_string()));
            return;
        }
    };
    let Ok(mut plain) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}

// ──────────────────────────────────────────────────────────── cases ──

/// Fields drop in order: the fake claude kills what its runs left behind
/// while the home still names them.
struct Case {
    claude: FakeClaude,
    front: TlsFront,
    backend: FakeBackend,
    home: TestHome,
    pki: Pki,
    t: Transport,
}

/// A home whose config points, over transport `t`, at a TLS front of a
/// fresh fake backend; `insecure` adds `insecure = true` to the
/// `[servers.test]` table.
async fn setup(t: Transport, insecure: bool) -> Case {
    let home = TestHome::new();
    let pki = make_pki();
    let backend = FakeBackend::start().await;
    let front = TlsFront::start(&pki, backend.addr()).await;
    let claude = FakeClaude::install(&home.bin_dir());
    let url = front.url();
    let mut cfg = DaemonConfig::new(&url, &["agent_a"]);
    cfg.transport = t.name().to_string();
    let mut config = cfg.render(&home);
    if insecure {
        let line = format!("url = \"{url}\"\n");
        assert!(config.contains(&line), "{config}");
        config = config.replacen(&line, &format!("{line}insecure = true\n"), 1);
    }
    home.write_config(&config);
    Case {
        claude,
        front,
        backend,
        home,
        pki,
        t,
    }
}

impl Case {
    fn write_ca(&self) -> PathBuf {
        let p = self.home.path().join("test-ca.pem");
        std::fs::write(&p, &self.pki.ca_pem).unwrap();
        p
    }

    /// The URL of the request a session starts with, as the daemon names
    /// it in its errors.
    fn handshake_url(&self) -> String {
        let scheme = match self.t {
            Transport::Ws => "wss",
            Transport::Sse => "https",
        };
        let port = self.front.addr.port();
        format!("{scheme}://localhost:{port}{}", self.t.handshake_path())
    }

    /// Panic with everything useful for diagnosing a failed wait.
    fn fail(&self, d: &Daemon, what: &str) -> ! {
        panic!(
            "timed out waiting for {what}\nTLS failures: {:#?}\nbackend saw: {:#?}\nstatus: {:#}\ndaemon output:\n{}",
            self.front.failures(),
            self.backend.upgrades(),
            status_json(&self.home),
            d.output(&self.home)
        )
    }

    /// The whole session over TLS: the handshake (`ready`, then `resume`),
    /// status connected with the backend's host id, then a deliver acked
    /// `received` and its wake's final status reported (over SSE each of
    /// those is a POST through TLS).
    async fn expect_session(&self, d: &Daemon) {
        let mut conn = self.backend.next_connection(T).await;
        let ready = conn.recv(T).await;
        assert_eq!(frame_type(&ready), "ready", "{ready}");
        conn.recv_type("resume", T).await;
        assert!(
            self.front.failures().is_empty(),
            "{:?}",
            self.front.failures()
        );
        let paths: Vec<String> = self
            .backend
            .upgrades()
            .into_iter()
            .map(|u| u.path)
            .collect();
        assert_eq!(
            paths.first().map(String::as_str),
            Some(self.t.handshake_path())
        );
        let status = wait_status(&self.home, |v| v["connection"]["state"] == "connected")
            .await
            .unwrap_or_else(|| self.fail(d, "status connected"));
        assert_eq!(status["host_id"], DEFAULT_HOST_ID);
        assert!(status["last_error"].is_null(), "{status:#}");

        conn.send(deliver(1, "agent_a", "m1", "over TLS")).await;
        let ack = conn.recv_type("delivery_ack", T).await;
        assert_eq!(ack["payload"]["status"], "received", "{ack}");
        self.backend
            .wait_for_frame(T, |f| {
                frame_type(f) == "agent_status" && f["payload"]["status"] == "idle"
            })
            .await;
        assert_eq!(self.claude.calls().len(), 1);
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

async fn untrusted_ca_is_a_certificate_error_and_the_daemon_keeps_retrying(t: Transport) {
    let c = setup(t, false).await;
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
        &c.handshake_url(),
        "not signed by a trusted certificate authority",
        "SSL_CERT_FILE",
        "insecure = true",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }

    // Not terminal (unlike a 401): it keeps trying, the handshake keeps
    // failing on the certificate, and no request ever reaches the backend.
    if c.front.wait_failures(3).await.is_none() {
        c.fail(&d, "three failed TLS handshakes");
    }
    assert!(
        c.backend.upgrades().is_empty(),
        "{:?}",
        c.backend.upgrades()
    );
    assert!(
        c.backend.all_frames().is_empty(),
        "{:?}",
        c.backend.all_frames()
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

async fn ca_trusted_through_ssl_cert_file_verifies_and_a_deliver_round_trips(t: Transport) {
    let c = setup(t, false).await;
    let ca = c.write_ca();
    let d = Daemon::start_with_env(&c.home, TIMING, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    c.expect_session(&d).await;
}

async fn insecure_server_skips_verification_and_a_deliver_round_trips(t: Transport) {
    let c = setup(t, true).await;
    let d = Daemon::start_with_env(&c.home, TIMING, &[]);
    c.expect_session(&d).await;
}
