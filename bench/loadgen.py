"""Load generator processes for bench/resolve.py: Handle over UDP and TCP, and HTTP.

Each client process drives one socket (UDP, TCP) or a few keep-alive connections
(HTTP) and reports completions and latencies. Requests are encoded once up front and
only their request ids are patched, so the generator spends its CPU on I/O, not on
building messages: on a 2-core machine it competes with the server for the same cores.

Two modes: ``closed`` keeps a fixed number of requests in flight (peak throughput);
``open`` sends at a fixed rate and measures latency from each request's scheduled send
time, so a stalled server shows up in the latency instead of hiding it.
"""

from __future__ import annotations

import collections
import random
import selectors
import socket
import struct
import time
from array import array
from dataclasses import dataclass, field

from bench.dataset import handle_for
from idnode.handle.codec import encode_message
from idnode.handle.codes import OpCode, OpFlag
from idnode.handle.messages import Message, ResolutionRequest

_RID = struct.Struct(">I")
_POOL = 4096
_UDP_SOCKETS = 8


@dataclass
class Job:
    transport: str  # "udp", "tcp" or "http"
    host: str
    port: int
    handle_count: int  # identifiers to pick from: bench.dataset.handle_for(0 .. count-1)
    duration: float
    mode: str = "closed"  # or "open"
    window: int = 32  # requests in flight (closed mode), connections for HTTP
    rate: float = 0.0  # requests per second (open mode)
    seed: int = 0


@dataclass
class Result:
    completed: int = 0
    errors: int = 0
    lost: int = 0
    elapsed: float = 0.0
    latencies: array[float] = field(default_factory=lambda: array("d"))


def _handle_requests(job: Job) -> list[bytearray]:
    rng = random.Random(job.seed)
    return [
        bytearray(
            encode_message(
                Message(
                    OpCode.RESOLUTION,
                    ResolutionRequest(handle_for(rng.randrange(job.handle_count))),
                    # As Handle.Net clients send it: an anonymous read wants the public
                    # values, not a challenge for the others.
                    op_flags=OpFlag.PUBLIC_ONLY,
                )
            )
        )
        for _ in range(_POOL)
    ]


def _http_requests(job: Job) -> list[bytes]:
    rng = random.Random(job.seed)
    return [
        (
            f"GET /api/handles/{handle_for(rng.randrange(job.handle_count))} HTTP/1.1\r\n"
            f"Host: {job.host}\r\n\r\n"
        ).encode()
        for _ in range(_POOL)
    ]


def run(job: Job) -> Result:
    if job.transport == "udp":
        return _run_udp(job)
    if job.transport == "tcp":
        return _run_tcp(job)
    return _run_http(job)


class _Schedule:
    """When the next request is due: as soon as possible (closed) or on a clock (open)."""

    def __init__(self, job: Job, start: float) -> None:
        self.open = job.mode == "open"
        self.interval = 1.0 / job.rate if self.open else 0.0
        self.next = start

    def due(self, now: float) -> float | None:
        """The scheduled time of a request that may go now, else None."""
        if not self.open:
            return now
        if self.next <= now:
            at = self.next
            self.next += self.interval
            return at
        return None


def _run_udp(job: Job) -> Result:
    pool = _handle_requests(job)
    result = Result()
    sent_at: dict[int, float] = {}
    # Several source ports, as many real clients would have: SO_REUSEPORT spreads
    # datagrams over the server's workers by a hash of the source address and port.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(_UDP_SOCKETS)]
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.connect((job.host, job.port))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    start = time.perf_counter()
    deadline = start + job.duration
    schedule = _Schedule(job, start)
    rid = 0
    quiet_since = start
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        while len(sent_at) < job.window and (at := schedule.due(now)) is not None:
            rid += 1
            msg = pool[rid % _POOL]
            _RID.pack_into(msg, 8, rid)
            socks[rid % _UDP_SOCKETS].send(msg)
            sent_at[rid] = at
        full = len(sent_at) >= job.window
        wait = 0.2 if not schedule.open or full else max(0.0, min(0.2, schedule.next - now))
        ready = sel.select(wait)
        if not ready:
            if time.perf_counter() - quiet_since > 0.5:
                # Nothing came back for a while: what is outstanding was lost.
                cutoff = time.perf_counter() - 0.5
                stale = [k for k, t in sent_at.items() if t < cutoff]
                for k in stale:
                    del sent_at[k]
                result.lost += len(stale)
            continue
        quiet_since = time.perf_counter()
        for key, _ in ready:
            try:
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            at = sent_at.pop(_RID.unpack_from(data, 8)[0], None)
            if at is None:
                continue
            result.completed += 1
            result.latencies.append(quiet_since - at)
            if _RID.unpack_from(data, 24)[0] != 1:
                result.errors += 1
    result.elapsed = time.perf_counter() - start
    sel.close()
    for sock in socks:
        sock.close()
    return result


def _run_tcp(job: Job) -> Result:
    pool = _handle_requests(job)
    result = Result()
    sent_at: dict[int, float] = {}
    buf = bytearray()
    with socket.create_connection((job.host, job.port)) as sock:
        start = time.perf_counter()
        deadline = start + job.duration
        schedule = _Schedule(job, start)
        rid = 0
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            out = []
            while len(sent_at) < job.window and (at := schedule.due(now)) is not None:
                rid += 1
                msg = pool[rid % _POOL]
                _RID.pack_into(msg, 8, rid)
                out.append(bytes(msg))
                sent_at[rid] = at
            if out:
                sock.sendall(b"".join(out))
            full = len(sent_at) >= job.window
            wait = 1.0 if not schedule.open or full else max(0.0001, schedule.next - now)
            if not sent_at:
                time.sleep(wait)
                continue
            sock.settimeout(wait)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            buf += chunk
            done = time.perf_counter()
            while len(buf) >= 20:
                size = 20 + _RID.unpack_from(buf, 16)[0]
                if len(buf) < size:
                    break
                got = _RID.unpack_from(buf, 8)[0]
                code = _RID.unpack_from(buf, 24)[0]
                del buf[:size]
                at = sent_at.pop(got, None)
                if at is None:
                    continue
                result.completed += 1
                result.latencies.append(done - at)
                if code != 1:
                    result.errors += 1
        result.elapsed = time.perf_counter() - start
    return result


class _HTTPConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.sent_at: float | None = None


def _take_response(conn: _HTTPConn) -> int | None:
    """The status of one whole response at the front of the buffer, removed; else None."""
    end = conn.buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(conn.buf[:end]).lower()
    at = head.find(b"content-length:")
    length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
    total = end + 4 + length
    if len(conn.buf) < total:
        return None
    status = int(head[9:12])
    del conn.buf[:total]
    return status


def _connect(job: Job, sel: selectors.BaseSelector) -> _HTTPConn:
    sock = socket.create_connection((job.host, job.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    conn = _HTTPConn(sock)
    sel.register(sock, selectors.EVENT_READ, conn)
    return conn


def _run_http(job: Job) -> Result:
    pool = _http_requests(job)
    result = Result()
    sel = selectors.DefaultSelector()
    conns = [_connect(job, sel) for _ in range(job.window)]
    # Used in turn (FIFO), so that no connection idles into the server's keep-alive timeout.
    idle = collections.deque(conns)
    start = time.perf_counter()
    deadline = start + job.duration
    schedule = _Schedule(job, start)
    n = 0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        while idle and (at := schedule.due(now)) is not None:
            conn = idle.popleft()
            n += 1
            conn.sock.send(pool[n % _POOL])
            conn.sent_at = at
        # With every connection busy nothing can be sent: block until a reply comes
        # rather than spin, which would take the CPU the server needs.
        timeout = 0.5 if not schedule.open or not idle else max(0.0, schedule.next - now)
        for key, _ in sel.select(timeout):
            conn = key.data
            chunk = conn.sock.recv(65536)
            if not chunk:  # the server closed it (keep-alive timeout): reconnect
                sel.unregister(conn.sock)
                conn.sock.close()
                if conn.sent_at is not None:
                    result.lost += 1
                else:
                    idle.remove(conn)
                conns.remove(conn)
                fresh = _connect(job, sel)
                conns.append(fresh)
                idle.append(fresh)
                continue
            conn.buf += chunk
            status = _take_response(conn)
            if status is None or conn.sent_at is None:
                continue
            result.completed += 1
            result.latencies.append(time.perf_counter() - conn.sent_at)
            if status != 200:
                result.errors += 1
            conn.sent_at = None
            idle.append(conn)
    result.elapsed = time.perf_counter() - start
    for conn in conns:
        sel.unregister(conn.sock)
        conn.sock.close()
    sel.close()
    return result
