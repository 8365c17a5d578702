"""The Handle protocol client on an event loop: the anonymous requests of
:mod:`idnode.client` (UDP first, TCP when the answer is truncated).

A server that asks other servers (a recursive node resolving, a node checking an
identity held elsewhere) uses this, so that while it waits for them it goes on
answering its own clients; no thread waits on a socket. What is sent and how a reply
is matched are :mod:`idnode.client`'s, so the two clients cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib

from idnode.client import (
    ServerTimedOut,
    ServerUnreachable,
    Transport,
    anonymous_request,
    matching,
)
from idnode.errors import RemoteProtocolError
from idnode.handle.codec import MAX_MESSAGE_LENGTH, MessageFramer, encode_message
from idnode.handle.codes import OpCode
from idnode.handle.messages import Body, Message

__all__ = ["request"]


async def request(
    host: str,
    port: int,
    opcode: OpCode,
    body: Body,
    transport: Transport = "auto",
    *,
    timeout: float = 3.0,
    udp_attempts: int = 3,
) -> Message:
    """The server's reply to an anonymous request, as :meth:`HandleClient.request`
    gives it: ServerUnreachable when it does not answer within ``timeout`` seconds
    (over UDP, ``udp_attempts`` sends share them), RemoteProtocolError for garbage."""
    message = anonymous_request(opcode, body)
    data = encode_message(message)
    if transport in ("auto", "udp"):
        try:
            reply = await _udp(host, port, data, message.request_id, timeout, udp_attempts)
        except ServerUnreachable:
            if transport == "udp":
                raise
        else:
            if not reply.truncated or transport == "udp":
                return reply
    return await _tcp(host, port, data, message.request_id, timeout)


class _Reply(asyncio.DatagramProtocol):
    """Waits for the datagram that answers ``request_id``; strays are ignored."""

    def __init__(self, request_id: int, where: str) -> None:
        self.request_id = request_id
        self.where = where
        self.answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        reply = matching(data, self.request_id)
        if reply is not None and not self.answer.done():
            self.answer.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: nobody listens there.
        if not self.answer.done():
            self.answer.set_exception(ServerUnreachable(f"{self.where}/udp: {exc}"))


async def _udp(
    host: str, port: int, data: bytes, request_id: int, timeout: float, attempts: int
) -> Message:
    loop = asyncio.get_running_loop()
    where = f"{host}:{port}"
    try:
        transport, waiter = await asyncio.wait_for(
            loop.create_datagram_endpoint(
                lambda: _Reply(request_id, where), remote_addr=(host, port)
            ),
            timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise ServerUnreachable(f"{where}/udp: {exc}") from exc
    try:
        for _ in range(attempts):
            transport.sendto(data)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(waiter.answer), timeout / attempts)
    finally:
        transport.close()
        if waiter.answer.done() and not waiter.answer.cancelled():
            waiter.answer.exception()  # retrieved, so asyncio does not log it as lost
    raise ServerTimedOut(f"no UDP answer from {where} in {timeout}s")


async def _tcp(host: str, port: int, data: bytes, request_id: int, timeout: float) -> Message:
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(data)
                framer = MessageFramer()
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise RemoteProtocolError(
                            f"{where} closed the connection without answering"
                        )
                    framer.receive_data(chunk)
                    if framer.buffered > MAX_MESSAGE_LENGTH + 20:
                        raise RemoteProtocolError(f"{where} sent an oversized answer")
                    while (frame := framer.next_message()) is not None:
                        reply = matching(frame, request_id)
                        if reply is not None:
                            return reply
            finally:
                writer.close()
    except TimeoutError as exc:
        raise ServerTimedOut(f"no TCP answer from {where} in {timeout}s") from exc
    except OSError as exc:
        raise ServerUnreachable(f"{where}/tcp: {exc.strerror or exc}") from exc
