#!/usr/bin/env python3
"""End-to-end check and rough ack throughput of the original Python daemon
(cloudagent-daemon 0.2.4) in SSE mode, against a tiny fake backend on
127.0.0.1 port 0.

    original_check.py VENV [--runs 3] [--n 2000] [--agents 20]
                           [--post-delay-ms 0]

Per run: a fresh HOME prepared by original.sh, the daemon started in the
foreground, /v1/daemon/ready answered with the agents list, the stream
opened; one probe deliver (its `received` ack and the wake's final status
waited for), then N delivers over the agents written back to back as SSE
events. Counted: `delivery-ack` POSTs with status `received` for them until
all are in or the deadline (10 s + 20 ms per deliver, as the Rust bench)
passes, then 1 s more for duplicates. The daemon is then sent SIGTERM
(its exit status and how long it took are reported) and its process group
SIGKILLed. Also reported: how many POST
connections the daemon opened and the most POSTs it had in flight at once
(make the latter meaningful with --post-delay-ms, which holds every POST
answer that long).
"""
import argparse
import contextlib
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEY = "sk_machine_bench"


class Backend:
    def __init__(self, agents, post_delay, body="hi"):
        self.body = body
        self.agents = agents
        self.post_delay = post_delay
        self.stream = None
        self.stream_open = asyncio.Event()
        self.last_event_ids = []
        self.posts = []  # (t, path, body)
        self.changed = asyncio.Event()
        self.conns = 0
        self.post_conns = set()
        self.inflight = 0
        self.max_inflight = 0
        self.http_versions = set()
        self.bad_auth = 0

    async def handle(self, reader, writer):
        self.conns += 1
        conn = self.conns
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, version = line.decode().split()
                self.http_versions.add(version)
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if headers.get("authorization") != f"Bearer {KEY}":
                    self.bad_auth += 1
                n = int(headers.get("content-length", "0"))
                body = await reader.readexactly(n) if n else b""
                if method == "GET" and path == "/v1/daemon/stream":
                    await self.serve_stream(headers, writer)
                    return
                await self.serve_post(conn, path, body, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def serve_stream(self, headers, writer):
        self.last_event_ids.append(headers.get("last-event-id"))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-store\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        self.stream = writer
        self.stream_open.set()
        # Held open until the daemon goes away.
        while not writer.is_closing():
            await asyncio.sleep(0.5)

    async def serve_post(self, conn, path, body, writer):
        self.post_conns.add(conn)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.post_delay:
                await asyncio.sleep(self.post_delay)
            doc = json.loads(body or b"{}")
            self.posts.append((time.monotonic(), path, doc))
            self.changed.set()
            answer = {}
            if path == "/v1/daemon/ready":
                answer = {
                    "host_id": "host_bench",
                    "last_acked_seq": 0,
                    "agents": [{"agent_id": a} for a in self.agents],
                }
            data = json.dumps(answer).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            self.inflight -= 1

    def send_events(self, events):
        chunks = []
        for seq, agent, mid in events:
            frame = {
                "v": 1, "type": "deliver", "id": f"frm_{seq}",
                "ts": "2026-01-01T00:00:00+00:00", "seq": seq,
                "payload": {"agent_id": agent, "message_id": mid,
                            "body": "hi" if mid == "probe" else self.body},
            }
            ev = f"event: deliver\nid: {seq}\ndata: {json.dumps(frame)}\n\n".encode()
            chunks.append(f"{len(ev):x}\r\n".encode() + ev + b"\r\n")
        self.stream.write(b"".join(chunks))

    def acks(self, ids, status="received"):
        return [
            (t, d.get("message_id")) for t, p, d in self.posts
            if p == "/v1/daemon/delivery-ack" and d.get("status") == status
            and d.get("message_id") in ids
        ]

    async def wait(self, until, pred):
        while not pred():
            left = until - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True


def finals(backend):
    return sum(
        1 for _, p, d in backend.posts
        if p == "/v1/daemon/agent-status" and d.get("status") != "running"
    )


async def one_run(venv, n, agents_n, post_delay, body):
    agents = [f"agent_{i:02d}" for i in range(agents_n)]
    backend = Backend(agents, post_delay, body)
    server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="orig-home-"))
    cmd = subprocess.run(
        ["sh", str(HERE / "original.sh"), venv, str(home),
         f"http://127.0.0.1:{port}", str(agents_n)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    log = open(home / "daemon.log", "wb")
    proc = subprocess.Popen("exec " + cmd, shell=True, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out = {}
    try:
        t_start = time.monotonic()
        until = t_start + 30
        while not backend.stream_open.is_set():
            if proc.poll() is not None or time.monotonic() > until:
                raise RuntimeError(f"no stream (daemon exit {proc.poll()}), see the log")
            await asyncio.sleep(0.05)
        out["ready_to_stream_s"] = time.monotonic() - t_start
        ready = [d for _, p, d in backend.posts if p == "/v1/daemon/ready"]
        out["ready_body"] = ready[0] if ready else None
        out["last_event_id"] = backend.last_event_ids[0]

        # Probe: one deliver, its ack and its wake.
        t0 = time.monotonic()
        backend.send_events([(1, agents[0], "probe")])
        ok = await backend.wait(t0 + 10, lambda: backend.acks({"probe"}))
        out["probe_ack_ms"] = (backend.acks({"probe"})[0][0] - t0) * 1e3 if ok else None
        ok = await backend.wait(t0 + 20, lambda: finals(backend) >= 1)
        out["probe_wake_ms"] = (time.monotonic() - t0) * 1e3 if ok else None
        out["probe_posts"] = [(p, d) for _, p, d in backend.posts
                              if p != "/v1/daemon/ready"]

        # Throughput: n delivers back to back.
        ids = {f"m-{k}" for k in range(n)}
        events = [(k + 2, agents[k % agents_n], f"m-{k}") for k in range(n)]
        f0 = finals(backend)
        t0 = time.monotonic()
        backend.send_events(events)
        await backend.stream.drain()
        out["sent_s"] = time.monotonic() - t0
        deadline = t0 + 10 + 0.020 * n
        await backend.wait(deadline, lambda: len({m for _, m in backend.acks(ids)}) >= n)
        await asyncio.sleep(1)
        acks = backend.acks(ids)
        got = {m for _, m in acks}
        out["acked"] = len(got)
        out["lost"] = n - len(got)
        out["dup_acks"] = len(acks) - len(got)
        out["queue_full"] = len(backend.acks(ids, "queue_full"))
        out["started"] = len(backend.acks(ids, "started"))
        out["finals"] = finals(backend) - f0
        last = max(t for t, _ in acks) if acks else t0
        out["acked_in_s"] = last - t0
        out["acks_per_s"] = len(got) / (last - t0) if acks else 0.0
        out["post_conns"] = len(backend.post_conns)
        out["max_inflight"] = backend.max_inflight
        out["http_versions"] = sorted(backend.http_versions)
        out["bad_auth"] = backend.bad_auth
        out["stream_opens"] = len(backend.last_event_ids)
    finally:
        # SIGTERM to the daemon alone (it handles it), then whatever of its
        # group (held claude children) is left.
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        out["sigterm_exit_s"] = time.monotonic() - t_term
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out["exit"] = proc.returncode
        server.close()
        log.close()
        out["log_tail"] = (home / "daemon.log").read_text(errors="replace").splitlines()[-3:]
        if not os.environ.get("KEEP_HOME"):
            shutil.rmtree(home, ignore_errors=True)
        else:
            out["home"] = str(home)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("venv")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--post-delay-ms", type=float, default=0)
    # HOLD makes the fake claude sleep: the first wake then holds the only
    # wake slot (max_concurrent = min(8, ceil(cpus/2))), so no other wake
    # runs and the acks measure the deliver path alone.
    ap.add_argument("--body", default="hi")
    a = ap.parse_args()
    rates = []
    for r in range(a.runs):
        out = asyncio.run(one_run(a.venv, a.n, a.agents, a.post_delay_ms / 1e3, a.body))
        verbose = {k: v for k, v in out.items() if k in ("probe_posts", "ready_body")}
        if r == 0:
            print(json.dumps(verbose, indent=1))
        print(json.dumps({k: v for k, v in out.items() if k not in verbose}))
        rates.append(out["acks_per_s"])
    print(f"acks/s over {a.runs} runs: min {min(rates):.1f} median {statistics.median(rates):.1f}")


if __name__ == "__main__":
    sys.exit(main())
