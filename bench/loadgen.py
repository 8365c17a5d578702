"""Load generator processes for bench/resolve.py: Handle over UDP and TCP, and HTTP.

Each client process drives one socket (UDP, TCP) or a few keep-alive connections
(HTTP) and reports completions and latencies. Requests are encoded once up front and
only their request ids are patched, so the generator spends its CPU on I/O, not on
building messages: on a 2-core machine it competes with the server for the same cores.

Two modes: ``closed`` keeps a fixed number of requests in flight (peak throughput);
``open`` sends at a fixed rate and measures latency from each request's scheduled send
time, so a stalled server shows up in the latency instead of hiding it.

Generators work on a clock tick (``Job.tick``, 0.5 ms): send what is due, sleep to
the next tick, then read every reply that has arrived. They do not sleep on their
sockets, because on loopback a reply sent to a process waiting on its socket makes
the server's ``sendto`` wake that process, a cross-CPU interrupt that costs a virtual
machine several microseconds per reply and that a reply leaving through a network
card does not cost. A request may go out up to a tick after its scheduled time, and
that delay is counted in its latency; its reply is timed by when the kernel received
it (``SO_TIMESTAMPNS``, on Linux), not by when the generator got round to reading it.

Several sockets per generator (UDP source ports, TCP connections), as many clients
would have: ``SO_REUSEPORT`` spreads them over the server's workers by a hash of the
source address and port, and with only a few of them one worker may get most of the
load while the other idles.
"""

from __future__ import annotations

import collections
import random
import selectors
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass, field

from bench.dataset import handle_for
from idnode.handle.codec import encode_message
from idnode.handle.codes import OpCode, OpFlag
from idnode.handle.messages import Message, ResolutionRequest

_RID = struct.Struct(">I")
# Linux's SO_TIMESTAMPNS (Python 3.11 does not name it): every read then says when the
# kernel received the data, as a struct timespec.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
_UDP_SOCKETS = 64
_TCP_CONNECTIONS = 16


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
    tick: float = 0.0005  # seconds between rounds of sending and reading
    #: Distinct requests each generator cycles through: the default keeps a server's
    #: answer cache warm within seconds; one larger than the run's requests keeps it
    #: cold (most identifiers asked once or twice).
    pool: int = 4096


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
        for _ in range(job.pool)
    ]


def _http_requests(job: Job) -> list[bytes]:
    rng = random.Random(job.seed)
    return [
        (
            f"GET /api/handles/{handle_for(rng.randrange(job.handle_count))} HTTP/1.1\r\n"
            f"Host: {job.host}\r\n\r\n"
        ).encode()
        for _ in range(job.pool)
    ]


def _stamp_arrivals(sock: socket.socket) -> None:
    if sys.platform == "linux":
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)


def _clock_offset() -> float:
    """What to subtract from a kernel timestamp (CLOCK_REALTIME) for perf_counter's clock."""
    return time.time() - time.perf_counter()


def _receive(sock: socket.socket, size: int, read_at: float, offset: float) -> tuple[bytes, float]:
    """What is waiting on ``sock``, and when it arrived on perf_counter's clock (for a
    stream read, when its last part did); ``read_at`` if the kernel does not say."""
    data, ancillary, _, _ = sock.recvmsg(size, _ANCILLARY)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            return data, seconds + nanoseconds / 1e9 - offset
    return data, read_at


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
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(_UDP_SOCKETS)]
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.connect((job.host, job.port))
        sock.setblocking(False)
        _stamp_arrivals(sock)
        sel.register(sock, selectors.EVENT_READ, sock)
    start = time.perf_counter()
    deadline = start + job.duration
    schedule = _Schedule(job, start)
    rid = 0
    swept = start
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        while len(sent_at) < job.window and (at := schedule.due(now)) is not None:
            rid += 1
            msg = pool[rid % len(pool)]
            _RID.pack_into(msg, 8, rid)
            socks[rid % _UDP_SOCKETS].send(msg)
            sent_at[rid] = at
        time.sleep(job.tick)
        read_at, offset = time.perf_counter(), _clock_offset()
        for key, _ in sel.select(0):
            sock = key.data
            while True:
                try:
                    data, arrived = _receive(sock, 4096, read_at, offset)
                except BlockingIOError:
                    break
                at = sent_at.pop(_RID.unpack_from(data, 8)[0], None)
                if at is None:
                    continue
                result.completed += 1
                result.latencies.append(arrived - at)
                if _RID.unpack_from(data, 24)[0] != 1:
                    result.errors += 1
        if read_at - swept > 0.5:
            # A datagram (request or reply) may be dropped: what has waited a second
            # is counted lost and frees its place in the window.
            swept = read_at
            stale = [k for k, t in sent_at.items() if t < read_at - 1.0]
            for k in stale:
                del sent_at[k]
            result.lost += len(stale)
    result.elapsed = time.perf_counter() - start
    sel.close()
    for sock in socks:
        sock.close()
    return result


class _Stream:
    """One TCP connection of a generator and the reply bytes read from it so far."""

    def __init__(self, job: Job) -> None:
        self.sock = socket.create_connection((job.host, job.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        _stamp_arrivals(self.sock)
        self.buf = bytearray()


def _count_replies(
    buf: bytearray, sent_at: dict[int, float], result: Result, arrived: float
) -> None:
    """Count the whole replies at the front of ``buf`` and remove them."""
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
        result.latencies.append(arrived - at)
        if code != 1:
            result.errors += 1


def _run_tcp(job: Job) -> Result:
    pool = _handle_requests(job)
    result = Result()
    sent_at: dict[int, float] = {}
    streams = [_Stream(job) for _ in range(_TCP_CONNECTIONS)]
    sel = selectors.DefaultSelector()
    for stream in streams:
        sel.register(stream.sock, selectors.EVENT_READ, stream)
    start = time.perf_counter()
    deadline = start + job.duration
    schedule = _Schedule(job, start)
    rid = 0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        out: list[list[bytes]] = [[] for _ in streams]
        while len(sent_at) < job.window and (at := schedule.due(now)) is not None:
            rid += 1
            msg = pool[rid % len(pool)]
            _RID.pack_into(msg, 8, rid)
            out[rid % _TCP_CONNECTIONS].append(bytes(msg))
            sent_at[rid] = at
        for stream, parts in zip(streams, out, strict=True):
            if parts:
                # Requests are small and the server reads them as they come: the
                # socket buffer takes a window's worth without blocking.
                stream.sock.sendall(b"".join(parts))
        time.sleep(job.tick)
        read_at, offset = time.perf_counter(), _clock_offset()
        for key, _ in sel.select(0):
            stream = key.data
            try:
                chunk, arrived = _receive(stream.sock, 1 << 20, read_at, offset)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError("the server closed a benchmark connection")
            stream.buf += chunk
            _count_replies(stream.buf, sent_at, result, arrived)
    result.elapsed = time.perf_counter() - start
    sel.close()
    for stream in streams:
        stream.sock.close()
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
    _stamp_arrivals(sock)
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
            conn.sock.send(pool[n % len(pool)])
            conn.sent_at = at
        time.sleep(job.tick)
        read_at, offset = time.perf_counter(), _clock_offset()
        for key, _ in sel.select(0):
            conn = key.data
            try:
                chunk, arrived = _receive(conn.sock, 65536, read_at, offset)
            except BlockingIOError:
                continue
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
            result.latencies.append(arrived - conn.sent_at)
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
