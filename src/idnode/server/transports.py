"""asyncio adapters that move Handle protocol bytes between sockets and the Dispatcher.

They hold no protocol logic: UDP hands each datagram over and sends back the reply;
TCP frames the stream with :class:`~idnode.handle.codec.MessageFramer`. A request the
dispatcher answers at once (a local resolution) is answered in the callback, so an
overloaded server lets the kernel drop datagrams instead of queueing them in memory
without bound. One that must wait (a write, a question to another server) becomes a
task; UDP keeps at most ``MAX_PENDING`` of them and drops datagrams beyond, and a TCP
connection reads no further request until its pending one is answered, so replies
keep the order of the requests and nothing piles up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, Protocol, cast

from idnode.errors import MessageTooLarge, ProtocolError
from idnode.handle.codec import MessageFramer, PacketAssembler
from idnode.metrics import record_dropped
from idnode.server.connection import Connection
from idnode.server.dispatch import Dispatcher
from idnode.server.measure import handle_answered
from idnode.server.ratelimit import Decision, RateLimiter

__all__ = ["HandleTCPProtocol", "HandleUDPProtocol"]

log = logging.getLogger("idnode.server")

#: Bytes of UDP replies allowed to wait for the kernel before requests are dropped.
UDP_SEND_BACKLOG = 1 << 20
#: UDP requests of one worker waiting on a write or another server at once.
MAX_PENDING = 1024


class _DatagramTransport(Protocol):
    """What the UDP server uses of its transport (asyncio's and uvloop's both have it;
    typeshed's DatagramTransport lacks the buffer size)."""

    def sendto(self, data: bytes, addr: tuple[str | Any, int]) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class HandleUDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, dispatcher: Dispatcher, limiter: RateLimiter | None = None) -> None:
        self._dispatcher = dispatcher
        self._limiter = limiter
        self._transport: _DatagramTransport | None = None
        self._pending: set[asyncio.Task[bytes | None]] = set()
        #: Requests sent in several packets, until their last one comes.
        self._assembler = PacketAssembler()
        #: Where replies go once the transport is closed (see :meth:`stop_reading`).
        self._spare: socket.socket | None = None
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, hence cast, not isinstance.
        self._transport = cast(_DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        began = time.perf_counter()
        transport = self._transport
        if transport is None:
            return
        if transport.get_write_buffer_size() > UDP_SEND_BACKLOG:
            # Replies are queuing faster than the kernel takes them: drop this request
            # (its client will retry) rather than let the queue grow without bound.
            self._drop("overloaded")
            return
        try:
            whole = self._assembler.receive(data, addr, time.monotonic())
        except ProtocolError:
            whole = data  # not a packet of anything: the dispatcher says what is wrong
        if whole is None:
            return  # more packets of this message to come
        data = whole
        reply: bytes | Coroutine[Any, Any, bytes | None] | None
        decision = (
            Decision.ANSWER
            if self._limiter is None
            else self._limiter.check(str(addr[0]), time.monotonic())
        )
        if decision is Decision.ANSWER:
            reply = self._dispatcher.receive(data, udp=True, peer=addr)
        elif decision is Decision.TRUNCATE:
            reply = self._dispatcher.truncated(data)
        else:
            self._drop("rate_limited")
            return
        if isinstance(reply, bytes):
            transport.sendto(reply, addr)
            handle_answered("udp", data, reply, began, addr)
        elif reply is not None:
            self._later(reply, data, addr, began)

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        record_dropped(reason)

    def _later(
        self,
        reply: Coroutine[Any, Any, bytes | None],
        request: bytes,
        addr: tuple[str | Any, int],
        began: float,
    ) -> None:
        if len(self._pending) >= MAX_PENDING:
            # As many requests wait as this worker allows: this one is dropped (its
            # client will retry), not queued without bound.
            reply.close()
            self._drop("overloaded")
            return
        task = asyncio.ensure_future(reply)
        self._pending.add(task)

        def send(done: asyncio.Task[bytes | None]) -> None:
            self._pending.discard(done)
            if done.cancelled() or self._transport is None:
                return
            data = done.result()
            if data is None:
                return
            if self._spare is None:
                self._transport.sendto(data, addr)
            else:
                try:
                    self._spare.sendto(data, addr)
                except OSError as exc:  # the kernel's buffer is full: as a lost datagram
                    self._drop("overloaded")
                    log.debug("UDP reply not sent while draining: %s", exc)
                    return
            handle_answered("udp", request, data, began, addr)

        task.add_done_callback(send)

    @property
    def pending(self) -> int:
        """Requests read and waiting on a write or another server."""
        return len(self._pending)

    def stop_reading(self, spare: socket.socket) -> None:
        """Read no more datagrams; the answers still pending go out through ``spare``,
        a duplicate of the transport's socket (neither asyncio's nor uvloop's UDP
        transports can pause reading, and a closed one sends nothing)."""
        self._spare = spare
        transport = self._transport
        if transport is not None:
            cast(asyncio.BaseTransport, transport).close()

    async def drained(self) -> None:
        """Return once every datagram read has been answered."""
        while self._pending:
            await asyncio.wait(set(self._pending))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away; nothing to do.
        log.debug("UDP error: %s", exc)


class HandleTCPProtocol(asyncio.Protocol):
    """One client connection; several requests may follow each other on it."""

    def __init__(self, dispatcher: Dispatcher, limits: TCPLimits) -> None:
        self._dispatcher = dispatcher
        self._limits = limits
        self._framer = MessageFramer()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        #: Closes the connection if the message begun is not complete by then.
        self._deadline: asyncio.TimerHandle | None = None
        self._address = ""
        self._counted = False
        self._writing_paused = False
        self._waiting: asyncio.Task[bytes | None] | None = None
        self._peer: Any = None
        #: What this connection remembers between requests (IDIS logins).
        self._connection = Connection()
        self._answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._peer = transport.get_extra_info("peername")
        self._address = str(self._peer[0]) if isinstance(self._peer, tuple) else ""
        refusal = self._limits.admit(self)
        if refusal:
            log.warning("refusing TCP connection from %s: %s", self._address, refusal)
            transport.abort()
            return
        self._counted = True
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
        for timer in (self._idle, self._deadline):
            if timer is not None:
                timer.cancel()
        self._idle = self._deadline = None
        if self._counted:
            self._limits.release(self)
            self._counted = False

    @property
    def address(self) -> str:
        return self._address

    @property
    def waiting(self) -> bool:
        """Whether an answer to a request of this connection is being made."""
        return self._waiting is not None

    @property
    def answered(self) -> bool:
        """Whether a request of this connection was answered (or is being)."""
        return self._answered

    def close_if_idle(self) -> None:
        if not self.waiting:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._arm_idle_timer()
        self._limits.active(self)
        self._framer.receive_data(data)
        self._answer_buffered(transport)

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests until it
        # does, so neither the requests nor the answers pile up in memory.
        self._writing_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        transport = self._transport
        if transport is not None and not transport.is_closing() and self._waiting is None:
            transport.resume_reading()
            self._answer_buffered(transport)

    @property
    def reading(self) -> bool:
        return self._transport is not None and self._transport.is_reading()

    def _answer_buffered(self, transport: asyncio.Transport) -> None:
        try:
            self._serve_buffered(transport)
        finally:
            self._watch_partial(transport)

    def _serve_buffered(self, transport: asyncio.Transport) -> None:
        try:
            while not self._writing_paused and self._waiting is None and not transport.is_closing():
                frame = self._framer.next_message()
                if frame is None:
                    break
                self._answered = True
                began = time.perf_counter()
                reply = self._dispatcher.receive(
                    frame, udp=False, peer=self._peer, connection=self._connection
                )
                if isinstance(reply, bytes):
                    transport.write(reply)
                    handle_answered("tcp", frame, reply, began, self._peer)
                    if self._limits.draining:
                        transport.close()  # after what is written: the answer goes out
                elif reply is not None:
                    self._wait_for(reply, transport, frame, began)
        except MessageTooLarge as exc:
            # Answer from the envelope and header alone, then stop reading this stream:
            # its framing can no longer be trusted.
            began = time.perf_counter()
            head = self._framer.head()
            reply = self._dispatcher.handle(head, udp=False)
            if reply is not None:
                transport.write(reply)
                handle_answered("tcp", head, reply, began, self._peer)
            log.info("closing TCP connection: %s", exc.message)
            transport.close()

    def _wait_for(
        self,
        reply: Coroutine[Any, Any, bytes | None],
        transport: asyncio.Transport,
        request: bytes,
        began: float,
    ) -> None:
        """Read nothing more until ``reply`` is ready, then write it and go on."""
        transport.pause_reading()
        self._waiting = task = asyncio.ensure_future(reply)

        def done(task: asyncio.Task[bytes | None]) -> None:
            self._waiting = None
            if task.cancelled() or transport.is_closing():
                return
            data = task.result()
            if data is not None:
                transport.write(data)
                handle_answered("tcp", request, data, began, self._peer)
            if self._limits.draining:
                transport.close()  # after what is written: the answer goes out
            elif not self._writing_paused:
                transport.resume_reading()
                self._answer_buffered(transport)

        task.add_done_callback(done)

    def _watch_partial(self, transport: asyncio.Transport) -> None:
        """A message begun must arrive whole within ``request_timeout``: a byte now
        and then keeps a connection from being idle, not from being done with. Only
        while this side reads: bytes held back while an answer is awaited (or the
        client does not read its answers) are requests sent in time."""
        reading = self._waiting is None and not self._writing_paused
        if not self._framer.buffered or not reading:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
        elif self._deadline is None and not transport.is_closing():
            self._deadline = asyncio.get_running_loop().call_later(
                self._limits.request_timeout, self._too_slow
            )

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None and self._framer.buffered:
            log.info("closing TCP connection from %s: request not complete", self._address)
            self._transport.close()

    def _arm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        transport = self._transport
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._limits.idle_timeout, transport.close)


class TCPLimits:
    """Shared by all connections of one server: the connection caps, the timeouts, and
    the open connections, so that shutting down can close them.

    One address may hold at most ``max_per_address`` connections. When the server is
    full, a newcomer takes the place of the least recently active connection of the
    address holding the most, if that is not its own: one client filling the server
    locks out nobody but itself.
    """

    #: How long a stopping server waits for the first request of a connection it
    #: accepted just before it stopped.
    FIRST_REQUEST_GRACE = 1.0

    def __init__(
        self,
        max_connections: int,
        idle_timeout: float,
        *,
        max_per_address: int = 64,
        request_timeout: float = 10.0,
    ) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_per_address = max_per_address
        self.request_timeout = request_timeout
        # address -> its connections, least recently active first
        self._by_address: dict[str, OrderedDict[HandleTCPProtocol, None]] = {}
        self.open = 0
        #: Set when the server stops: connections end once their answer is out.
        self.draining = False

    @property
    def transports(self) -> list[HandleTCPProtocol]:
        return [c for group in self._by_address.values() for c in group]

    def admit(self, connection: HandleTCPProtocol) -> str:
        """Count ``connection`` in; or say why not ("" when admitted)."""
        address = connection.address
        mine = self._by_address.get(address)
        if mine is not None and len(mine) >= self.max_per_address:
            return f"{len(mine)} connections from this address already"
        if self.open >= self.max_connections:
            if not self._by_address:
                return f"{self.open} connections open"
            busiest = max(self._by_address, key=lambda a: len(self._by_address[a]))
            if busiest == address or len(self._by_address[busiest]) <= len(mine or ()) + 1:
                return f"{self.open} connections open"
            evicted = next(iter(self._by_address[busiest]))
            self.release(evicted)
            evicted.close()
            log.info("closed a TCP connection of %s to admit %s", busiest, address)
        self._by_address.setdefault(address, OrderedDict())[connection] = None
        self.open += 1
        return ""

    def release(self, connection: HandleTCPProtocol) -> None:
        group = self._by_address.get(connection.address)
        if group is None or connection not in group:
            return
        del group[connection]
        if not group:
            del self._by_address[connection.address]
        self.open -= 1

    def active(self, connection: HandleTCPProtocol) -> None:
        group = self._by_address.get(connection.address)
        if group is not None and connection in group:
            group.move_to_end(connection)

    def close_all(self) -> None:
        for connection in self.transports:
            connection.close()

    def drain(self) -> None:
        """End the connections not waiting for an answer now, the others once theirs
        is written (requests a client pipelined behind it go unanswered: a client
        retries them on a new connection, as after any close)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        for connection in self.transports:
            if connection.waiting:
                continue
            if connection.answered:
                connection.close()
            else:  # just accepted: its request is likely on the way
                loop.call_later(self.FIRST_REQUEST_GRACE, connection.close_if_idle)

    async def drained(self) -> None:
        while self.open:
            await asyncio.sleep(0.05)
