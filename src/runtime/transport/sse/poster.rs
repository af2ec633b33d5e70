//! The sending half: a task POSTs the outbox's frames one at a time, in
//! order, payload only, each to its endpoint (docs/PROTOCOL.md, "SSE +
//! POST"). A POST that fails is retried (backoff with jitter, `Retry-After`
//! honoured) before the next frame goes: order is kept and nothing is
//! dropped, and since it is a task of its own, inbound frames are handled
//! meanwhile. Only the session pops a frame from the outbox, when the task
//! reports it posted: a session that ends mid-POST waits a moment for the
//! answer, then leaves the frame queued for the next one (at least once,
//! never lost), and no stale task can pop a frame of a newer session. A second task POSTs the heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::{self, Client, Failed};
use crate::protocol::Outbound;
use crate::runtime::delivery::outbox::Outbox;
use crate::runtime::timing::Backoff;
use crate::runtime::transport::FrameWriter;

const HEARTBEAT_PATH: &str = "/v1/daemon/heartbeat";

/// What the posting task tells the session.
enum Report {
    /// This frame, the outbox's front when the task took it, is on the
    /// server: pop it (unless it was taken out meanwhile, e.g. a tool
    /// call that timed out).
    Posted(Outbound),
    /// The key was refused; the session must end.
    Auth(u16),
}

/// How long closing waits for a POST in flight: its answer says whether
/// the server has the frame, so it is not sent twice (a tool call posted
/// twice could act twice).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct Writer {
    reports: mpsc::Receiver<Report>,
    /// A POST of the outbox's front is waiting for its answer.
    in_flight: Arc<AtomicBool>,
    /// The task waits for this before it looks at the outbox again.
    popped: mpsc::Sender<()>,
    tasks: [JoinHandle<()>; 2],
}

/// How the poster retries.
#[derive(Clone, Copy)]
pub struct Retry {
    pub base: Duration,
    pub max: Duration,
}

impl Writer {
    pub fn start(
        client: Client,
        outbox: Arc<Outbox>,
        retry: Retry,
        heartbeat_every: Duration,
    ) -> Self {
        let (report_tx, reports) = mpsc::channel(1);
        let (popped, popped_rx) = mpsc::channel(1);
        let in_flight = Arc::new(AtomicBool::new(false));
        let poster = tokio::spawn(post_loop(
            Poster {
                client: client.clone(),
                retry,
                in_flight: in_flight.clone(),
            },
            outbox,
            report_tx,
            popped_rx,
        ));
        let heartbeat = tokio::spawn(heartbeat(client, heartbeat_every));
        Self {
            reports,
            in_flight,
            popped,
            tasks: [poster, heartbeat],
        }
    }

    fn on_report(&mut self, report: Option<Report>, outbox: &Outbox) -> Result<(), String> {
        match report {
            Some(Report::Posted(frame)) => {
                if outbox.front_now().as_ref() == Some(&frame) {
                    outbox.pop();
                }
                // Capacity 1, and the task sends one report per pop: never full.
                let _ = self.popped.try_send(());
                Ok(())
            }
            Some(Report::Auth(code)) => Err(format!(
                "the server refused the machine API key on a POST (HTTP {code})"
            )),
            None => Err("the posting task ended".into()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FrameWriter for Writer {
    /// There is no `pong` over HTTP (the server sends no `ping` there).
    async fn pong(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Take what the task has posted so far; never waits for a POST (acks
    /// queued by the caller go out from the task, in order).
    async fn flush(&mut self, outbox: &Outbox) -> Result<(), String> {
        while let Ok(report) = self.reports.try_recv() {
            self.on_report(Some(report), outbox)?;
        }
        Ok(())
    }

    async fn send_next(&mut self, outbox: &Outbox) -> Result<(), String> {
        let report = self.reports.recv().await;
        self.on_report(report, outbox)
    }

    async fn close(&mut self, _why: &str, outbox: &Outbox) {
        self.tasks[1].abort();
        if self.in_flight.load(Ordering::SeqCst)
            && let Ok(Some(report)) = tokio::time::timeout(CLOSE_GRACE, self.reports.recv()).await
        {
            let _ = self.on_report(Some(report), outbox);
        }
        let _ = self.flush(outbox).await;
        self.tasks[0].abort();
    }
}

/// What the posting task POSTs with.
struct Poster {
    client: Client,
    retry: Retry,
    in_flight: Arc<AtomicBool>,
}

async fn post_loop(
    poster: Poster,
    outbox: Arc<Outbox>,
    reports: mpsc::Sender<Report>,
    mut popped: mpsc::Receiver<()>,
) {
    loop {
        let frame = outbox.front().await;
        let report = match frame.http_path() {
            None => Report::Posted(frame),
            Some(path) => match post_until_done(&poster, path, &frame).await {
                Ok(()) => Report::Posted(frame),
                Err(code) => {
                    let _ = reports.send(Report::Auth(code)).await;
                    return;
                }
            },
        };
        let sent = reports.send(report).await;
        poster.in_flight.store(false, Ordering::SeqCst);
        if sent.is_err() || popped.recv().await.is_none() {
            return;
        }
    }
}

/// POST one frame until the server takes it. `Err`: the key was refused.
/// A frame the server can never accept (400, 422…) is given up with an
/// error in the log: retrying it would hold up everything behind it.
async fn post_until_done(poster: &Poster, path: &str, frame: &Outbound) -> Result<(), u16> {
    let url = poster.client.url(path);
    let body = frame.payload().to_string();
    let mut backoff = Backoff::new(poster.retry.base, poster.retry.max);
    loop {
        // Cleared once the success is reported (see `post_loop`), so
        // `close` never aborts between the answer and its report.
        poster.in_flight.store(true, Ordering::SeqCst);
        let failed = match post(&poster.client, &url, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        poster.in_flight.store(false, Ordering::SeqCst);
        match failed {
            Failed::Auth(code) => return Err(code),
            Failed::Refused(why) => {
                tracing::error!(
                    "giving up a {} frame: {why}; the server will not accept it",
                    frame.type_name()
                );
                return Ok(());
            }
            Failed::Retry { why, after } => {
                let delay = after.unwrap_or_default().max(backoff.next_delay());
                tracing::warn!(
                    "POST of a {} frame failed ({why}); retrying in {:.1} s",
                    frame.type_name(),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn post(client: &Client, url: &str, body: String) -> Result<(), Failed> {
    let sent = client
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(http::POST_TIMEOUT)
        .body(body)
        .send()
        .await;
    match sent {
        Err(e) => Err(http::request_failure(url, &e)),
        Ok(resp) if resp.status().is_success() => {
            // Read the answer so the connection goes back to the pool.
            let _ = resp.bytes().await;
            Ok(())
        }
        Ok(resp) => Err(http::status_failure(url, &resp)),
    }
}

/// `POST /v1/daemon/heartbeat {}` every `every`, the first one `every`
/// after connecting; failures are logged at debug and ignored.
async fn heartbeat(client: Client, every: Duration) {
    let url = client.url(HEARTBEAT_PATH);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = post(&client, &url, "{}".into()).await {
            tracing::debug!("heartbeat failed: {e:?}");
        }
    }
}
