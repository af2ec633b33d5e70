//! Test-only backend speaking the SSE + POST transport (docs/PROTOCOL.md,
//! "SSE + POST") over plain HTTP/1.1 on 127.0.0.1:0, written on tokio alone
//! so a test controls every byte and every TCP write (an event split across
//! reads is two writes with a pause between).
//!
//! * `POST /v1/daemon/ready` → `{"host_id","last_acked_seq","agents":[]}`,
//!   or the next status queued with [`FakeSse::fail_ready`].
//! * `GET /v1/daemon/stream` → `200 text/event-stream`, body delimited by
//!   closing the connection; the test writes to it through the
//!   [`Stream`] it gets from [`FakeSse::next_stream`]; dropping it closes.
//! * `GET /v1/daemon/ws` → the status set by [`FakeSse::set_ws_status`]
//!   (404 by default): a backend or proxy without WebSocket.
//! * any other `POST` → recorded with its answer; 200 `{}` unless a status
//!   was queued for that path with [`FakeSse::fail_post`].
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};

use super::fake_backend::http1::{Request, read_request, respond};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Post {
    pub path: String,
    pub body: Value,
    /// What the fake answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    posts: Vec<Post>,
    ready_failures: VecDeque<u16>,
    post_failures: HashMap<String, VecDeque<u16>>,
    ws_status: u16,
    ws_attempts: usize,
    last_acked_seq: i64,
}

pub struct FakeSse {
    url: String,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    streams: tokio::sync::Mutex<mpsc::Receiver<Stream>>,
    task: JoinHandle<()>,
}

/// One open `GET /v1/daemon/stream`.
pub struct Stream {
    pub last_event_id: Option<String>,
    tx: mpsc::Sender<Vec<u8>>,
}

impl Stream {
    /// Write these bytes as one TCP write.
    pub async fn write(&self, bytes: &[u8]) {
        let _ = self.tx.send(bytes.to_vec()).await;
    }

    /// One event carrying `frame`, with `id` when given.
    pub async fn event(&self, name: &str, id: Option<i64>, frame: &Value) {
        let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
        self.write(format!("event: {name}\n{id}data: {frame}\n\n").as_bytes())
            .await;
    }
}

impl FakeSse {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            ws_status: 404,
            ..State::default()
        }));
        let changed = Arc::new(Notify::new());
        let (stream_tx, streams) = mpsc::channel(16);
        let task = tokio::spawn(accept(listener, state.clone(), changed.clone(), stream_tx));
        Self {
            url,
            state,
            changed,
            streams: tokio::sync::Mutex::new(streams),
            task,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn fail_ready(&self, status: u16) {
        self.state.lock().unwrap().ready_failures.push_back(status);
    }

    pub fn fail_post(&self, path: &str, status: u16) {
        let mut s = self.state.lock().unwrap();
        s.post_failures
            .entry(path.to_string())
            .or_default()
            .push_back(status);
    }

    pub fn set_ws_status(&self, status: u16) {
        self.state.lock().unwrap().ws_status = status;
    }

    pub fn set_last_acked_seq(&self, seq: i64) {
        self.state.lock().unwrap().last_acked_seq = seq;
    }

    pub fn ws_attempts(&self) -> usize {
        self.state.lock().unwrap().ws_attempts
    }

    /// Every POST so far, failed ones included.
    pub fn posts(&self) -> Vec<Post> {
        self.state.lock().unwrap().posts.clone()
    }

    /// Bodies of the POSTs to `path` that were answered 2xx, in order.
    pub fn accepted(&self, path: &str) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|p| p.path == path && p.status < 300)
            .map(|p| p.body)
            .collect()
    }

    pub async fn next_stream(&self, timeout: Duration) -> Stream {
        let mut rx = self.streams.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .expect("no GET /v1/daemon/stream in time")
            .expect("fake SSE backend stopped")
    }

    /// Wait until `pred` holds for the POSTs so far.
    pub async fn wait_posts(&self, timeout: Duration, what: &str, pred: impl Fn(&[Post]) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if pred(&self.posts()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}; POSTs: {:#?}", self.posts());
            }
        }
    }
}

impl Drop for FakeSse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    streams: mpsc::Sender<Stream>,
) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        conns.spawn(serve(tcp, state.clone(), changed.clone(), streams.clone()));
    }
}

async fn serve(
    tcp: TcpStream,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    streams: mpsc::Sender<Stream>,
) {
    let mut tcp = BufReader::new(tcp);
    while let Some(req) = read_request(&mut tcp).await {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/daemon/stream") => {
                return stream(tcp, req, streams).await;
            }
            ("GET", "/v1/daemon/ws") => {
                let status = {
                    let mut s = state.lock().unwrap();
                    s.ws_attempts += 1;
                    s.ws_status
                };
                respond(&mut tcp, status, "").await;
                return;
            }
            ("POST", "/v1/daemon/ready") => {
                let (status, body) = {
                    let mut s = state.lock().unwrap();
                    let status = s.ready_failures.pop_front().unwrap_or(200);
                    let body = json!({"host_id": "host_test", "last_acked_seq": s.last_acked_seq, "agents": []});
                    record(&mut s, &req, status);
                    (status, body)
                };
                changed.notify_waiters();
                respond(&mut tcp, status, &body.to_string()).await;
            }
            ("POST", path) => {
                let status = {
                    let mut s = state.lock().unwrap();
                    let status = s
                        .post_failures
                        .get_mut(path)
                        .and_then(|q| q.pop_front())
                        .unwrap_or(200);
                    record(&mut s, &req, status);
                    status
                };
                changed.notify_waiters();
                respond(&mut tcp, status, "{}").await;
            }
            _ => {
                respond(&mut tcp, 404, "").await;
            }
        }
    }
}

fn record(s: &mut State, req: &Request, status: u16) {
    s.posts.push(Post {
        path: req.path.clone(),
        body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
        status,
    });
}

async fn stream(mut tcp: BufReader<TcpStream>, req: Request, streams: mpsc::Sender<Stream>) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nconnection: close\r\n\r\n";
    if tcp.get_mut().write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let conn = Stream {
        last_event_id: req.header("last-event-id").map(String::from),
        tx,
    };
    if streams.send(conn).await.is_err() {
        return;
    }
    while let Some(bytes) = rx.recv().await {
        if tcp.get_mut().write_all(&bytes).await.is_err() {
            return;
        }
        let _ = tcp.get_mut().flush().await;
    }
}
