"""TCP connection limits on a served node (issue 20 item 4): per address, a deadline
for a whole request, and eviction that keeps one client from locking out the rest.
Real sockets; other clients are other loopback addresses (127.0.0.2, ...)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.config import Config
from idnode.handle.codec import MessageFramer, decode_message, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import Message, PasswordLoginRequest, ResolutionRequest
from idnode.handle.values import ValueReference
from tests.conftest import RunningNode, make_node, running


@pytest.fixture(scope="module")
def server(demo_dir: Path) -> Iterator[RunningNode]:
    config = Config(
        data_dir=demo_dir,
        handle_port=0,
        http_port=0,
        tcp_max_connections=8,
        tcp_max_per_address=6,
        tcp_request_timeout=0.5,
        tcp_idle_timeout=30.0,
    )
    with running(config) as node:
        yield node


def connect(server: RunningNode, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.ports.handle))
    sock.settimeout(3)
    return sock


def resolves(sock: socket.socket) -> bool:
    """Whether a resolution over ``sock`` is answered (False: the server closed it)."""
    request = Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/PUMP-0001"), request_id=7)
    try:
        sock.sendall(encode_message(request))
        framer = MessageFramer()
        while (frame := framer.next_message()) is None:
            data = sock.recv(65536)
            if not data:
                return False
            framer.receive_data(data)
    except (ConnectionResetError, BrokenPipeError, TimeoutError):
        return False
    return decode_message(frame).response_code == ResponseCode.SUCCESS


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_one_address_holds_at_most_its_share(server: RunningNode) -> None:
    mine = [connect(server, "127.0.0.2") for _ in range(6)]
    try:
        extra = connect(server, "127.0.0.2")
        assert closed_by_server(extra, 2)
        extra.close()
        assert all(resolves(s) for s in mine)
        other = connect(server, "127.0.0.3")
        assert resolves(other)
        other.close()
    finally:
        for s in mine:
            s.close()


def test_a_request_must_arrive_whole_in_time(server: RunningNode) -> None:
    sock = connect(server, "127.0.0.4")
    try:
        whole = encode_message(
            Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/PUMP-0001"), request_id=1)
        )
        started = time.monotonic()
        # A byte every 0.2 s keeps the connection from being idle, not from being slow:
        # the server closes it once the request has taken over 0.5 s.
        closed = False
        for byte in whole[:20]:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
        assert closed or closed_by_server(sock, 2)
        assert time.monotonic() - started < 5  # well before the 30 s idle timeout
    finally:
        sock.close()
    # A client that sends its request at once is served on a connection kept open.
    quick = connect(server, "127.0.0.4")
    try:
        assert resolves(quick)
        time.sleep(1)  # longer than the request timeout, with no request begun
        assert resolves(quick)
    finally:
        quick.close()


def test_a_full_server_makes_room_from_the_busiest_address(server: RunningNode) -> None:
    hog = [connect(server, "127.0.0.5") for _ in range(6)]
    guests = [connect(server, "127.0.0.6") for _ in range(2)]
    try:
        assert all(resolves(s) for s in (*hog, *guests))  # 8: the server is full
        # The hog's first connection is its least recently active one.
        for s in hog[1:]:
            assert resolves(s)
        newcomer = connect(server, "127.0.0.6")
        assert resolves(newcomer)
        assert closed_by_server(hog[0], 2)
        assert all(resolves(s) for s in hog[1:])
        # The hog itself gets no room by eviction: at the cap, it is refused.
        more = connect(server, "127.0.0.5")
        assert closed_by_server(more, 2)
        more.close()
        newcomer.close()
    finally:
        for s in (*hog, *guests):
            s.close()


def test_requests_waiting_behind_a_slow_one_are_not_cut_off(tmp_path: Path) -> None:
    """The request deadline is for a client's bytes, not for our answers: requests
    sent together wait, whole, while the first ones are answered (password logins,
    a slow hash each), however long that takes."""
    node = make_node(tmp_path / "node")
    node.service.accounts.add("ops", ValueReference("0.NA/88.100.1", 300), "a long password")
    node.close()
    config = Config(data_dir=tmp_path / "node", handle_port=0, http_port=0, tcp_request_timeout=0.3)
    logins = 30  # about 25 ms of scrypt each: all of them well over 0.3 s
    with running(config) as node_server:
        sock = connect(node_server, "127.0.0.7")
        sock.settimeout(30)
        try:
            login = PasswordLoginRequest("ops", "a long password")
            sock.sendall(
                b"".join(
                    encode_message(Message(OpCode.LOGIN, login, request_id=n + 1))
                    for n in range(logins)
                )
            )
            framer, answers = MessageFramer(), list[ResponseCode]()
            while len(answers) < logins:
                data = sock.recv(65536)
                assert data, f"closed after {len(answers)} answers"
                framer.receive_data(data)
                while (frame := framer.next_message()) is not None:
                    answers.append(decode_message(frame).response_code)
            assert answers == [ResponseCode.SUCCESS] * logins
        finally:
            sock.close()
