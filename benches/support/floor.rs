//! This machine's floor for a durable ack, measured in the same run as the
//! daemon: a plain TCP round trip between two processes plus one 200-byte
//! overwrite and fdatasync (README.md, "Benchmarks").

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::stats::{percentile, sort};

/// Set in the child that `tcp_round_trip_p50` starts to echo.
pub const ECHO_ENV: &str = "CLOUDAGENT_BENCH_ECHO";

/// A child process killed and reaped when dropped, so that a bench that
/// stops early leaves nothing running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The echo child: accept one connection on 127.0.0.1:0 (port on stdout),
/// echo until EOF.
pub fn echo_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    println!("{}", listener.local_addr().expect("local addr").port());
    std::io::stdout().flush().expect("flush");
    let (mut s, _) = listener.accept().expect("accept");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => {
                if s.write_all(&buf[..k]).is_err() {
                    return;
                }
            }
        }
    }
}

/// p50 of a plain TCP round trip (150 bytes each way, TCP_NODELAY) with an
/// echo in another process, as the backend and the daemon are: wake-ups,
/// context switches and loopback, no WebSocket, no JSON.
pub fn tcp_round_trip_p50(n: usize) -> f64 {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(ECHO_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the echo child");
    let mut port = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("read the echo port");
    let child = Killed(child);
    let mut c =
        std::net::TcpStream::connect(("127.0.0.1", port.trim().parse::<u16>().expect("port")))
            .expect("connect to the echo child");
    c.set_nodelay(true).expect("nodelay");
    let msg = [b'x'; 150];
    let mut buf = [0u8; 4096];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.write_all(&msg).expect("write");
        let mut got = 0;
        while got < msg.len() {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return f64::NAN,
                Ok(k) => got += k,
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(c);
    drop(child);
    sort(&mut times);
    percentile(&times, 0.5)
}

/// p50 of a 200-byte overwrite of preallocated zeros plus fdatasync, in
/// `dir` (the same filesystem as the daemon's journal).
pub fn fdatasync_p50(dir: &Path, n: usize) -> f64 {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fdatasync-floor");
    let f = std::fs::File::create(&path).expect("create the fdatasync probe");
    f.write_all_at(&vec![0u8; 1 << 20], 0).expect("preallocate");
    f.sync_all().expect("sync");
    let rec = [b'r'; 200];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f.write_all_at(&rec, (i * rec.len()) as u64).expect("write");
        f.sync_data().expect("fdatasync");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    sort(&mut times);
    percentile(&times, 0.5)
}
