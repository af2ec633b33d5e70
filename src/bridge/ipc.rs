//! Bridge ↔ daemon IPC over the profile's unix socket (PROTOCOL §5.4): one
//! compact JSON object per line each way. Unlike the original there is no
//! 64 KiB line limit, a connection may carry several requests, and the
//! server only talks to peers running as its own uid.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::protocol::ipc::{IpcError, Request, RequestLine, Response};

/// Largest request or response line accepted (far above any real one; it
/// only bounds memory if a peer misbehaves).
const MAX_LINE: usize = 64 << 20;

/// What the daemon does with a request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Result<Value, IpcError>> + Send;
}

pub struct Server {
    path: PathBuf,
}

impl Server {
    /// Bind the socket with mode 0600, replacing a stale one. It is bound
    /// inside a fresh 0700 staging directory, made 0600 there, then renamed
    /// into place: bound directly at `path` it would exist with the
    /// umask's mode until the chmod, and another user could connect in
    /// between (SECURITY.md, "The bridge socket"). A process-wide umask
    /// would also reach files other threads create meanwhile.
    pub fn bind(path: &Path) -> io::Result<(Self, UnixListener)> {
        let dir = crate::fsutil::parent_dir(path);
        crate::fsutil::create_dir_all(dir, 0o700)?;
        let staging = Staging::create(dir)?;
        let staged = staging.0.join("s");
        let listener = UnixListener::bind(&staged)?;
        crate::fsutil::set_mode(&staged, 0o600)?;
        std::fs::rename(&staged, path)?;
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
            // SO_PEERCRED or getpeereid (docs/PLATFORMS.md).
            match crate::platform::peer_credentials(stream.as_fd()) {
                Ok(cred) if cred.uid == uid => {}
                Ok(cred) => {
                    tracing::warn!(
                        "rejected a bridge connection from uid {} (daemon runs as uid {uid})",
                        cred.uid
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

/// A private directory next to the socket, removed when dropped. Its name
/// is short: a socket path has a small limit (104 bytes on macOS).
struct Staging(PathBuf);

impl Staging {
    fn create(dir: &Path) -> io::Result<Self> {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        let path = dir.join(format!(".bridge-{}", &hex[..8]));
        // Created with at most 0700 whatever the umask (which can only
        // remove bits), then set to exactly 0700 so we can write in it.
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let staging = Self(path);
        crate::fsutil::set_mode(&staging.0, 0o700)?;
        Ok(staging)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
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
        let req: RequestLine = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                // As the original: a malformed line gets no answer.
                tracing::warn!("bridge socket: malformed request skipped: {e}");
                continue;
            }
        };
        let answer = match Request::parse(&req.op, req.args) {
            Ok(request) => handler.handle(request).await,
            Err(e) => Err(e),
        };
        let (result, error) = match answer {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        let resp = Response {
            request_id: req.request_id,
            result,
            error,
        };
        let Ok(mut out) = serde_json::to_vec(&resp) else {
            tracing::error!("bridge socket: an answer could not be encoded");
            return;
        };
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
    request: &Request,
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
        let line = RequestLine {
            request_id: request_id.clone(),
            op: request.op().to_string(),
            args: request.args(),
        };
        let mut line =
            serde_json::to_vec(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
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
    use crate::protocol::ipc::{SessionArgs, ToolCallArgs};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    struct Echo;
    impl Handler for Echo {
        async fn handle(&self, request: Request) -> Result<Value, IpcError> {
            match request {
                Request::ToolCall(c) => Ok(c.tool_args),
                Request::GetCurrentSession(_) => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Value::Null)
                }
                Request::Status => Err(IpcError::new("NO_STATUS", "here")),
            }
        }
    }

    fn echo(args: Value) -> Request {
        Request::ToolCall(ToolCallArgs {
            agent_id: "a".into(),
            tool_name: "t".into(),
            tool_args: args,
            session_id: None,
            token: None,
        })
    }

    /// Write one raw line and read the answer line.
    async fn raw(sock: &Path, line: &str) -> String {
        let stream = UnixStream::connect(sock).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(line.as_bytes()).await.unwrap();
        let mut answer = String::new();
        BufReader::new(read).read_line(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn round_trip_large_payload_errors_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("bridge.sock");
        std::fs::write(&sock, "a stale socket's place").unwrap();
        let (server, listener) = Server::bind(&sock).unwrap();
        assert_eq!(
            std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1, "no staging directory left: {entries:?}");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.serve(listener, Arc::new(Echo), cancel.clone()));

        let big = "x".repeat(1 << 20);
        let v = call(&sock, &echo(json!({"big": big})), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(v["big"].as_str().unwrap().len(), 1 << 20);
        let e = call(&sock, &Request::Status, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "IPC error NO_STATUS: here");
        let slow = Request::GetCurrentSession(SessionArgs {
            agent_id: "a".into(),
            token: None,
        });
        let e = call(&sock, &slow, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Timeout(_)));
        // Unknown operations and bad arguments are answered, not acted on.
        let answer = raw(&sock, "{\"request_id\":\"r1\",\"op\":\"rm\",\"args\":{}}\n").await;
        assert!(answer.contains("\"code\":\"UNKNOWN_OP\""), "{answer}");
        let answer = raw(
            &sock,
            "{\"request_id\":\"r2\",\"op\":\"tool_call\",\"args\":{\"agent_id\":1}}\n",
        )
        .await;
        assert!(answer.contains("\"code\":\"BAD_ARGS\""), "{answer}");

        cancel.cancel();
        task.await.unwrap();
        assert!(!sock.exists(), "socket removed on shutdown");
        let e = call(&sock, &echo(json!({})), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
    }
}
