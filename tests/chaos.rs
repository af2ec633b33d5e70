//! Chaos: the daemon is SIGKILLed at random moments under a stream of
//! delivers to several agents and restarted on the same home, while the
//! test, playing the backend, redelivers what has no `received` ack the way
//! docs/PROTOCOL.md ("Delivery guarantees", "Dedup and last_seq") tells a
//! backend to. At the end: every message ran, none whose final status had
//! reached the backend ran again, and the daemon came back after every kill.
//!
//! Kills come three ways: at a random moment after a daemon's spawn,
//! connected or not (start-up, journal replay); at a random moment after its
//! `resume` (mid-wake, mid-report); a few ms after a deliver was sent to it
//! (the accept path: journal write, sync, `received` ack). Messages come
//! alone or in bursts, over four agents; each claude run lasts a random
//! short time. The backend sends, on each new connection after `resume`,
//! every message it does not hold as delivered and whose seq is above
//! `last_seq` (with original seqs, so a connection sees them in seq order),
//! and now and then a duplicate of a delivered one, which must not run.
//!
//! Seeded (`CHAOS_SEED=<u64>` replays a schedule; the seed is printed) and
//! bounded in time. `cargo test --test chaos -- --nocapture` shows the
//! figures.
//!
//! Who did what is told apart exactly, not by timing: daemon process number
//! `k` runs with `FAKE_CLAUDE_VERSION_TAG=chaos-i<k>`, which every claude it
//! starts inherits (the fake records its environment) and which its runtime
//! probe puts into the `ready` frame of each connection it makes. A final
//! `agent_status` names only the agent; it belongs to the message whose
//! `started` ack came last for that agent on the same connection (one wake
//! per agent at a time, frames in order: PROTOCOL.md "Outbound").

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TestHome;
use support::daemon::{Daemon, DaemonConfig, FAST_TIMING};
use support::fake_backend::{Conn, FakeBackend, deliver, frame_type, ping, tool_result_ok};
use support::fake_claude::{Behaviour, Call, FakeClaude, assistant_tool_use, init, result_success};

const DEFAULT_SEED: u64 = 0x5eed_c4a0_5eed;
const MESSAGES: usize = 60;
const AGENTS: [&str; 4] = ["agent_a", "agent_b", "agent_c", "agent_d"];
/// Kills before the last daemon is left to finish the work.
const KILLS: usize = 20;
/// Invocations with a scripted random duration (later ones use the default).
const SCRIPTED: usize = 160;
/// A restarted daemon must have connected and sent `resume` within this.
const COME_BACK: Duration = Duration::from_secs(15);
/// The last daemon must have run everything within this after its start.
const SETTLE: Duration = Duration::from_secs(40);
const TICK: Duration = Duration::from_millis(10);
const TAG_VAR: &str = "FAKE_CLAUDE_VERSION_TAG";
const CLAUDE_SESSION: &str = "c4a05000-0000-4000-8000-000000000001";

// ────────────────────────────────────────────────────────────── random ──

/// xorshift64*, seeded through splitmix64 (so any seed, 0 included, works).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    fn percent(&mut self, p: u64) -> bool {
        self.range(0, 100) < p
    }
}

fn seed() -> u64 {
    match std::env::var("CHAOS_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("CHAOS_SEED={s:?}: not a u64: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

// ──────────────────────────────────────────────────────────── messages ──

struct Msg {
    id: String,
    agent: &'static str,
    seq: i64,
    body: String,
    /// When the stream hands it to the backend (from the test's start).
    release_at: Duration,
    released: bool,
    /// The backend holds it as delivered: acked `received`, or covered by a
    /// `resume.last_seq` (PROTOCOL.md "Dedup and last_seq").
    delivered: bool,
    /// Connections it was sent on.
    sent_on: BTreeSet<usize>,
    /// The first final status the backend got for it: (connection, payload).
    final_on: Option<(usize, Value)>,
}

fn messages(rng: &mut Rng) -> Vec<Msg> {
    let mut at = Duration::ZERO;
    (0..MESSAGES)
        .map(|i| {
            // A third come together, read by the daemon as one batch.
            if !rng.percent(35) {
                at += rng.ms(20, 200);
            }
            let agent = AGENTS[rng.range(0, AGENTS.len() as u64) as usize];
            Msg {
                id: format!("chaos-{i:03}"),
                agent,
                seq: i as i64 + 1,
                body: format!("chaos-m{i:03}: task {i} for {agent}"),
                release_at: at,
                released: false,
                delivered: false,
                sent_on: BTreeSet::new(),
                final_on: None,
            }
        })
        .collect()
}

/// Each claude run answers through send_message (no fallback reply, so no
/// tool call to answer) after a random short time, so kills land mid-wake.
fn script_claude(claude: &FakeClaude, rng: &mut Rng) {
    let run = |ms: u64| {
        Behaviour::new()
            .events(&[
                init(CLAUDE_SESSION),
                assistant_tool_use(
                    CLAUDE_SESSION,
                    "mcp__cloudagent__send_message",
                    json!({"target": "user", "body": "done"}),
                ),
                result_success(CLAUDE_SESSION, "done"),
            ])
            .sleep(Duration::from_millis(ms))
    };
    for n in 1..=SCRIPTED {
        claude.script(n, run(rng.range(10, 350)));
    }
    claude.script_default(run(50));
}

// ───────────────────────────────────────────────────────────── backend ──

#[derive(Default)]
struct ConnState {
    conn: Option<Conn>,
    /// The daemon process that made it (from its `ready`).
    instance: Option<usize>,
    last_seq: Option<i64>,
    /// Agent → the message its latest `started` ack named, until its final.
    running: HashMap<&'static str, usize>,
    dups_sent: bool,
}

#[derive(Default)]
struct WireFigures {
    redelivered: usize,
    duplicates_sent: usize,
    covered_by_last_seq: usize,
    queue_full: usize,
}

/// The backend's side: what it sent, what it was told, per connection.
struct Wire {
    backend: FakeBackend,
    conns: BTreeMap<usize, ConnState>,
    cursor: usize,
    msgs: Vec<Msg>,
    by_id: HashMap<String, usize>,
    /// Anything the protocol does not allow, as seen on the wire.
    errors: Vec<String>,
    fig: WireFigures,
}

impl Wire {
    fn new(backend: FakeBackend, msgs: Vec<Msg>) -> Self {
        let by_id = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Wire {
            backend,
            conns: BTreeMap::new(),
            cursor: 0,
            msgs,
            by_id,
            errors: Vec::new(),
            fig: WireFigures::default(),
        }
    }

    /// Take new connections, then read every frame that arrived since the
    /// last call.
    async fn poll(&mut self) {
        while let Some(conn) = self.backend.try_next_connection(Duration::ZERO).await {
            let index = conn.index;
            self.conns.entry(index).or_default().conn = Some(conn);
        }
        let frames = self.backend.frames_from(self.cursor);
        self.cursor += frames.len();
        for (c, f) in frames {
            self.on_frame(c, &f).await;
        }
    }

    fn total_frames(&self) -> usize {
        self.cursor
    }

    async fn on_frame(&mut self, c: usize, f: &Value) {
        let p = &f["payload"];
        match frame_type(f) {
            "ready" => {
                let instance = instance_of_ready(p);
                if instance.is_none() {
                    self.errors
                        .push(format!("conn {c}: ready without a chaos tag: {p}"));
                }
                self.conns.entry(c).or_default().instance = instance;
            }
            "resume" => self.on_resume(c, p["last_seq"].as_i64()),
            "delivery_ack" => self.on_ack(c, p),
            "agent_status" if p["status"] != "running" => self.on_final(c, p),
            "tool_call" => {
                let reply = tool_result_ok(p["request_id"].as_str().unwrap_or(""), json!({}));
                if let Some(conn) = self.conns.get_mut(&c).and_then(|s| s.conn.as_mut()) {
                    let _ = conn.try_send(reply).await;
                }
            }
            "agent_status" | "pong" | "agent_session_start" => {}
            other => self
                .errors
                .push(format!("conn {c}: unexpected frame {other:?}: {f}")),
        }
    }

    /// Every deliver up to `last_seq` is durably accepted: a backend stops
    /// redelivering those. (Sound here because each connection gets its
    /// delivers in seq order and the daemon accepts them in arrival order:
    /// what it accepted is always every seq up to the highest.) If the daemon
    /// claimed too much, a message would never run and the test would fail.
    fn on_resume(&mut self, c: usize, last_seq: Option<i64>) {
        let Some(last) = last_seq else {
            self.errors
                .push(format!("conn {c}: resume without a last_seq"));
            return;
        };
        self.conns.entry(c).or_default().last_seq = Some(last);
        for m in self
            .msgs
            .iter_mut()
            .filter(|m| m.seq <= last && !m.delivered)
        {
            if !m.released || m.sent_on.is_empty() {
                self.errors.push(format!(
                    "conn {c}: resume last_seq {last} covers {} (seq {}), never sent",
                    m.id, m.seq
                ));
            }
            m.delivered = true;
            self.fig.covered_by_last_seq += 1;
        }
    }

    fn msg(&mut self, c: usize, id: &Value) -> Option<usize> {
        let found = id.as_str().and_then(|id| self.by_id.get(id)).copied();
        if found.is_none() {
            self.errors
                .push(format!("conn {c}: unknown message id {id}"));
        }
        found
    }

    fn on_ack(&mut self, c: usize, p: &Value) {
        let Some(i) = self.msg(c, &p["message_id"]) else {
            return;
        };
        match p["status"].as_str().unwrap_or("") {
            "received" => {
                if p["seq"].as_i64() != Some(self.msgs[i].seq) {
                    self.errors
                        .push(format!("conn {c}: received ack with a wrong seq: {p}"));
                }
                self.msgs[i].delivered = true;
            }
            "started" => {
                let agent = self.msgs[i].agent;
                let state = self.conns.entry(c).or_default();
                if let Some(prev) = state.running.insert(agent, i) {
                    self.errors.push(format!(
                        "conn {c}: {} started on {agent} while message #{prev} had no final status",
                        self.msgs[i].id
                    ));
                }
            }
            "queue_full" => self.fig.queue_full += 1,
            other => self
                .errors
                .push(format!("conn {c}: ack status {other:?}: {p}")),
        }
    }

    fn on_final(&mut self, c: usize, p: &Value) {
        let agent = p["agent_id"].as_str().unwrap_or("");
        let state = self.conns.entry(c).or_default();
        let Some(i) = AGENTS
            .iter()
            .find(|a| **a == agent)
            .and_then(|a| state.running.remove(a))
        else {
            self.errors.push(format!(
                "conn {c}: final status with no started message: {p}"
            ));
            return;
        };
        let m = &mut self.msgs[i];
        if let Some((first, _)) = &m.final_on {
            self.errors.push(format!(
                "{}: a second final status (conn {c}, the first on conn {first}): it ran again",
                m.id
            ));
        } else {
            m.final_on = Some((c, p.clone()));
        }
    }

    /// On the connection of daemon `live`, once it sent `resume`, in one
    /// write: every released message the backend does not hold as delivered
    /// and that was not yet sent on it, in seq order (so seqs only grow on
    /// a connection); on a new connection, now and then, a duplicate of a
    /// delivered one. How many delivers went out.
    async fn pump(&mut self, live: usize, rng: &mut Rng) -> usize {
        let Some((&c, _)) =
            self.conns.iter().rev().find(|(_, s)| {
                s.instance == Some(live) && s.last_seq.is_some() && s.conn.is_some()
            })
        else {
            return 0;
        };
        let mut batch: Vec<usize> = (0..self.msgs.len())
            .filter(|&i| {
                let m = &self.msgs[i];
                m.released && !m.delivered && !m.sent_on.contains(&c)
            })
            .collect();
        let fresh = batch.len();
        let state = self.conns.get_mut(&c).unwrap();
        if !state.dups_sent {
            state.dups_sent = true;
            let done: Vec<usize> = (0..self.msgs.len())
                .filter(|&i| self.msgs[i].delivered)
                .collect();
            for _ in 0..rng.range(0, 3) {
                if !done.is_empty() {
                    batch.push(done[rng.range(0, done.len() as u64) as usize]);
                }
            }
        }
        if batch.is_empty() || !self.send(c, &batch).await {
            return 0;
        }
        self.fig.duplicates_sent += batch.len() - fresh;
        self.fig.redelivered += batch[..fresh]
            .iter()
            .filter(|&&i| self.msgs[i].sent_on.len() > 1)
            .count();
        batch.len()
    }

    /// Send messages `batch` on connection `c` in one write; false if the
    /// socket is gone.
    async fn send(&mut self, c: usize, batch: &[usize]) -> bool {
        let frames: Vec<Value> = batch
            .iter()
            .map(|&i| {
                let m = &self.msgs[i];
                let mut d = deliver(m.seq, m.agent, &m.id, &m.body);
                d["payload"]["session_id"] = json!(format!("sess_{}", m.agent));
                d
            })
            .collect();
        let Some(conn) = self.conns.get_mut(&c).and_then(|s| s.conn.as_mut()) else {
            return false;
        };
        if conn.try_send_burst(&frames).await.is_err() {
            return false;
        }
        for &i in batch {
            self.msgs[i].sent_on.insert(c);
        }
        true
    }

    async fn ping(&mut self, live: usize) {
        for s in self.conns.values_mut().filter(|s| s.instance == Some(live)) {
            if let Some(conn) = s.conn.as_mut() {
                let _ = conn.try_send(ping()).await;
            }
        }
    }

    fn resumed(&self, instance: usize) -> bool {
        self.conns
            .values()
            .any(|s| s.instance == Some(instance) && s.last_seq.is_some())
    }

    fn release_due(&mut self, elapsed: Duration) {
        for m in self.msgs.iter_mut().filter(|m| m.release_at <= elapsed) {
            m.released = true;
        }
    }

    /// What is missing when the deadline passed.
    fn unsettled(&self) -> String {
        let missing: Vec<&str> = self
            .msgs
            .iter()
            .filter(|m| !m.delivered || m.final_on.is_none())
            .map(|m| m.id.as_str())
            .collect();
        format!(
            "not settled within {SETTLE:?}; without a received ack or a final status: {missing:?}"
        )
    }

    fn instance_of_conn(&self, c: usize) -> Option<usize> {
        self.conns.get(&c).and_then(|s| s.instance)
    }
}

/// `chaos-i<k>` at the end of the claude runtime's version in `ready`.
fn instance_of_ready(p: &Value) -> Option<usize> {
    p["runtimes"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == "claude_code")?["version"]
        .as_str()?
        .split_whitespace()
        .last()?
        .strip_prefix("chaos-i")?
        .parse()
        .ok()
}

// ───────────────────────────────────────────────────────────── daemons ──

/// When a daemon gets its SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// At `life` after its spawn, connected or not (start-up, replay).
    Early,
    /// At `life` after its `resume` (mid-wake, mid-report).
    Lived,
    /// `life` (a few ms) after the next deliver sent to it, or 1.5 s after
    /// its `resume` if none came (the accept path: journal, sync, ack).
    OnDeliver,
    /// The last one: never killed.
    Stays,
}

struct Life {
    spawned: Instant,
    kill: Kill,
    life: Duration,
    resumed_after: Option<Duration>,
    killed_mid_wake: bool,
}

struct Chaos<'h> {
    home: &'h TestHome,
    wire: Wire,
    rng: Rng,
    t0: Instant,
    lives: Vec<Life>,
}

impl Chaos<'_> {
    fn live(&self) -> usize {
        self.lives.len() - 1
    }

    fn spawn(&mut self, kill: Kill) -> Daemon {
        let k = self.lives.len();
        let life = match kill {
            Kill::Early => self.rng.ms(0, 250),
            Kill::Lived => self.rng.ms(50, 900),
            Kill::OnDeliver => self.rng.ms(0, 5),
            Kill::Stays => Duration::ZERO,
        };
        self.lives.push(Life {
            spawned: Instant::now(),
            kill,
            life,
            resumed_after: None,
            killed_mid_wake: false,
        });
        Daemon::start_with_env(self.home, FAST_TIMING, &[(TAG_VAR, &format!("chaos-i{k}"))])
    }

    /// One step of the backend: release due messages, read frames, send.
    /// How many delivers it sent to the live daemon.
    async fn step(&mut self) -> usize {
        self.wire.release_due(self.t0.elapsed());
        self.wire.poll().await;
        let k = self.live();
        if self.lives[k].resumed_after.is_none() && self.wire.resumed(k) {
            self.lives[k].resumed_after = Some(self.lives[k].spawned.elapsed());
        }
        self.wire.pump(k, &mut self.rng).await
    }

    async fn tick(&mut self) {
        self.step().await;
        tokio::time::sleep(TICK).await;
    }

    /// The daemon must neither have exited by itself nor stay away.
    fn check_alive(&mut self, d: &mut Daemon) {
        let k = self.live();
        if let Some(st) = d.child.try_wait().unwrap() {
            panic!(
                "daemon #{k} exited by itself ({st}); its output:\n{}",
                tail(&d.output(self.home))
            );
        }
        let l = &self.lives[k];
        if l.kill != Kill::Early && l.resumed_after.is_none() && l.spawned.elapsed() > COME_BACK {
            panic!(
                "daemon #{k} did not come back: no resume within {COME_BACK:?}; seen on the wire: {:?}; its output:\n{}",
                self.wire.errors,
                tail(&d.output(self.home))
            );
        }
    }

    /// Whether to kill now, `sent` delivers having just gone out.
    fn kill_due(&self, sent: usize) -> bool {
        let l = &self.lives[self.live()];
        let age = l.spawned.elapsed();
        match (l.kill, l.resumed_after) {
            (Kill::Early, _) => age >= l.life,
            (Kill::Lived, Some(r)) => age >= r + l.life,
            (Kill::OnDeliver, Some(r)) => sent > 0 || age >= r + Duration::from_millis(1500),
            _ => false,
        }
    }

    fn kill(&mut self, d: &mut Daemon) {
        let k = self.live();
        // As far as the backend knows: a wake had started, no final yet.
        self.lives[k].killed_mid_wake = self
            .wire
            .conns
            .values()
            .any(|s| s.instance == Some(k) && !s.running.is_empty());
        d.signal("KILL");
        let st = d
            .wait_exit(Duration::from_secs(5))
            .expect("killed daemon exits");
        assert_eq!(st.signal(), Some(9), "daemon #{k} ended by SIGKILL: {st}");
    }

    /// Kill and restart `KILLS` times, then start the daemon that stays.
    async fn storm(&mut self) -> Daemon {
        let mut d = self.spawn(Kill::Lived);
        for i in 0..KILLS {
            loop {
                self.check_alive(&mut d);
                let sent = self.step().await;
                if self.kill_due(sent) {
                    break;
                }
                tokio::time::sleep(TICK).await;
            }
            if self.lives[self.live()].kill == Kill::OnDeliver {
                std::thread::sleep(self.lives[self.live()].life);
            }
            self.kill(&mut d);
            let kill = match self.rng.range(0, 100) {
                _ if i + 1 == KILLS => Kill::Stays,
                0..20 => Kill::Early,
                20..50 => Kill::OnDeliver,
                _ => Kill::Lived,
            };
            d = self.spawn(kill);
        }
        d
    }

    /// Let the last daemon work until the backend holds every message as
    /// delivered and the daemon has nothing pending, queued, running or
    /// unsent; `false` if `SETTLE` passed first.
    async fn settle(&mut self, d: &mut Daemon) -> bool {
        let start = Instant::now();
        let mut last_ping = Instant::now();
        let mut last_status = Instant::now();
        loop {
            self.check_alive(d);
            self.tick().await;
            if start.elapsed() > SETTLE {
                return false;
            }
            if last_ping.elapsed() > Duration::from_secs(10) {
                self.wire.ping(self.live()).await;
                last_ping = Instant::now();
            }
            let all_in = self.wire.msgs.iter().all(|m| m.released && m.delivered);
            if !all_in || last_status.elapsed() < Duration::from_millis(300) {
                continue;
            }
            last_status = Instant::now();
            if daemon_idle(self.home).await {
                // What it wrote last may still be on its way.
                self.quiet_wire().await;
                return true;
            }
        }
    }

    /// Read frames until none came for 300 ms.
    async fn quiet_wire(&mut self) {
        let mut seen = self.wire.total_frames();
        let mut since = Instant::now();
        while since.elapsed() < Duration::from_millis(300) {
            self.tick().await;
            if self.wire.total_frames() != seen {
                seen = self.wire.total_frames();
                since = Instant::now();
            }
        }
    }
}

/// `status --json`: nothing pending, queued, running, or waiting to be sent.
async fn daemon_idle(home: &TestHome) -> bool {
    let mut cmd = home.std_cmd();
    cmd.args(["status", "--json"]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run status");
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return false;
    };
    v["running"] == true
        && v["pending"] == 0
        && v["queued"] == 0
        && v["outbox"] == 0
        && v["running_wakes"].as_object().is_some_and(|w| w.is_empty())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

// ────────────────────────────────────────────────────────────── verdict ──

/// One claude invocation: which daemon started it, for which message, and
/// whether it ran to its end (prompt read whole, exit 0 by itself).
struct Run {
    n: usize,
    instance: Option<usize>,
    msg: Option<usize>,
    completed: bool,
}

fn runs(calls: &[Call], wire: &Wire) -> Vec<Run> {
    calls
        .iter()
        .map(|c| {
            let msg = c
                .stdin
                .split_once("message_id: ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|id| wire.by_id.get(id).copied());
            let instance = c
                .env
                .get(TAG_VAR)
                .and_then(|t| t.strip_prefix("chaos-i")?.parse().ok());
            let completed = c.exit_code == Some(0)
                && c.stdin_eof
                && msg.is_some_and(|i| c.stdin.contains(&wire.msgs[i].body));
            Run {
                n: c.n,
                instance,
                msg,
                completed,
            }
        })
        .collect()
}

/// Everything the guarantees forbid, one line each; plus the count of
/// final statuses lost to a kill (legitimate: PROTOCOL.md "Limits of the
/// guarantee").
fn judge(wire: &Wire, runs: &[Run], last: usize) -> (Vec<String>, usize) {
    let mut bad: Vec<String> = runs
        .iter()
        .filter(|r| r.instance.is_none())
        .map(|r| format!("invocation {} has no daemon tag", r.n))
        .collect();
    let mut lost_finals = 0;
    for (i, m) in wire.msgs.iter().enumerate() {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.msg == Some(i)).collect();
        let mut per_instance: BTreeMap<usize, usize> = BTreeMap::new();
        for r in &mine {
            *per_instance
                .entry(r.instance.unwrap_or(usize::MAX))
                .or_default() += 1;
        }
        for (k, n) in per_instance.iter().filter(|(_, n)| **n > 1) {
            bad.push(format!("{}: started {n} times by daemon #{k}", m.id));
        }
        let ran = mine.iter().any(|r| r.completed);
        if !ran {
            bad.push(format!(
                "{}: never ran to completion ({} starts)",
                m.id,
                mine.len()
            ));
        }
        match &m.final_on {
            Some((c, status)) => judge_final(wire, m, &mine, *c, status, &mut bad),
            None if !ran => {}
            // Done, but the final status died with the daemon in its outbox.
            None if !mine.iter().any(|r| r.completed && r.instance == Some(last)) => {
                lost_finals += 1
            }
            None => bad.push(format!(
                "{}: the last daemon ran it but sent no final status",
                m.id
            )),
        }
    }
    (bad, lost_finals)
}

/// The final status of `m` came on connection `c`: from a daemon that ran
/// it to its end, successful, and no later daemon started it again.
fn judge_final(
    wire: &Wire,
    m: &Msg,
    mine: &[&Run],
    c: usize,
    status: &Value,
    bad: &mut Vec<String>,
) {
    let Some(k) = wire.instance_of_conn(c) else {
        bad.push(format!(
            "{}: final status on conn {c} of no known daemon",
            m.id
        ));
        return;
    };
    if status["status"] != "idle" || status["exit_code"] != 0 {
        bad.push(format!("{}: final status {status}", m.id));
    }
    if !mine.iter().any(|r| r.instance == Some(k) && r.completed) {
        bad.push(format!(
            "{}: final status from daemon #{k}, which did not run it",
            m.id
        ));
    }
    for r in mine.iter().filter(|r| r.instance.is_some_and(|j| j > k)) {
        bad.push(format!(
            "{}: its final status came from daemon #{k}, yet daemon #{} ran it again (invocation {})",
            m.id,
            r.instance.unwrap_or_default(),
            r.n
        ));
    }
}

/// What happened to message `i`: its starts (invocation, daemon, whether
/// it ran to its end, exit code) and where its final status came from.
fn history(wire: &Wire, runs: &[Run], calls: &[Call], i: usize) -> String {
    let m = &wire.msgs[i];
    let starts: Vec<String> = runs
        .iter()
        .zip(calls)
        .filter(|(r, _)| r.msg == Some(i))
        .map(|(r, c)| {
            format!(
                "#{} by daemon {:?}{} exit {:?}",
                r.n,
                r.instance,
                if r.completed { " completed" } else { "" },
                c.exit_code
            )
        })
        .collect();
    let fin = m.final_on.as_ref().map(|(c, p)| {
        format!(
            "conn {c} (daemon {:?}) {}",
            wire.instance_of_conn(*c),
            p["status"]
        )
    });
    format!(
        "{} seq {} {}: sent on conns {:?}, delivered {}, starts [{}], final {}",
        m.id,
        m.seq,
        m.agent,
        m.sent_on,
        m.delivered,
        starts.join(", "),
        fin.unwrap_or_else(|| "none".into())
    )
}

/// What happened to every daemon process.
fn print_lives(chaos: &Chaos<'_>, runs: &[Run]) {
    for (k, l) in chaos.lives.iter().enumerate() {
        let started = runs.iter().filter(|r| r.instance == Some(k)).count();
        println!(
            "chaos: daemon #{k}: spawned at {:?}, kill {:?}, life {:?}, resume after {:?}, {started} claude starts",
            l.spawned - chaos.t0,
            l.kill,
            l.life,
            l.resumed_after
        );
    }
}

fn print_figures(
    seed: u64,
    chaos: &Chaos<'_>,
    runs: &[Run],
    lost_finals: usize,
    violations: usize,
    wall: Duration,
) {
    let lives = &chaos.lives;
    let comeback: Vec<u128> = lives
        .iter()
        .filter_map(|l| l.resumed_after)
        .map(|d| d.as_millis())
        .collect();
    let started: Vec<usize> = runs.iter().filter_map(|r| r.msg).collect();
    let distinct = |v: &[usize]| v.iter().collect::<BTreeSet<_>>().len();
    let completed: Vec<usize> = runs
        .iter()
        .filter(|r| r.completed)
        .filter_map(|r| r.msg)
        .collect();
    println!(
        "chaos: seed {seed}: {MESSAGES} messages over {} agents; {} kills ({} before the daemon connected, \
         {} mid-wake); {} daemons, every one came back (resume {}..{} ms after spawn)",
        AGENTS.len(),
        lives.len() - 1,
        lives.iter().filter(|l| l.resumed_after.is_none()).count(),
        lives.iter().filter(|l| l.killed_mid_wake).count(),
        lives.len(),
        comeback.iter().min().unwrap_or(&0),
        comeback.iter().max().unwrap_or(&0),
    );
    println!(
        "chaos: {} claude invocations ({} ran to their end, {} cut by a kill, {} of them before the prompt \
         was written); {} re-runs of wakes cut before their final status ({} of them after claude had \
         finished); {} final statuses lost to a kill",
        runs.len(),
        completed.len(),
        runs.len() - completed.len(),
        runs.len() - started.len(),
        started.len() - distinct(&started),
        completed.len() - distinct(&completed),
        lost_finals,
    );
    let f = &chaos.wire.fig;
    println!(
        "chaos: backend: {} redeliveries, {} duplicates of delivered messages, {} covered by \
         resume.last_seq, {} queue_full; violations {violations}; wall {:.1} s",
        f.redelivered,
        f.duplicates_sent,
        f.covered_by_last_seq,
        f.queue_full,
        wall.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_no_message_and_reruns_no_finished_one() {
    let wall = Instant::now();
    let seed = seed();
    println!("chaos: seed {seed} (CHAOS_SEED={seed} replays this schedule)");
    let mut rng = Rng::new(seed);
    // Dropped in reverse order: every daemon first, then the fake claude
    // (which kills any invocation still alive), then the home.
    let home = TestHome::new();
    let claude = FakeClaude::install(&home.bin_dir());
    script_claude(&claude, &mut rng);
    let backend = FakeBackend::start().await;
    let mut cfg = DaemonConfig::new(&backend.url(), &AGENTS);
    cfg.daemon_section = format!("max_concurrent_wakes = {}\n", AGENTS.len());
    home.write_config(&cfg.render(&home));
    let msgs = messages(&mut rng);
    let mut chaos = Chaos {
        home: &home,
        wire: Wire::new(backend, msgs),
        rng,
        t0: Instant::now(),
        lives: Vec::new(),
    };

    let mut last = chaos.storm().await;
    let settled = chaos.settle(&mut last).await;
    let output = last.output(&home);
    drop(last);
    let calls = claude.calls();
    let runs = runs(&calls, &chaos.wire);
    let (mut bad, lost_finals) = judge(&chaos.wire, &runs, chaos.live());
    bad.extend(chaos.wire.errors.iter().cloned());
    if !settled {
        bad.push(chaos.wire.unsettled());
    }
    if std::env::var_os("CHAOS_VERBOSE").is_some() || !bad.is_empty() {
        for i in 0..chaos.wire.msgs.len() {
            println!("chaos: {}", history(&chaos.wire, &runs, &calls, i));
        }
        print_lives(&chaos, &runs);
    }
    print_figures(seed, &chaos, &runs, lost_finals, bad.len(), wall.elapsed());
    assert!(
        bad.is_empty(),
        "seed {seed}: {} violation(s):\n  {}\nlast daemon's output:\n{}",
        bad.len(),
        bad.join("\n  "),
        tail(&output)
    );
}
