"""Nothing that waits holds up a server: what is local is answered while what waits
(other servers, the database's write lock) still waits.

These are not timings. Each test puts a server in a state where something it was
asked waits for a long time (a server that never answers, a write lock held by
another connection), then checks that other requests are answered *while that one is
still unanswered*. A server that waited on its event loop would answer nothing in
the meantime, and the test would fail with a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import httpx
import pytest

import idnode.node
from idnode.client import HandleClient, ServerUnreachable, anonymous_request
from idnode.config import Config
from idnode.demo import demo_records
from idnode.handle.codec import MessageFramer, decode_message, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import Message, ResolutionRequest, ResolutionResponse
from idnode.handle.values import ValueReference
from idnode.node import init_node, open_node
from idnode.resolver import Resolver
from idnode.sites import site_of
from tests.conftest import RunningNode, add_secret_admin, make_node, running

# How long the recursive node's resolver waits for a server: long enough that the
# questions to the silent server are still open when the test has checked the rest.
UPSTREAM_TIMEOUT = 6.0


class SilentServer:
    """A Handle server's address that reads every UDP request and never answers (and
    refuses TCP, so that a question to it waits exactly the resolver's UDP timeout)."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.datagrams = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read_udp, daemon=True)
        self._thread.start()

    def _read_udp(self) -> None:
        self.udp.settimeout(0.1)
        while not self._closing.is_set():
            try:
                self.udp.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1

    def close(self) -> None:
        self._closing.set()
        self._thread.join(2)
        self.udp.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def _init(tmp: Path, name: str, role: str, prefix: str | None, **settings: object) -> Config:
    config = Config(data_dir=tmp / name, handle_port=0, http_port=0, role=role).replace(**settings)
    init_node(config, prefix, {"handle_port": 0, "http_port": 0, "role": role} | settings).close()
    return config


def _load(config: Config, prefix: str) -> None:
    """Home ``prefix`` and put demo records under it."""
    opened = open_node(config)
    try:
        opened.service.prefixes.home_prefix(prefix)
        opened.service.bulk.register_many(demo_records(20, prefix), replace=True)
    finally:
        opened.close()


def _delegate(config: Config, prefix: str, port: int) -> None:
    opened = open_node(config)
    try:
        opened.service.prefixes.delegate_prefix(prefix, [site_of([("127.0.0.1", port)])], 600)
    finally:
        opened.close()


def _udp_resolutions(port: int, handles: list[str]) -> tuple[socket.socket, list[int]]:
    """Send a resolution per handle from one socket; its request ids, to read later."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    ids = []
    for handle in handles:
        request = anonymous_request(OpCode.RESOLUTION, ResolutionRequest(handle, (), ()))
        sock.send(encode_message(request))
        ids.append(request.request_id)
    return sock, ids


def _nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(65535)
    except BlockingIOError:
        return True
    return False


def test_a_recursive_node_answers_local_and_cached_handles_while_upstream_is_silent(
    tmp_path: Path, silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """root delegates 88.300 to a working enterprise node and 88.200 to a server that
    never answers; the recursive node also homes 88.100.1 itself."""

    def patient_resolver(config: Config) -> Resolver | None:
        if not config.root_servers:
            return None
        return Resolver.from_endpoints(config.root_endpoints, timeout=UPSTREAM_TIMEOUT)

    monkeypatch.setattr(idnode.node, "build_resolver", patient_resolver)
    nodes: list[RunningNode] = []
    try:
        config = _init(tmp_path, "ent", "enterprise", "88.300")
        _load(config, "88.300")
        nodes.append(enterprise := RunningNode(config))
        config = _init(tmp_path, "root", "root", None)
        _delegate(config, "88.300", enterprise.ports.handle)
        _delegate(config, "88.200", silent.port)
        nodes.append(root := RunningNode(config))
        roots = f"127.0.0.1:{root.ports.handle}"
        config = _init(tmp_path, "rec", "recursive", None, root_servers=roots)
        _load(config, "88.100.1")
        nodes.append(recursive := RunningNode(config))
        here = HandleClient("127.0.0.1", recursive.ports.handle, timeout=5)
        # Learnt once through root and enterprise, then the enterprise goes away: from
        # now on that handle can only come from the recursive node's cache.
        assert here.resolve("88.300/PUMP-0001").response_code == ResponseCode.SUCCESS
        enterprise.stop()

        # Questions that wait on the silent server: over UDP, TCP and HTTP.
        waiting_udp, _ = _udp_resolutions(recursive.ports.handle, ["88.200/A", "88.200/B"])
        waiting_tcp = socket.create_connection(("127.0.0.1", recursive.ports.handle))
        first = anonymous_request(OpCode.RESOLUTION, ResolutionRequest("88.200/C", (), ()))
        second = anonymous_request(
            OpCode.RESOLUTION, ResolutionRequest("88.100.1/PUMP-0002", (), ())
        )
        # Two requests on one connection: the second (local) must wait for the first.
        waiting_tcp.sendall(encode_message(first) + encode_message(second))
        pool = ThreadPoolExecutor(1)
        waiting_http: Future[httpx.Response] = pool.submit(
            httpx.get, f"{recursive.http}/88.200/D?noredirect", timeout=30
        )
        try:
            _wait_until(lambda: silent.datagrams >= 4)  # every one of them is being asked

            # Meanwhile: local and cached handles, over UDP, TCP and HTTP.
            for transport in ("udp", "tcp"):
                local = here.resolve("88.100.1/PUMP-0001", transport=transport)
                assert isinstance(local.body, ResolutionResponse), transport
                cached = here.resolve("88.300/PUMP-0001", transport=transport)
                assert isinstance(cached.body, ResolutionResponse), transport
            api = httpx.get(f"{recursive.http}/api/handles/88.100.1/PUMP-0003", timeout=5)
            assert api.status_code == 200
            page = httpx.get(f"{recursive.http}/88.300/PUMP-0001?noredirect", timeout=5)
            assert page.status_code == 200

            # ... all answered while every question to the silent server still waits.
            assert _nothing_waiting(waiting_udp)
            assert _nothing_waiting(waiting_tcp)
            assert not waiting_http.done()
        finally:
            waiting_udp.close()
            page_answer = waiting_http.result(30)
            pool.shutdown()
        # The waiting ones end as "no server answered", the TCP replies in order.
        assert page_answer.status_code >= 500
        replies = _read_replies(waiting_tcp, 2)
        assert [r.request_id for r in replies] == [first.request_id, second.request_id]
        assert replies[0].response_code == ResponseCode.ERROR
        assert isinstance(replies[1].body, ResolutionResponse)
    finally:
        for node in nodes:
            node.stop()


def _read_replies(sock: socket.socket, count: int) -> list[Message]:
    sock.setblocking(True)
    sock.settimeout(30)
    framer = MessageFramer()
    replies: list[Message] = []
    while len(replies) < count:
        framer.receive_data(sock.recv(65536))
        while (frame := framer.next_message()) is not None:
            replies.append(decode_message(frame))
    sock.close()
    return replies


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition was not met in time")
        time.sleep(0.02)


def test_reads_are_answered_while_a_write_waits_for_the_database_lock(tmp_path: Path) -> None:
    """Another connection holds SQLite's write lock, as a bulk load in another process
    does for each of its transactions: a write waits for it, reads go on."""
    node = make_node(tmp_path)
    node.service.bulk.register_many(demo_records(20), replace=True)
    add_secret_admin(node, ValueReference("88.100.1/OPS", 300), "s3cret")
    node.close()
    config = Config(data_dir=tmp_path, handle_port=0, http_port=0)
    basic = base64.b64encode(b"300%3A88.100.1%2FOPS:s3cret").decode()
    auth = {"Authorization": f"Basic {basic}"}
    with running(config) as server:
        lock = sqlite3.connect(tmp_path / "idnode.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the write lock, as a bulk load's transaction
        pool = ThreadPoolExecutor(1)
        try:
            body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/x"}]}
            write = pool.submit(
                httpx.put,
                f"{server.http}/api/handles/88.100.1/NEW-1",
                json=body,
                headers=auth,
                timeout=60,
            )
            _wait_until(lambda: _a_writer_waits_for_the_lock(tmp_path / "idnode.db"))
            # Reads over HTTP (anonymous, authenticated, search) and the protocol.
            assert httpx.get(f"{server.http}/api/handles/88.100.1/PUMP-0001").status_code == 200
            authed = httpx.get(
                f"{server.http}/api/handles/88.100.1/PUMP-0002", headers=auth, timeout=5
            )
            assert authed.status_code == 200
            found = httpx.get(f"{server.http}/api/search?q=pump", timeout=5).json()
            assert found["handles"]
            udp = HandleClient("127.0.0.1", server.ports.handle, timeout=5)
            assert udp.resolve("88.100.1/PUMP-0003").response_code == ResponseCode.SUCCESS
            assert not write.done()  # the write is still waiting for the lock
        finally:
            lock.execute("COMMIT")
            lock.close()
            answer = write.result(60)
            pool.shutdown()
        assert answer.status_code == 201
        # ... and the next read sees it.
        again = httpx.get(f"{server.http}/api/handles/88.100.1/NEW-1", timeout=5)
        assert again.json()["values"][0]["data"]["value"] == "https://example.com/x"


def _a_writer_waits_for_the_lock(database: Path) -> bool:
    """Whether a thread of this process (the server runs in one) is inside SQLite's
    BEGIN IMMEDIATE on ``database``, waiting for the lock."""
    for top in sys._current_frames().values():
        frame: FrameType | None = top
        while frame is not None:
            code = frame.f_code
            if code.co_name == "_transaction" and code.co_filename.endswith("sqlite.py"):
                path = getattr(frame.f_locals.get("self"), "path", None)
                if path is not None and os.path.samefile(path, database):
                    return True
            frame = frame.f_back
    return False


def test_both_drivers_of_the_resolver_walk_the_same_questions(tmp_path: Path) -> None:
    """The blocking and the asyncio driver run one state machine: the same answer,
    the same number of questions, the same failure for a server that is down."""
    nodes: list[RunningNode] = []
    try:
        config = _init(tmp_path, "ent", "enterprise", "88.100.1")
        _load(config, "88.100.1")
        nodes.append(enterprise := RunningNode(config))
        config = _init(tmp_path, "root", "root", None)
        _delegate(config, "88.100.1", enterprise.ports.handle)
        _delegate(config, "88.9", _closed_port())
        nodes.append(root := RunningNode(config))
        at_root = [("127.0.0.1", root.ports.handle)]
        blocking = Resolver.from_endpoints(at_root, timeout=1.0)
        on_loop = Resolver.from_endpoints(at_root, timeout=1.0)
        record = blocking.resolve("88.100.1/PUMP-0004")
        same = asyncio.run(on_loop.resolve_async("88.100.1/PUMP-0004"))
        assert same == record
        assert on_loop.queries == blocking.queries == 2
        with pytest.raises(ServerUnreachable) as sync_failure:
            blocking.resolve("88.9/X")
        with pytest.raises(ServerUnreachable) as async_failure:
            asyncio.run(on_loop.resolve_async("88.9/X"))
        assert "no server answered for 88.9/X" in sync_failure.value.message
        assert "no server answered for 88.9/X" in async_failure.value.message
    finally:
        for node in nodes:
            node.stop()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
