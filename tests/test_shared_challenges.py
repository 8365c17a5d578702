"""Handle challenges kept in storage, so that any worker takes the answer (issue 20):
the store itself on a real database, and `idnode serve --workers 2` answered on new
connections."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.client import Credentials
from idnode.domain import HandleRecord
from idnode.errors import AuthenticationNeeded, AuthenticationTimeout
from idnode.handle.codec import MessageFramer, decode_message, digest_request, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import (
    PROTOCOL_VERSION,
    ChallengeResponse,
    CreateHandleRequest,
    DeleteHandleRequest,
    Message,
    ResolutionRequest,
)
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.node import Node
from idnode.server.dispatch import Dispatcher
from idnode.service.challenges import ID_PREFIX, HandleChallenges
from tests.conftest import add_secret_admin, free_port, make_node, serve_process, wait_healthy

OPS = ValueReference("88.100.1/OPS", 300)
SECRET = "shared-secret"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    yield made
    made.close()


def _request(n: int) -> tuple[Message, bytes]:
    message = Message(OpCode.DELETE_HANDLE, DeleteHandleRequest(f"88.100.1/X-{n}"), request_id=n)
    raw = encode_message(message)
    return decode_message(raw), raw


def _issue(store: HandleChallenges, n: int, **options: object) -> tuple[int, bytes]:
    request, raw = _request(n)
    challenge = store.issue(request, raw, digest_request(raw, PROTOCOL_VERSION), **options)  # type: ignore[arg-type]
    return challenge.session_id, challenge.nonce


def test_a_challenge_comes_back_whole_from_another_store_once(node: Node) -> None:
    """Two stores on one database are two workers."""
    here, there = HandleChallenges(node.service.core), HandleChallenges(node.service.core)
    number, nonce = _issue(here, 1, session_id=77, binds_session=True)
    request, raw = _request(1)
    taken = there.take(number)
    assert (taken.session_id, taken.nonce, taken.raw, taken.binds_session) == (
        77,
        nonce,
        raw,
        True,
    )
    assert taken.request == request
    assert taken.digest == digest_request(raw, PROTOCOL_VERSION)
    with pytest.raises(AuthenticationTimeout):
        here.take(number)


def test_an_expired_challenge_is_refused_and_purged(node: Node) -> None:
    store = HandleChallenges(node.service.core, lifetime=0.0)
    number, _ = _issue(store, 1)
    with pytest.raises(AuthenticationTimeout, match="expired"):
        store.take(number)
    gone, _ = _issue(store, 2)
    _issue(store, 3)  # finds its own expired one: every expired row is purged
    assert node.storage.get_session(f"{ID_PREFIX}{gone}") is None


def test_each_worker_keeps_at_most_its_capacity(node: Node) -> None:
    store = HandleChallenges(node.service.core, capacity=3)
    issued = [_issue(store, n)[0] for n in range(5)]
    kept = [n for n in issued if node.storage.get_session(f"{ID_PREFIX}{n}") is not None]
    assert kept == issued[2:]
    with pytest.raises(AuthenticationTimeout):
        store.take(issued[0])
    assert store.take(issued[4]).request == _request(4)[0]


def test_a_stored_challenge_is_no_http_session(node: Node) -> None:
    number, _ = _issue(node.service.challenges, 1)
    with pytest.raises(AuthenticationNeeded):
        node.service.sessions.session_caller(f"{ID_PREFIX}{number}", "http")


# -- `idnode serve --workers 2`: each answer on a new connection ------------------------


def _exchange(port: int, message: Message) -> Message:
    """``message`` on a new TCP connection (a new source port: SO_REUSEPORT may give it
    to either worker), and its reply."""
    framer = MessageFramer()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_message(message))
        while (frame := framer.next_message()) is None:
            data = sock.recv(65536)
            assert data, "the server closed the connection without a reply"
            framer.receive_data(data)
    return decode_message(frame)


def test_answers_on_new_connections_are_served_by_whichever_worker_takes_them(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path / "node")
    add_secret_admin(node, OPS, SECRET)
    node.close()
    handle, http = free_port(), free_port()
    options = ("--workers", "2", "--handle-port", str(handle), "--http-port", str(http))
    log = tmp_path / "serve.log"
    server = serve_process(tmp_path / "node", *options, log=log, new_session=True)
    try:
        wait_healthy(http, log)
        who = Credentials(OPS, secret=SECRET.encode())
        # Eight rounds: with challenges per worker, each would fail half the time.
        for n in range(8):
            value = HandleValue(1, "URL", b"https://example.com/")
            create = CreateHandleRequest(f"88.100.1/NEW-CONN-{n}", (value,))
            challenge = _exchange(handle, Message(OpCode.CREATE_HANDLE, create, request_id=n + 1))
            assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
            assert isinstance(challenge.body, ChallengeResponse)
            answer = Message(
                OpCode.CHALLENGE_RESPONSE,
                who.answer(challenge.body, challenge.version),
                request_id=100 + n,
                session_id=challenge.session_id,
            )
            done = _exchange(handle, answer)
            assert done.response_code == ResponseCode.SUCCESS, (n, done.body)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_challenge_issued_again_meanwhile_is_not_taken_in_its_place(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers read one challenge; the slower one's delete must not remove a new
    challenge issued under the same session id since, and must not serve the old one."""
    here, there = HandleChallenges(node.service.core), HandleChallenges(node.service.core)
    _issue(here, 1, session_id=77)
    storage = node.storage
    stale = storage.get_session(f"{ID_PREFIX}77")
    newer, _ = _issue(here, 2, session_id=77)
    fresh = storage.get_session(f"{ID_PREFIX}77")
    assert fresh is not None
    monkeypatch.setattr(storage, "get_session", lambda key: stale)
    with pytest.raises(AuthenticationTimeout):
        there.take(77)  # what it read is gone: nothing is served
    monkeypatch.undo()
    assert there.take(newer).nonce == fresh.nonce[:16]


def test_ending_an_http_session_cannot_end_a_challenge(node: Node) -> None:
    number, _ = _issue(node.service.challenges, 1)
    node.service.sessions.close_session(f"{ID_PREFIX}{number}")
    assert node.service.challenges.take(number).request == _request(1)[0]


def test_a_challenge_that_cannot_be_stored_is_answered_with_an_error(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write that keeps a challenge may fail: the client gets an ERROR reply, the
    server goes on (it used to escape the dispatcher and stall the connection)."""

    def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(node.service.challenges, "issue", broken)
    reads = Dispatcher(node.service, anonymous_reads="challenge")
    owner_only = HandleValue(2, "EMAIL", b"o@e.com", permissions=Permission.ADMIN_WRITE)
    node.service.prefixes.put_record(
        HandleRecord("88.100.1/SECRETIVE", (HandleValue(1, "URL", b"https://e/"), owner_only))
    )
    for request in (
        Message(OpCode.DELETE_HANDLE, DeleteHandleRequest("88.100.1/X"), request_id=1),
        Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/SECRETIVE"), request_id=2),
    ):
        reply = reads.handle(encode_message(request), udp=False, peer=("127.0.0.1", 1))
        assert reply is not None
        assert decode_message(reply).response_code == ResponseCode.ERROR


def test_challenges_per_address_are_limited(node: Node) -> None:
    """Each is a write anyone may cause: past the allowance, SERVER_TOO_BUSY."""
    worker = Dispatcher(node.service, challenges_per_minute=2)
    delete = encode_message(Message(OpCode.DELETE_HANDLE, DeleteHandleRequest("88.100.1/X")))
    codes = [
        decode_message(worker.handle(delete, udp=False, peer=("127.0.0.9", 5)) or b"").response_code
        for _ in range(3)
    ]
    assert codes == [ResponseCode.AUTHENTICATION_NEEDED] * 2 + [ResponseCode.SERVER_TOO_BUSY]
    other = worker.handle(delete, udp=False, peer=("127.0.0.10", 5)) or b""
    assert decode_message(other).response_code == ResponseCode.AUTHENTICATION_NEEDED
