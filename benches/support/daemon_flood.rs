//! The daemon bench's flood: a second daemon (fresh home, 3 agents) gets 3
//! pipelined delivers just under 16 MiB (the default frame limit), then one
//! of 60 MB, over the limit. Reported: the idle and peak RSS (VmHWM) around
//! them, what was acked, lost or duplicated at the deadline, and what the
//! daemon did with the oversized one — measured, not assumed: acked, or the
//! connection closed (and whether the daemon reconnected and still acks).

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::backend::{self, Conn};
use super::proc_mem;
use super::{HANDSHAKE, PER_ITEM, SETTLE, Verdict, deadline, start_daemon};

/// The largest deliver the daemon is to accept by default (its frame
/// limit, configurable); what it actually does with one just under and one
/// far over is measured, not assumed.
const LIMIT: usize = 16 << 20;
const BIG: usize = 3;
const OVERSIZED: usize = 60_000_000;
/// Per maximum-size deliver: a 16 MiB journal record with its fdatasync,
/// and a wake that pipes 16 MiB to claude.
const PER_BIG: Duration = Duration::from_secs(20);

/// A body that makes the whole deliver frame exactly `frame_len` bytes.
fn body_for(frame_len: usize, seq: i64, agent: &str, id: &str) -> String {
    let envelope = backend::deliver(seq, agent, id, "").len();
    "x".repeat(frame_len.saturating_sub(envelope))
}

pub async fn run(v: &mut Verdict) {
    let home = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut daemon = start_daemon(home.path(), &url, 3);
    let pid = daemon.0.id();
    let mut conn = match Conn::accept(&listener, Instant::now() + HANDSHAKE).await {
        Ok(c) => c,
        Err(e) => {
            return v.fail(format!(
                "flood daemon: no session within {HANDSHAKE:?}: {e}"
            ));
        }
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!("flood (a second daemon, 3 agents)");
    println!(
        "  idle                      {}",
        proc_mem::show(proc_mem::of(pid))
    );
    max_size(&mut conn, pid, v).await;
    let conn = oversized(conn, &listener, pid, v).await;
    let alive = matches!(daemon.0.try_wait(), Ok(None));
    v.check(alive, || "flood: the daemon exited".into());
    if let Some(mut conn) = conn.filter(|_| alive) {
        still_acks(&mut conn, v).await;
    }
    println!(
        "  at the end                {}",
        proc_mem::show(proc_mem::of(pid))
    );
}

/// 3 delivers of just under `LIMIT`, pipelined to 3 agents; acks and final
/// statuses counted until all are in or the deadline passes.
async fn max_size(conn: &mut Conn, pid: u32, v: &mut Verdict) {
    let frame_len = LIMIT - 1024;
    let limit = deadline(BIG, PER_BIG);
    let t0 = Instant::now();
    for k in 0..BIG {
        let (agent, id) = (format!("agent_{k:02}"), format!("big-{k}"));
        let body = body_for(frame_len, k as i64 + 1, &agent, &id);
        if let Err(e) = conn.deliver(k as i64 + 1, &agent, &id, &body).await {
            v.fail(format!(
                "flood: sending a {frame_len}-byte deliver failed: {e}"
            ));
            break;
        }
    }
    let sent = t0.elapsed().as_secs_f64();
    conn.wait(t0 + limit, |l| {
        l.tally("big").acked >= BIG && l.finals_total() >= BIG
    })
    .await;
    conn.wait(Instant::now() + SETTLE, |_| false).await;
    let (t, finals) = {
        let l = conn.ledger();
        (l.tally("big"), l.finals_total())
    };
    let acked_in = t.last_ack.map_or(f64::NAN, |at| (at - t0).as_secs_f64());
    println!(
        "  {BIG} delivers of {frame_len} bytes (16 MiB - 1 KiB), pipelined: sent in {sent:.3} s, {} acked in {acked_in:.3} s, {finals} final statuses; at the {limit:?} deadline lost {}, duplicated acks {}, wakes started twice {}",
        t.acked,
        t.lost(),
        t.dup_acks,
        t.dup_starts
    );
    println!(
        "  after them                {}",
        proc_mem::show(proc_mem::of(pid))
    );
    v.check(t.lost() == 0 && t.dup_acks == 0 && t.dup_starts == 0 && finals == BIG, || {
        format!(
            "flood: {} of {BIG} maximum-size delivers lost, {} acks duplicated, {} started twice, {finals} of {BIG} final statuses",
            t.lost(),
            t.dup_acks,
            t.dup_starts
        )
    });
}

/// One deliver of `OVERSIZED` bytes; returns the connection to go on with:
/// the same one if it stayed open, the daemon's next one if it closed, or
/// None when the daemon did not come back within `HANDSHAKE`.
async fn oversized(
    mut conn: Conn,
    listener: &TcpListener,
    pid: u32,
    v: &mut Verdict,
) -> Option<Conn> {
    let body = body_for(OVERSIZED, 100, "agent_00", "over");
    let t0 = Instant::now();
    let sent = conn.deliver(100, "agent_00", "over", &body).await;
    drop(body);
    let until = t0 + PER_BIG;
    conn.wait(until, |l| l.tally("over").acked > 0 || l.closed.is_some())
        .await;
    let acked = conn.ledger().tally("over").last_ack;
    let outcome = match (acked, conn.closed()) {
        (Some(at), _) => format!("accepted: acked after {:.3} s", (at - t0).as_secs_f64()),
        (None, Some((why, at))) => format!(
            "rejected: {why} after {:.3} s{}",
            (at - t0).as_secs_f64(),
            sent.err()
                .map(|e| format!(" (our send: {e})"))
                .unwrap_or_default()
        ),
        (None, None) => format!("no ack, connection still open after {PER_BIG:?}"),
    };
    println!("  1 deliver of {OVERSIZED} bytes  {outcome}");
    println!(
        "  after it                  {}",
        proc_mem::show(proc_mem::of(pid))
    );
    if conn.closed().is_none() {
        return Some(conn);
    }
    drop(conn);
    let t1 = Instant::now();
    match Conn::accept(listener, t1 + HANDSHAKE).await {
        Ok(c) => {
            println!(
                "  the daemon reconnected after {:.3} s",
                t1.elapsed().as_secs_f64()
            );
            Some(c)
        }
        Err(e) => {
            v.fail(format!(
                "flood: no new session within {HANDSHAKE:?} after the oversized deliver: {e}"
            ));
            None
        }
    }
}

/// After the oversized deliver, a small one is still acked.
async fn still_acks(conn: &mut Conn, v: &mut Verdict) {
    let t0 = Instant::now();
    let sent = conn.deliver(200, "agent_01", "after", "x").await.is_ok();
    let acked = sent
        && conn
            .wait(t0 + PER_ITEM, |l| l.tally("after").acked == 1)
            .await;
    match acked {
        true => println!(
            "  a small deliver after it   acked in {:.3} ms",
            super::ms(t0.elapsed())
        ),
        false => v.fail(format!(
            "flood: a small deliver after the oversized one was not acked within {PER_ITEM:?}"
        )),
    }
}
