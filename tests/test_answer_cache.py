"""The servers' answer cache (issue 19): answers sent again are byte for byte what
the ordinary way makes, and never older than it, after writes made through another
node (another process's connection) on SQLite and on PostgreSQL, after a delete and
after a prefix stops being homed; answers from it are counted in the statistics.

Every reply of the caching dispatcher is compared with the reply a dispatcher
without a cache makes of the same request bytes at the same moment, on the same node,
with the same clock."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from idnode.domain import HandleRecord
from idnode.handle.codec import encode_message
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import Message, ResolutionRequest
from idnode.handle.values import HandleValue, Permission
from idnode.node import Node, open_node
from idnode.server.answers import AnswerCache
from idnode.server.connection import Connection
from idnode.server.dispatch import Dispatcher
from idnode.server.http import create_app
from idnode.service.offloop import OffLoop
from tests.conftest import make_node

NOW = 1_790_000_000.0
PUBLIC = Permission.ADMIN_READ | Permission.ADMIN_WRITE | Permission.PUBLIC_READ
PRIVATE = Permission.ADMIN_READ | Permission.ADMIN_WRITE
PEER = ("192.0.2.7", 40000)


def _record(name: str, url: str) -> HandleRecord:
    return HandleRecord(
        f"88.100.1/{name}",
        (
            HandleValue(1, "URL", url.encode(), permissions=PUBLIC),
            HandleValue(2, "EMAIL", b"quality@example.com", permissions=PUBLIC),
            HandleValue(3, "COST", b"1200", permissions=PRIVATE),
        ),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two nodes on one database, each with connections of its own, as two worker
    processes have; PostgreSQL's keep a record cache, as they do when serving."""
    settings: dict[str, Any] = {}
    if request.param == "postgresql":
        settings = {"database": request.getfixturevalue("postgres_url"), "cache_entries": 1000}
    first = make_node(tmp_path / "node", **settings)
    for n in range(1, 6):
        first.service.prefixes.put_record(_record(f"PUMP-{n:04d}", f"https://e.com/{n}"))
    first.close()
    one, two = open_node(first.config), open_node(first.config)
    yield one, two
    two.close()
    one.close()


class Asker:
    """One node's caching dispatcher beside an uncached one, on one event loop."""

    def __init__(
        self, node: Node, loop: asyncio.AbstractEventLoop, cache_bytes: int = 1 << 20
    ) -> None:
        self.loop = loop
        self.off = OffLoop(node.service)
        self.now = NOW  # one clock for both, moved by the tests
        clock = lambda: self.now  # noqa: E731
        self.cached = Dispatcher(
            node.service, clock=clock, offloop=self.off, answer_cache_bytes=cache_bytes
        )
        self.plain = Dispatcher(node.service, clock=clock, offloop=self.off)
        assert self.cached.answers is not None

    def _receive(self, dispatcher: Dispatcher, data: bytes, udp: bool) -> bytes | None:
        # Over TCP a request comes with its connection's state (no login here).
        connection = None if udp else Connection()
        reply = dispatcher.receive(data, udp=udp, peer=PEER, connection=connection)
        if reply is None or isinstance(reply, bytes):
            return reply
        return self.loop.run_until_complete(reply)

    def ask(self, data: bytes, udp: bool = True) -> bytes | None:
        """The caching dispatcher's reply, checked against the uncached one's."""
        got = self._receive(self.cached, data, udp)
        expected = self._receive(self.plain, data, udp)
        assert got == expected, f"request {data.hex()}"
        return got

    def close(self) -> None:
        self.loop.run_until_complete(self.off.aclose())


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _request(
    handle: str,
    request_id: int,
    *,
    flags: OpFlag = OpFlag.NONE,
    indexes: tuple[int, ...] = (),
    types: tuple[str, ...] = (),
    token: bytes | None = None,
) -> bytes:
    body = ResolutionRequest(handle, indexes, types, token)
    return encode_message(Message(OpCode.RESOLUTION, body, op_flags=flags, request_id=request_id))


def _code(reply: bytes | None) -> ResponseCode:
    assert reply is not None
    return ResponseCode(int.from_bytes(reply[24:28], "big"))


def test_kept_answers_are_the_ordinary_answers_byte_for_byte(
    nodes: tuple[Node, Node], loop: asyncio.AbstractEventLoop
) -> None:
    asker = Asker(nodes[0], loop)
    try:
        ids = itertools.count(1)
        handles = ["88.100.1/PUMP-0001", "88.100.1/pump-0002", "88.100.1/NONE", "88.100.1"]
        flags = [OpFlag.NONE, OpFlag.PUBLIC_ONLY, OpFlag.PUBLIC_ONLY | OpFlag.AUTHORITATIVE]
        filters: list[dict[str, Any]] = [
            {},
            {"indexes": (1,)},
            {"types": ("URL",)},
            {"indexes": (3,)},  # not public: not found, or a challenge
            {"token": b""},  # an IDIS SDK's empty token
            {"token": b"not-a-jwt"},  # a token: never kept
            {"flags_extra": OpFlag.RETURN_REQUEST_DIGEST},  # never kept
        ]
        for handle, flag, chosen, udp in itertools.product(handles, flags, filters, (True, False)):
            options = dict(chosen)
            extra = options.pop("flags_extra", OpFlag.NONE)
            for _ in range(5):  # asked twice, kept the third time, sent again after
                asker.ask(_request(handle, next(ids), flags=flag | extra, **options), udp)
        answers = asker.cached.answers
        assert answers is not None
        # Kept: successful answers without a token or a digest, per handle spelling,
        # flags, filter and transport; each then sent again twice.
        assert len(answers) > 0
        assert answers.kept.hits == 2 * len(answers)  # the fourth and fifth asks
    finally:
        asker.close()


def test_a_write_through_another_node_shows_in_the_next_answer(
    nodes: tuple[Node, Node], loop: asyncio.AbstractEventLoop
) -> None:
    one, two = nodes
    asker = Asker(one, loop)
    try:
        ids = itertools.count(1)
        handle = "88.100.1/PUMP-0001"
        for _ in range(4):
            first = asker.ask(_request(handle, next(ids), flags=OpFlag.PUBLIC_ONLY))
        assert asker.cached.answers is not None
        assert asker.cached.answers.kept.hits == 1
        assert b"https://e.com/1" in (first or b"")

        # Another process changes the record: the next answer is the new one, on
        # SQLite at once; on PostgreSQL once the change notification has cleared the
        # record cache (until then the ordinary way answers from it too, and ask()
        # checks that both agree at every step).
        def ask_until(shows: Callable[[bytes | None], bool], what: str) -> None:
            deadline = time.monotonic() + 10
            while not shows(asker.ask(_request(handle, next(ids), flags=OpFlag.PUBLIC_ONLY))):
                assert time.monotonic() < deadline, f"the {what} never showed"
                time.sleep(0.02)

        two.service.prefixes.put_record(_record("PUMP-0001", "https://e.com/changed"))
        ask_until(lambda reply: b"https://e.com/changed" in (reply or b""), "change")
        # Deleted elsewhere: not found, not the kept answer.
        two.storage.update(handle, lambda current: None)
        ask_until(lambda reply: _code(reply) == ResponseCode.HANDLE_NOT_FOUND, "delete")
    finally:
        asker.close()


def test_a_prefix_no_longer_homed_is_not_answered_from_the_cache(
    nodes: tuple[Node, Node], loop: asyncio.AbstractEventLoop
) -> None:
    one, _ = nodes
    asker = Asker(one, loop)
    try:
        handle = "88.100.1/PUMP-0002"
        for n in range(4):
            assert _code(asker.ask(_request(handle, n))) == ResponseCode.SUCCESS
        one.service.prefixes.unhome_prefix("88.100.1")
        assert _code(asker.ask(_request(handle, 9))) != ResponseCode.SUCCESS
    finally:
        asker.close()


def test_answers_from_the_cache_are_counted(
    nodes: tuple[Node, Node], loop: asyncio.AbstractEventLoop
) -> None:
    one, _ = nodes
    asker = Asker(one, loop)
    try:
        statistics = one.service.statistics
        statistics.flush()
        before = sum(r.resolutions for r in statistics.totals("88.100.1"))
        for n in range(10):
            asker.ask(_request("88.100.1/PUMP-0003", n, flags=OpFlag.PUBLIC_ONLY))
        assert asker.cached.answers is not None
        assert asker.cached.answers.kept.hits == 7
        statistics.flush()
        after = sum(r.resolutions for r in statistics.totals("88.100.1"))
        # Each ask() resolves twice (cached and plain dispatchers): 20 in all.
        assert after - before == 20
    finally:
        asker.close()


def test_any_request_gets_from_the_cache_what_the_ordinary_way_gives(
    nodes: tuple[Node, Node], loop: asyncio.AbstractEventLoop
) -> None:
    """Requests made at random from a few, their bytes that the key leaves out
    changed, some bytes anywhere broken, the clock moving: each answer is the
    ordinary way's, none raises, and the cache stays within its room."""
    room = 64 << 10
    asker = Asker(nodes[0], loop, cache_bytes=room)
    rng = random.Random(19)
    handles = ["88.100.1/PUMP-0001", "88.100.1/pump-0004", "88.100.1", "88.100.1/NONE"]
    handles += ["", "a b", "88.100.1/\x01", "0.NA/88.100.1", "99.9/ELSEWHERE"]
    bases = [
        _request(handle, 1, flags=flags, indexes=indexes, types=types, token=token)
        for handle in handles
        for flags in (OpFlag.NONE, OpFlag.PUBLIC_ONLY, OpFlag.CERTIFY)
        for indexes, types in (((), ()), ((1, 2), ()), ((), ("URL", "EMAIL")), ((3,), ()))
        for token in (None, b"")
    ]
    try:
        for n in range(3000):
            data = bytearray(rng.choice(bases))
            data[8:12] = rng.getrandbits(32).to_bytes(4, "big")  # the request id
            if rng.random() < 0.5:  # fields the key leaves out
                data[3] = rng.getrandbits(8)  # suggested minor version
                data[2] = (data[2] & 0xE0) | rng.getrandbits(2)  # suggested major
                data[12:16] = rng.getrandbits(32).to_bytes(4, "big")  # sequence
                data[32:40] = rng.getrandbits(64).to_bytes(8, "big")  # serial ... expiry
            if rng.random() < 0.1:  # anything broken
                where = rng.randrange(len(data))
                data[where] = rng.getrandbits(8)
            if n % 100 == 0:
                asker.now += rng.choice((1, 59, 3600))
            asker.ask(bytes(data), udp=rng.random() < 0.5)
        answers = asker.cached.answers
        assert answers is not None
        assert answers.kept.hits > 200  # hits were compared too, not only misses
        assert answers.kept._bytes <= room
        assert len(answers.kept._seen) <= 65536
    finally:
        asker.close()


def test_the_key_leaves_out_only_what_no_answer_depends_on() -> None:
    first = bytearray(_request("88.100.1/PUMP-0001", 7, flags=OpFlag.PUBLIC_ONLY))
    second = bytearray(first)
    second[8:12] = (8).to_bytes(4, "big")  # request id
    second[32:40] = bytes(range(1, 9))  # serial, recursion count, reserved, expiration
    assert AnswerCache.key(bytes(first), True) == AnswerCache.key(bytes(second), True)
    assert AnswerCache.key(bytes(first), True) != AnswerCache.key(bytes(first), False)
    in_session = bytearray(first)
    in_session[4:8] = (5).to_bytes(4, "big")
    assert AnswerCache.key(bytes(in_session), True) is None
    signed = _request("88.100.1/PUMP-0001", 7, flags=OpFlag.PUBLIC_ONLY | OpFlag.CERTIFY)
    assert AnswerCache.key(signed, True) is None


def test_http_answers_kept_are_the_ordinary_ones_and_follow_writes(
    nodes: tuple[Node, Node], loop: asyncio.AbstractEventLoop
) -> None:
    """GET /api/handles/... from the kept answers: status, headers and body as the
    app without them gives, and a change made through another node shows."""
    one, two = nodes
    off = OffLoop(one.service)
    cached = create_app(off, answer_cache_bytes=1 << 20)
    plain = create_app(off)

    async def get(app: object, url: str) -> tuple[int, list[tuple[str, str]], bytes]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            response = await client.get(url)
        return response.status_code, sorted(response.headers.items()), response.content

    async def ask(url: str) -> bytes:
        got = await get(cached, url)
        assert got == await get(plain, url), url
        return got[2]

    async def run() -> None:
        urls = [
            "/api/handles/88.100.1/PUMP-0001",
            "/api/handles/88.100.1/pump-0002?index=1",
            "/api/handles/88.100.1/PUMP-0003?type=URL&pretty",
            "/api/handles/88.100.1/NONE",
            "/api/handles/88.100.1/PUMP-0001?index=3",
        ]
        found = 0
        for url in urls:
            for _ in range(4):
                await ask(url)
            found += (await get(plain, url))[0] == 200
        kept = cached._kept
        assert kept is not None
        assert found >= 3
        assert kept.hits == found  # each 200 kept the third time, sent the fourth
        two.service.prefixes.put_record(_record("PUMP-0001", "https://e.com/http-changed"))
        # Another node's write reaches this one's record cache by NOTIFY on PostgreSQL
        # (at once on SQLite): until then both apps may answer from before it, and one
        # may see it a moment before the other. Once the kept answer shows it, both
        # must give the same answer again.
        deadline = time.monotonic() + 10
        while b"http-changed" not in (await get(cached, urls[0]))[2]:
            assert time.monotonic() < deadline, "the change never showed"
            await asyncio.sleep(0.02)
        assert b"http-changed" in await ask(urls[0])

    try:
        loop.run_until_complete(run())
    finally:
        loop.run_until_complete(off.aclose())
