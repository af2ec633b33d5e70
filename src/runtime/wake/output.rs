//! claude's stdout (the stream-json transcript, PROTOCOL §4.5) and stderr
//! (its tail, §4.8), read while it runs and, once it has exited, for a
//! bounded time only: a process it started may hold the pipes open long
//! after (a background shell, a `setsid` escapee on macOS), and the wake
//! must end anyway.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::stream::Transcript;

/// Called with all the text claude has streamed so far, each time it grows.
pub type OnPartial = Box<dyn FnMut(&str) + Send>;

/// Longest stdout line accepted from claude (the original's limit).
const MAX_LINE: usize = 10 * 1024 * 1024;
/// stderr kept for `last-spawn.json` and the stale-session check.
const STDERR_TAIL_CHARS: usize = 2000;

/// The two readers of one claude run.
pub struct Readers {
    stdout: JoinHandle<Transcript>,
    stderr: JoinHandle<String>,
    stop: CancellationToken,
}

impl Readers {
    pub fn start(
        stdout: Option<impl AsyncRead + Unpin + Send + 'static>,
        stderr: Option<impl AsyncRead + Unpin + Send + 'static>,
        id: &str,
        on_partial: Option<OnPartial>,
    ) -> Self {
        let stop = CancellationToken::new();
        Self {
            stdout: tokio::spawn(read_stdout(
                stdout,
                id.to_string(),
                stop.clone(),
                on_partial,
            )),
            stderr: tokio::spawn(read_tail(stderr, stop.clone())),
            stop,
        }
    }

    /// Once claude and its supervisor have exited: what it wrote, waiting
    /// at most `drain` for the pipes to reach end of file.
    pub async fn finish(self, drain: Duration, id: &str) -> (Transcript, String) {
        let stop = self.stop.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            stop.cancel();
        });
        let transcript = self.stdout.await.unwrap_or_default();
        let tail = self.stderr.await.unwrap_or_default();
        timer.abort();
        if self.stop.is_cancelled() {
            tracing::warn!(
                "{id}: claude's output was still open {drain:?} after it exited (held by a process it started); stopped reading"
            );
        }
        (transcript, tail)
    }
}

/// Feed claude's stdout to a transcript, one line at a time, with a cap
/// on line length (a longer line is dropped, not fatal).
async fn read_stdout(
    stdout: Option<impl AsyncRead + Unpin>,
    id: String,
    stop: CancellationToken,
    mut on_partial: Option<OnPartial>,
) -> Transcript {
    let mut transcript = Transcript::default();
    let Some(mut out) = stdout else {
        return transcript;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let n = tokio::select! {
            read = out.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = stop.cancelled() => break,
        };
        let mut chunk = &buf[..n];
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            if !skipping {
                line.extend_from_slice(&chunk[..pos]);
                let before = transcript.partial_text.len();
                transcript.feed_line(&String::from_utf8_lossy(&line));
                if let Some(publish) = on_partial.as_mut()
                    && transcript.partial_text.len() > before
                {
                    publish(&transcript.partial_text);
                }
            }
            line.clear();
            skipping = false;
            chunk = &chunk[pos + 1..];
        }
        if !skipping {
            line.extend_from_slice(chunk);
            if line.len() > MAX_LINE {
                tracing::warn!("{id}: claude wrote a stdout line over {MAX_LINE} bytes; skipped");
                line.clear();
                skipping = true;
            }
        }
    }
    if !line.is_empty() && !skipping {
        transcript.feed_line(&String::from_utf8_lossy(&line));
    }
    transcript
}

/// The last `STDERR_TAIL_CHARS` characters of a stream.
async fn read_tail(stderr: Option<impl AsyncRead + Unpin>, stop: CancellationToken) -> String {
    let Some(mut err) = stderr else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = err.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 64 * 1024 {
                        kept.drain(..kept.len() - 16 * 1024);
                    }
                }
            },
            () = stop.cancelled() => break,
        }
    }
    let text = String::from_utf8_lossy(&kept);
    let count = text.chars().count();
    text.chars()
        .skip(count.saturating_sub(STDERR_TAIL_CHARS))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn pipes_held_open_are_read_for_the_drain_time_only() {
        let (mut out_w, out_r) = tokio::io::duplex(1024);
        let (mut err_w, err_r) = tokio::io::duplex(1024);
        out_w
            .write_all(b"{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s1\"}\n")
            .await
            .unwrap();
        err_w.write_all(b"No conversation found\n").await.unwrap();
        let readers = Readers::start(Some(out_r), Some(err_r), "agent_a", None);
        // The writers stay open, like a grandchild holding the pipes.
        let (transcript, tail) = readers.finish(Duration::from_secs(2), "agent_a").await;
        assert_eq!(transcript.session_id.as_deref(), Some("s1"));
        assert_eq!(tail, "No conversation found\n");
        drop((out_w, err_w));
    }

    #[tokio::test]
    async fn closed_pipes_are_read_to_the_end() {
        let (mut out_w, out_r) = tokio::io::duplex(1024);
        let (err_w, err_r) = tokio::io::duplex(1024);
        out_w.write_all(b"not json\n{\"partial\"").await.unwrap();
        drop((out_w, err_w));
        let readers = Readers::start(Some(out_r), Some(err_r), "agent_a", None);
        let (transcript, tail) = readers.finish(Duration::from_secs(3600), "agent_a").await;
        assert_eq!(transcript, Transcript::default());
        assert_eq!(tail, "");
    }
}
