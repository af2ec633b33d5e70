//! Daemon figures with the release binary against a lean backend
//! (benches/support/backend.rs), once over WebSocket and once over SSE +
//! POST, side by side: deliver→ack latency, sustained ack throughput (2,000
//! delivers over 20 agents), the wakes they run, RSS (idle over SSE also
//! with TLS), the tool call round trip bridge → daemon → backend → daemon →
//! bridge; then `--help` time and a second daemon flooded with
//! maximum-size delivers (WebSocket).
//!
//! Every count is read at a deadline derived from the number of items and a
//! generous per-item budget (both printed), never by waiting until it comes
//! right: what is missing is reported as lost, what came twice as
//! duplicated, and the bench ends with a FAIL line and exit status 1 when
//! anything was (README.md, "Benchmarks").
//!
//! This machine's floor for a durable ack is measured in the same run,
//! before and after the latency series, and printed next to it
//! (benches/support/floor.rs): the ratio of the daemon's p50 to that floor
//! moves less with the machine's load than the absolute figures. The floor
//! is taken with nothing else syncing; "wake starting" can come out below
//! it, as a fdatasync next to other processes' syncs (the wakes') can cost
//! far less than a lone one (README.md, "Benchmarks").
//!
//! Run: `cargo bench --bench daemon`; `cargo bench --bench daemon -- idle`
//! measures only the idle RSS, five daemons per mode, with its anonymous and
//! file-backed parts (the file pages are mostly the binary's own code).

#[path = "support/backend.rs"]
mod backend;
#[path = "support/daemon_flood.rs"]
mod daemon_flood;
#[path = "support/daemon_tools.rs"]
mod daemon_tools;
#[path = "support/floor.rs"]
mod floor;
#[path = "support/proc_mem.rs"]
mod proc_mem;
#[path = "support/sse_backend.rs"]
mod sse_backend;
#[path = "support/stats.rs"]
mod stats;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend::{Conn, PING};
use floor::Killed;
use stats::{p50_p90_p99, percentile, sort};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_cloudagent-daemon");
const FAST_CLAUDE: &str = "#!/bin/sh\n[ \"$1\" = --version ] && { echo '2.1.197 (Claude Code)'; exit 0; }\ngrep -q HOLD && exec sleep 3600\necho '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s\"}'\necho '{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"name\":\"mcp__cloudagent__send_message\"}]}}'\necho '{\"type\":\"result\",\"is_error\":false,\"result\":\"ok\"}'\n";

/// Deadlines. Generous: on a healthy run the counts come right long
/// before; they bound how long a broken daemon can hold the bench.
const HANDSHAKE: Duration = Duration::from_secs(30);
/// One sequential request and its answer.
const PER_ITEM: Duration = Duration::from_secs(5);
/// Base of every pipelined phase's deadline, plus a budget per item.
const BASE: Duration = Duration::from_secs(10);
const PER_ACK: Duration = Duration::from_millis(20);
const PER_WAKE: Duration = Duration::from_millis(100);
/// After a count comes right, how long extra (duplicated) frames are still
/// looked for.
const SETTLE: Duration = Duration::from_secs(1);

const AGENTS: usize = 20;
const THROUGHPUT_N: usize = 2000;

/// What went wrong, for the FAIL lines and the exit status.
#[derive(Default)]
pub struct Verdict {
    failures: Vec<String>,
}

impl Verdict {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }
    pub fn fail(&mut self, what: String) {
        self.failures.push(what);
    }
}

pub fn deadline(n: usize, per_item: Duration) -> Duration {
    BASE + per_item * n as u32
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How the bench's daemon reaches its backend.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ws,
    Sse,
    /// SSE + POST over TLS (idle RSS only).
    SseTls,
}

impl Mode {
    fn title(self) -> &'static str {
        match self {
            Mode::Ws => "WebSocket",
            Mode::Sse => "SSE + POST",
            Mode::SseTls => "SSE + POST over TLS",
        }
    }

    /// Lines for the config's `[servers.b]`.
    fn server(self) -> &'static str {
        match self {
            Mode::Ws => "transport = \"ws\"\n",
            Mode::Sse => "transport = \"sse\"\n",
            // The bench's own certificate, trusted by skipping verification.
            Mode::SseTls => "transport = \"sse\"\ninsecure = true\n",
        }
    }
}

/// The figures compared side by side at the end.
#[derive(Default, Clone, Copy)]
struct Figures {
    new_p50: f64,
    queued_p50: f64,
    acks_per_s: f64,
    idle_rss_kib: Option<u64>,
}

fn write_config(home: &Path, url: &str, agents: usize, server: &str) {
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).expect("create bin/");
    let claude = bin.join("claude");
    std::fs::write(&claude, FAST_CLAUDE).expect("write the fake claude");
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(home.join("key"), "sk_machine_bench").expect("write the key");
    let mut cfg = format!(
        "[daemon]\nclaude_binary = \"{}\"\n# One slot is taken by the held wake of the ack-path measurement.\nmax_concurrent_wakes = 2\n[servers.b]\nurl = \"{url}\"\n{server}[profiles.default]\nserver = \"b\"\napi_key_file = \"{}\"\n",
        claude.display(),
        home.join("key").display()
    );
    for i in 0..agents {
        cfg.push_str(&format!("[profiles.default.agents.agent_{i:02}]\n"));
    }
    std::fs::write(home.join("cloudagent.toml"), cfg).expect("write the config");
}

/// The release daemon for `home`, configured with `agents` agents and the
/// backend at `url`.
pub fn start_daemon(home: &Path, url: &str, agents: usize) -> Killed {
    start_daemon_over(home, url, agents, Mode::Ws)
}

fn start_daemon_over(home: &Path, url: &str, agents: usize, mode: Mode) -> Killed {
    write_config(home, url, agents, mode.server());
    Killed(
        Command::new(BIN)
            .args(["start", "-f"])
            .arg(home.join("cloudagent.toml"))
            .env_clear()
            .env("HOME", home)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", home.join("bin").display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    )
}

fn main() {
    if std::env::var_os(floor::ECHO_ENV).is_some() {
        return floor::echo_server();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut verdict = Verdict::default();
    if std::env::args().skip(1).any(|a| a == "idle") {
        runtime.block_on(idle_only(&mut verdict));
        return finish(verdict);
    }
    let mut figures = Vec::new();
    for mode in [Mode::Ws, Mode::Sse] {
        println!("== {} ==", mode.title());
        figures.push(runtime.block_on(bench(&mut verdict, mode)));
    }
    let tls_idle = runtime
        .block_on(idle_rss(Mode::SseTls, &mut verdict))
        .map(|m| m.rss_kib);
    side_by_side(&figures, tls_idle);
    runtime.block_on(daemon_flood::run(&mut verdict));
    help_time(&mut verdict);
    finish(verdict);
}

/// Every daemon and child was dropped (killed, reaped) before this.
fn finish(verdict: Verdict) {
    if verdict.failures.is_empty() {
        println!("PASS: nothing lost, duplicated or missing at the deadlines");
    } else {
        for f in &verdict.failures {
            println!("FAIL: {f}");
        }
        std::process::exit(1);
    }
}

/// Timed sequential deliver→ack samples; `missing` had no ack within
/// `PER_ITEM`.
#[derive(Default)]
struct Series {
    ms: Vec<f64>,
    missing: usize,
}

impl Series {
    fn row(&mut self, name: &str) -> String {
        sort(&mut self.ms);
        let missing = match self.missing {
            0 => String::new(),
            k => format!("  ({k} without an ack within {PER_ITEM:?})"),
        };
        format!("  {name:<34}{}{missing}", p50_p90_p99(&self.ms))
    }
}

/// Send a deliver and time until its `received` ack (as the reader task
/// got it); None when it has not come within `PER_ITEM`.
async fn ack_latency(conn: &mut Conn, seq: i64, agent: &str, id: &str) -> Option<f64> {
    let t0 = Instant::now();
    conn.deliver(seq, agent, id, "x").await.ok()?;
    let until = t0 + PER_ITEM;
    while let Some(f) = conn.recv_until(until).await {
        if f.ty == "delivery_ack" && f.message_id == id && f.status == "received" {
            return Some(ms(f.at - t0));
        }
    }
    None
}

/// `ids` (seq, agent, message id) sent one at a time, each after the
/// previous one's ack.
async fn series(conn: &mut Conn, ids: impl Iterator<Item = (i64, String, String)>) -> Series {
    let mut s = Series::default();
    for (seq, agent, id) in ids {
        match ack_latency(conn, seq, &agent, &id).await {
            Some(t) => s.ms.push(t),
            None => s.missing += 1,
        }
    }
    s
}

/// 500 application ping→pong round trips (the transport alone).
async fn ping_pong(conn: &mut Conn) -> Series {
    let mut s = Series::default();
    for _ in 0..500 {
        let t0 = Instant::now();
        let mut got = None;
        if conn.send(PING.to_string()).await.is_ok() {
            while let Some(f) = conn.recv_until(t0 + PER_ITEM).await {
                if f.ty == "pong" {
                    got = Some(ms(f.at - t0));
                    break;
                }
            }
        }
        match got {
            Some(t) => s.ms.push(t),
            None => s.missing += 1,
        }
    }
    s
}

/// This machine's floor for a durable ack now: (TCP round trip p50,
/// fdatasync p50) in ms.
fn floor_now(dir: &Path) -> (f64, f64) {
    (
        floor::tcp_round_trip_p50(500),
        floor::fdatasync_p50(dir, 500),
    )
}

fn agent(i: usize) -> String {
    format!("agent_{:02}", i % AGENTS)
}

/// Sequential deliver→ack latencies, next to this machine's floor; the
/// p50s of a new message and of a queued one.
async fn latency(conn: &mut Conn, home: &Path, v: &mut Verdict) -> (f64, f64) {
    // SSE has no application ping.
    let mut ping = match conn.is_sse() {
        true => Series::default(),
        false => ping_pong(conn).await,
    };
    let before = floor_now(home);
    hold_a_wake(conn, v).await;
    // The ack path alone: messages for the agent whose claude is held, so
    // no wake starts next to the measurement.
    let mut queued = series(
        conn,
        (0..300).map(|i| (1_000_001 + i, "agent_hold".into(), format!("q-{i}"))),
    )
    .await;
    let lat_ids = || (0..500).map(|i| (i as i64 + 1, agent(i), format!("lat-{i}")));
    // New messages, each starting a wake (one at a time, back to back).
    let mut lat = series(conn, lat_ids()).await;
    // Redeliveries of those (acked again, no wake).
    let mut dup = series(conn, lat_ids()).await;
    // The wakes of the new messages write and sync files of their own: the
    // second floor waits for them (counted by `wakes` either way).
    let until = Instant::now() + deadline(500, PER_WAKE);
    conn.wait(until, |l| l.finals_total() >= 500).await;
    let after = floor_now(home);

    println!(
        "deliver->ack latency (sequential, back to back; includes the fdatasync before each ack; {PER_ITEM:?} per item)"
    );
    println!("{}", lat.row("new message, its wake starting"));
    println!("{}", queued.row("new message, wake queued"));
    // The neighbours' load moves fdatasync by an order of magnitude between
    // minutes: the floor is measured on both sides of the series.
    for (when, (tcp, sync)) in [("before", before), ("after", after)] {
        let floor = tcp + sync;
        println!(
            "  floor {when:<6} the series: TCP round trip p50 {tcp:.3} + fdatasync p50 {sync:.3} = {floor:.3} ms; p50 / floor: wake starting {:.2}, wake queued {:.2}",
            percentile(&lat.ms, 0.5) / floor,
            percentile(&queued.ms, 0.5) / floor
        );
    }
    println!("{}", dup.row("redelivery (no new record)"));
    if !conn.is_sse() {
        println!("{}", ping.row("ping->pong (transport only)"));
    }
    for (name, s) in [
        ("ping", &ping),
        ("wake queued", &queued),
        ("new message", &lat),
        ("redelivery", &dup),
    ] {
        v.check(s.missing == 0, || {
            format!(
                "{name} series: {} without an answer within {PER_ITEM:?}",
                s.missing
            )
        });
    }
    (percentile(&lat.ms, 0.5), percentile(&queued.ms, 0.5))
}

/// The daemon's session in `mode` against a backend on `listener`.
async fn accept(mode: Mode, listener: TcpListener) -> Result<Conn, String> {
    let until = Instant::now() + HANDSHAKE;
    match mode {
        Mode::Ws => Conn::accept(&listener, until).await,
        Mode::Sse => Conn::accept_sse(listener, None, until).await,
        Mode::SseTls => Conn::accept_sse(listener, Some(tls_acceptor()?), until).await,
    }
}

/// A daemon in `mode`, connected; the listener's URL scheme follows it.
async fn connected(mode: Mode, home: &Path) -> Result<(Killed, Conn), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let scheme = if mode == Mode::SseTls {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}", listener.local_addr().expect("addr"));
    let daemon = start_daemon_over(home, &url, AGENTS, mode);
    let conn = accept(mode, listener)
        .await
        .map_err(|e| format!("{}: no session within {HANDSHAKE:?}: {e}", mode.title()))?;
    Ok((daemon, conn))
}

/// Connected, nothing to do: the daemon's resident memory.
async fn idle_rss(mode: Mode, v: &mut Verdict) -> Option<proc_mem::Mem> {
    let home = tempfile::tempdir().expect("tempdir");
    let (daemon, conn) = match connected(mode, home.path()).await {
        Ok(c) => c,
        Err(e) => {
            v.fail(e);
            return None;
        }
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = proc_mem::of(daemon.0.id());
    drop(conn);
    drop(daemon);
    idle
}

/// Idle RSS alone, min/median over several daemons per mode.
async fn idle_only(v: &mut Verdict) {
    const RUNS: usize = 5;
    println!(
        "idle RSS, {RUNS} daemons per mode (min / median; anonymous and file-backed of the median)"
    );
    for mode in [Mode::Ws, Mode::Sse, Mode::SseTls] {
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            runs.extend(idle_rss(mode, v).await);
        }
        runs.sort_by_key(|m| m.rss_kib);
        let (Some(min), Some(med)) = (runs.first(), runs.get(runs.len() / 2)) else {
            println!("  {:<22} n/a", mode.title());
            continue;
        };
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "  {:<22} {:.2} / {:.2} MiB  (anon {:.2}, file {:.2})",
            mode.title(),
            mib(min.rss_kib),
            mib(med.rss_kib),
            mib(med.anon_kib),
            mib(med.file_kib)
        );
    }
}

async fn bench(v: &mut Verdict, mode: Mode) -> Figures {
    let home = tempfile::tempdir().expect("tempdir");
    let (daemon, mut conn) = match connected(mode, home.path()).await {
        Ok(c) => c,
        Err(e) => {
            v.fail(e);
            return Figures::default();
        }
    };
    let pid = daemon.0.id();
    // Idle: connected, nothing to do.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = proc_mem::of(pid);

    let (new_p50, queued_p50) = latency(&mut conn, home.path(), v).await;
    let acks_per_s = throughput(&mut conn, v).await;
    wakes(&mut conn, v).await;
    println!(
        "RSS (daemon)          idle: {}; after the wakes: {}",
        proc_mem::show(idle),
        proc_mem::show(proc_mem::of(pid))
    );
    daemon_tools::round_trip(&mut conn, home.path(), v).await;
    drop(conn);
    drop(daemon);
    Figures {
        new_p50,
        queued_p50,
        acks_per_s,
        idle_rss_kib: idle.map(|m| m.rss_kib),
    }
}

/// The two transports' figures next to each other, with their ratio.
fn side_by_side(f: &[Figures], tls_idle: Option<u64>) {
    let [ws, sse] = f else { return };
    let mib = |k: Option<u64>| k.map_or("n/a".to_string(), proc_mem::mib);
    println!("== side by side ==");
    println!(
        "  {:<34}{:>14}{:>14}{:>10}",
        "", "WebSocket", "SSE + POST", "SSE/WS"
    );
    for (name, a, b) in [
        (
            "deliver->ack p50, wake queued",
            ws.queued_p50,
            sse.queued_p50,
        ),
        ("deliver->ack p50, wake starting", ws.new_p50, sse.new_p50),
    ] {
        println!("  {name:<34}{:>11.3} ms{:>11.3} ms{:>9.2}x", a, b, b / a);
    }
    println!(
        "  {:<34}{:>8.0} acks/s{:>8.0} acks/s{:>9.2}x",
        "ack throughput (2,000 / 20 agents)",
        ws.acks_per_s,
        sse.acks_per_s,
        sse.acks_per_s / ws.acks_per_s
    );
    println!(
        "  {:<34}{:>14}{:>14}   over TLS: {}",
        "idle RSS",
        mib(ws.idle_rss_kib),
        mib(sse.idle_rss_kib),
        mib(tls_idle)
    );
}

/// A self-signed certificate for 127.0.0.1 (the daemon runs with
/// `insecure = true`).
fn tls_acceptor() -> Result<tokio_rustls::TlsAcceptor, String> {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(|e| format!("key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(|e| format!("TLS config: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A message whose claude never ends: its agent's later messages queue,
/// and its wake's token lets a bridge call tools (SECURITY.md).
async fn hold_a_wake(conn: &mut Conn, v: &mut Verdict) {
    let sent = conn.deliver(1_000_000, "agent_hold", "hold", "HOLD").await;
    let until = Instant::now() + PER_ITEM;
    let started = sent.is_ok() && conn.wait(until, |l| l.tally("hold").started == 1).await;
    v.check(started, || {
        format!("the held wake did not start within {PER_ITEM:?}")
    });
}

/// 2,000 delivers over 20 agents, pipelined; acks counted until they are
/// all in or the deadline passes.
async fn throughput(conn: &mut Conn, v: &mut Verdict) -> f64 {
    let n = THROUGHPUT_N;
    let limit = deadline(n, PER_ACK);
    let t0 = Instant::now();
    for i in 0..n {
        if let Err(e) = conn
            .deliver(10_000 + i as i64, &agent(i), &format!("tp-{i}"), "x")
            .await
        {
            v.fail(format!("throughput: sending deliver {i} failed: {e}"));
            break;
        }
    }
    conn.wait(t0 + limit, |l| l.tally("tp").acked >= n).await;
    let tp = conn.ledger().tally("tp");
    let secs = tp.last_ack.map_or(f64::NAN, |t| (t - t0).as_secs_f64());
    println!(
        "ack throughput        {:>8.0} acks/s  ({n} delivers over {AGENTS} agents: {} acked in {secs:.3} s; at the {limit:?} deadline lost {}, duplicated {})",
        tp.acked as f64 / secs,
        tp.acked,
        tp.lost(),
        tp.dup_acks
    );
    tp.acked as f64 / secs
}

/// The wakes the new messages started: one final status each, counted per
/// agent until they are all in or the deadline passes, then for `SETTLE`
/// more to see any extra; then the ledger, group by group.
async fn wakes(conn: &mut Conn, v: &mut Verdict) {
    // lat-i and tp-i go to agent_(i % 20): 25 + 100 wakes each.
    let mut expected: HashMap<String, usize> = HashMap::new();
    for i in 0..500 {
        *expected.entry(agent(i)).or_default() += 1;
    }
    for i in 0..THROUGHPUT_N {
        *expected.entry(agent(i)).or_default() += 1;
    }
    let total: usize = expected.values().sum();
    let limit = deadline(total, PER_WAKE);
    let t0 = Instant::now();
    let all_in = |l: &backend::Ledger| {
        expected
            .iter()
            .all(|(a, n)| l.finals.get(a).copied().unwrap_or(0) >= *n)
    };
    conn.wait(t0 + limit, all_in).await;
    let secs = t0.elapsed().as_secs_f64();
    conn.wait(Instant::now() + SETTLE, |_| false).await;
    let l = conn.ledger();
    let (mut missing, mut extra) = (0, 0);
    for (a, got) in &l.finals {
        let want = expected.get(a).copied().unwrap_or(0);
        extra += got.saturating_sub(want);
    }
    for (a, want) in &expected {
        missing += want.saturating_sub(l.finals.get(a).copied().unwrap_or(0));
    }
    println!(
        "wakes run             {} final statuses for {total} messages (waited {secs:.1} s of the {limit:?} deadline, then {SETTLE:?} for extras): missing {missing}, extra {extra}",
        l.finals_total()
    );
    v.check(missing == 0 && extra == 0, || {
        format!("wakes: {missing} final statuses missing, {extra} extra")
    });
    accounting(&l, v);
}

/// Per group of messages: delivers sent, acked, lost, duplicated acks,
/// wakes started and started twice, as the ledger holds them now.
fn accounting(l: &backend::Ledger, v: &mut Verdict) {
    println!(
        "  {:<30}{:>6}{:>7}{:>6}{:>10}{:>9}{:>12}",
        "delivers (at the deadlines)", "sent", "acked", "lost", "dup acks", "started", "dup starts"
    );
    let rows = [
        ("hold", "hold  (wake held open)", Some(1)),
        ("q", "q     (queued behind it)", None),
        ("lat", "lat   (new, then redelivered)", Some(500)),
        ("tp", "tp    (throughput)", Some(THROUGHPUT_N)),
    ];
    for (group, name, starts) in rows {
        let t = l.tally(group);
        println!(
            "  {name:<30}{:>6}{:>7}{:>6}{:>10}{:>9}{:>12}",
            t.sent,
            t.acked,
            t.lost(),
            t.dup_acks,
            t.started,
            t.dup_starts
        );
        v.check(
            t.lost() == 0 && t.dup_acks == 0 && t.dup_starts == 0,
            || {
                format!(
                    "{group}: {} delivers lost, {} acks duplicated, {} wakes started twice",
                    t.lost(),
                    t.dup_acks,
                    t.dup_starts
                )
            },
        );
        if let Some(want) = starts {
            v.check(t.started == want, || {
                format!("{group}: {} wakes started, {want} expected", t.started)
            });
        }
    }
}

/// `--help` wall time, 50 runs.
fn help_time(v: &mut Verdict) {
    let mut help = Vec::new();
    let mut failed = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let ok = Command::new(BIN)
            .arg("--help")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        help.push(ms(t.elapsed()));
        failed += usize::from(!ok);
    }
    sort(&mut help);
    println!(
        "--help                min {:.2} ms  median {:.2} ms  (50 runs)",
        help[0],
        percentile(&help, 0.5)
    );
    v.check(failed == 0, || format!("--help failed {failed} times"));
}
