//! Bridge ↔ daemon IPC over the profile's unix socket (PROTOCOL §5.4): one
//! compact JSON object per line each way. Unlike the original there is no
//! 64 KiB line limit, a connection may carry several requests, and the
//! server only talks to peers running as its own uid.

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// Largest request or response line accepted (far above any real one; it
/// only bounds memory if a peer misbehaves).
const MAX_LINE: usize = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub request_id: String,
    pub op: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpcError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl IpcError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<IpcError>,
}

/// What the daemon does with a request.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        op: String,
        args: Value,
    ) -> impl Future<Output = Result<Value, IpcError>> + Send;
}

pub struct Server {
    path: PathBuf,
}

impl Server {
    /// Bind the socket with mode 0600, replacing a stale one.
    pub fn bind(path: &Path) -> io::Result<(Self, UnixListener)> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if let Some(parent) = path.parent() {
            crate::fsutil::create_dir_all(parent, 0o700)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok((
            Self {
                path: path.to_path_buf(),
            },
            listener,
        ))
    }

    pub async fn serve<H: Handler>(
        self,
        listener: UnixListener,
        handler: Arc<H>,
        cancel: CancellationToken,
    ) {
        let uid = rustix::process::getuid().as_raw();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = cancel.cancelled() => break,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("bridge socket accept failed: {e}");
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == uid => {}
                Ok(cred) => {
                    tracing::warn!(
                        "rejected a bridge connection from uid {} (daemon runs as uid {uid})",
                        cred.uid()
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!("rejected a bridge connection whose uid cannot be read: {e}");
                    continue;
                }
            }
            let handler = handler.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = connection(stream, handler) => {}
                    _ = cancel.cancelled() => {}
                }
            });
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn read_line(
    reader: &mut BufReader<impl tokio::io::AsyncRead + Unpin>,
    line: &mut Vec<u8>,
) -> io::Result<usize> {
    line.clear();
    let mut limited = (&mut *reader).take(MAX_LINE as u64);
    let n = limited.read_until(b'\n', line).await?;
    if n == MAX_LINE && line.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(n)
}

async fn connection<H: Handler>(stream: UnixStream, handler: Arc<H>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        match read_line(&mut reader, &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let req: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                // As the original: a malformed line gets no answer.
                tracing::warn!("bridge socket: malformed request skipped: {e}");
                continue;
            }
        };
        let (result, error) = match handler.handle(req.op, req.args).await {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        let resp = Response {
            request_id: req.request_id,
            result,
            error,
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "the cloudagent daemon is not running for this profile (no socket at {0}); start it with `cloudagent-daemon start`"
    )]
    NotRunning(PathBuf),
    #[error("cannot reach the cloudagent daemon at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("IPC call timed out after {0:?}")]
    Timeout(Duration),
    #[error("the daemon's answer was not understood: {0}")]
    Protocol(String),
    #[error("IPC error {}{}", .0.code, if .0.message.is_empty() { String::new() } else { format!(": {}", .0.message) })]
    Remote(IpcError),
}

/// One request on a fresh connection.
pub async fn call(
    socket: &Path,
    op: &str,
    args: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let request_id = format!("ipc_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let work = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning(socket.to_path_buf())
                }
                _ => ClientError::Io {
                    path: socket.to_path_buf(),
                    source: e,
                },
            })?;
        let (read, mut write) = stream.into_split();
        let mut line =
            serde_json::to_vec(&json!({"request_id": request_id, "op": op, "args": args}))
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        write.write_all(&line).await.map_err(|e| ClientError::Io {
            path: socket.to_path_buf(),
            source: e,
        })?;
        let mut reader = BufReader::new(read);
        let mut buf = Vec::new();
        let n = read_line(&mut reader, &mut buf)
            .await
            .map_err(|e| ClientError::Io {
                path: socket.to_path_buf(),
                source: e,
            })?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "the daemon closed the connection without answering".into(),
            ));
        }
        let resp: Response =
            serde_json::from_slice(&buf).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if resp.request_id != request_id {
            return Err(ClientError::Protocol(format!(
                "answer for {} instead of {request_id}",
                resp.request_id
            )));
        }
        match (resp.result, resp.error) {
            (_, Some(e)) => Err(ClientError::Remote(e)),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        async fn handle(&self, op: String, args: Value) -> Result<Value, IpcError> {
            match op.as_str() {
                "echo" => Ok(args),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Value::Null)
                }
                other => Err(IpcError::new("UNKNOWN_OP", other)),
            }
        }
    }

    #[tokio::test]
    async fn round_trip_large_payload_errors_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("bridge.sock");
        let (server, listener) = Server::bind(&sock).unwrap();
        assert_eq!(
            std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.serve(listener, Arc::new(Echo), cancel.clone()));

        let big = "x".repeat(1 << 20);
        let v = call(&sock, "echo", json!({"big": big}), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(v["big"].as_str().unwrap().len(), 1 << 20);
        let e = call(&sock, "nope", json!({}), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "IPC error UNKNOWN_OP: nope");
        let e = call(&sock, "slow", json!({}), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Timeout(_)));

        cancel.cancel();
        task.await.unwrap();
        assert!(!sock.exists(), "socket removed on shutdown");
        let e = call(&sock, "echo", json!({}), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
    }
}
