"""A TCP client that sends requests but does not read its answers cannot make the
server buffer without bound: the server stops reading until the client catches up."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from idnode.config import Config
from idnode.handle.codec import MessageFramer, encode_message
from idnode.handle.codes import OpCode
from idnode.handle.messages import Message, ResolutionRequest
from idnode.node import open_node
from idnode.server.dispatch import Dispatcher
from idnode.server.transports import HandleTCPProtocol, TCPLimits

REQUESTS = 200_000


def _flood(port: int, request: bytes) -> tuple[socket.socket, int]:
    """Send requests without reading for two seconds; return the socket and bytes sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    stream = request * REQUESTS
    sent = 0
    deadline = time.monotonic() + 2.0
    while sent < len(stream) and time.monotonic() < deadline:
        try:
            sent += sock.send(stream[sent : sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    return sock, sent


def _drain(sock: socket.socket, replies: int) -> int:
    sock.setblocking(True)
    sock.settimeout(10)
    framer = MessageFramer()
    got = 0
    while got < replies:
        chunk = sock.recv(65536)
        if not chunk:
            break
        framer.receive_data(chunk)
        while framer.next_message() is not None:
            got += 1
    return got


def test_unread_answers_pause_reading_then_all_are_delivered(demo_dir: Path) -> None:
    node = open_node(Config(data_dir=demo_dir))
    dispatcher = Dispatcher(node.service)
    request = encode_message(
        Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/PUMP-0001"), request_id=1)
    )
    protocols: list[HandleTCPProtocol] = []

    def factory() -> HandleTCPProtocol:
        protocols.append(HandleTCPProtocol(dispatcher, TCPLimits(8, 60.0)))
        return protocols[-1]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        # A small kernel send buffer on the server side (accepted sockets inherit the
        # listener's): otherwise, where the kernel lets it grow to megabytes, all the
        # answers fit there and the server never needs to stop reading.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        listener.bind(("127.0.0.1", 0))
        server = await loop.create_server(factory, sock=listener)
        port = server.sockets[0].getsockname()[1]
        sock, sent = await asyncio.to_thread(_flood, port, request)
        try:
            complete = sent // len(request)
            await asyncio.sleep(0.5)
            (protocol,) = protocols
            assert not protocol.reading
            # What waits in memory is bounded by the transport's high-water mark plus
            # the answers to one received chunk, not by what the client sent.
            assert protocol._transport is not None
            assert protocol._transport.get_write_buffer_size() < 1 << 20
            got = await asyncio.to_thread(_drain, sock, complete)
            assert got == complete  # once the client reads, every request is answered
        finally:
            sock.close()
            server.close()
            await server.wait_closed()

    try:
        asyncio.run(scenario())
    finally:
        node.close()
