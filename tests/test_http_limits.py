"""The HTTP server's deadline for a request's head (issue 20 item 7): slowloris
clients are closed, ordinary ones served. Real sockets on a served node."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.config import Config
from tests.conftest import RunningNode, running


@pytest.fixture(scope="module")
def server(demo_dir: Path) -> Iterator[RunningNode]:
    config = Config(data_dir=demo_dir, handle_port=0, http_port=0, http_header_timeout=1.0)
    with running(config) as node:
        yield node


def _connect(server: RunningNode) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.ports.http), timeout=5)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def _response(sock: socket.socket) -> bytes:
    """One whole response (its head, then Content-Length bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_head_dripping_in_is_cut_off(server: RunningNode) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for n in range(20):  # a header line every 0.2 s, never the blank line
                time.sleep(0.2)
                sock.sendall(b"X-Slow-%d: 1\r\n" % n)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _closed(sock)
        assert time.monotonic() - started < 3.5


def test_a_silent_connection_is_closed(server: RunningNode) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        assert _closed(sock)
        assert 0.8 < time.monotonic() - started < 3


def test_requests_sent_at_once_are_served_on_a_kept_connection(server: RunningNode) -> None:
    with _connect(server) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)  # idle between requests is the keep-alive's business
