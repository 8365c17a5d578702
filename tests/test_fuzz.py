"""Fuzzing the Handle decoder and the dispatcher, for a bounded number of examples in
`make test` (issue 20).

Inputs are the requests of ``tests/fuzz_corpus/handle.hex`` (one of each kind a server
takes: resolutions, writes, logins, session set-ups) mutated by hypothesis: bytes
flipped, cut, inserted, spliced from another seed, length fields made huge. What must
hold for every input:

- the decoder returns a message or raises a ProtocolError, never anything else;
- the dispatcher answers (or stays silent) without an unexpected exception, which it
  would log as "internal error" and answer with code 2.

An input found to break either goes into the corpus, with a comment, so it stays
tested. More examples: ``IDNODE_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idnode.handle.codec import PacketAssembler, decode_message
from idnode.handle.errors import ProtocolError
from idnode.node import Node
from idnode.server.connection import Connection
from idnode.server.dispatch import Dispatcher
from tests.conftest import make_node

CORPUS = [
    bytes.fromhex(line)
    for line in (Path(__file__).parent / "fuzz_corpus" / "handle.hex").read_text().splitlines()
    if line and not line.startswith("#")
]
EXAMPLES = int(os.environ.get("IDNODE_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "splice", "huge", "byte"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "splice":
            other = draw(st.sampled_from(CORPUS))
            start = draw(st.integers(0, len(other) - 1))
            data[at:] = other[start:]
        elif kind == "huge" and len(data) >= at + 4:
            # A length or count field (they are big-endian u32) made enormous.
            data[at : at + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x10\x00\x00"])
            )
    return bytes(data)


inputs = st.one_of(mutated(), st.binary(max_size=256))


@given(inputs)
@FUZZ
def test_the_decoder_returns_a_message_or_a_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    made = make_node(tmp_path_factory.mktemp("fuzz"))
    yield made
    made.close()


@given(inputs, st.booleans())
@FUZZ
def test_the_dispatcher_answers_every_input_without_an_internal_error(
    node: Node, data: bytes, udp: bool
) -> None:
    errors = _Errors()
    logger = logging.getLogger("idnode")
    logger.addHandler(errors)
    try:
        dispatcher = Dispatcher(node.service)
        reply = dispatcher.handle(
            data, udp=udp, peer=("192.0.2.1", 2641), connection=None if udp else Connection()
        )
    finally:
        logger.removeHandler(errors)
    assert reply is None or isinstance(reply, bytes)
    assert not errors.records, [r.getMessage() for r in errors.records]
    if reply is not None:
        decode_message(reply)  # what we send is well formed


@st.composite
def packet(draw: st.DrawFn) -> bytes:
    """One packet of a seed split over several, now and then with a byte changed."""
    seed = draw(st.sampled_from(CORPUS))
    step = draw(st.integers(8, 200))
    n = draw(st.integers(0, max((len(seed) - 20 - 1) // step, 0)))
    data = bytearray(seed[:20] + seed[20 + n * step : 20 + (n + 1) * step])
    data[12:16] = n.to_bytes(4, "big")
    if draw(st.booleans()):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@given(st.lists(st.tuples(st.one_of(inputs, packet()), st.integers(0, 3)), max_size=30))
@FUZZ
def test_the_packet_assembler_takes_any_datagrams(datagrams: list[tuple[bytes, int]]) -> None:
    """Whatever comes in over UDP, from a few sources: a whole message, nothing yet,
    or a ProtocolError; never more messages in assembly than its bound."""
    assembler = PacketAssembler(max_pending=4)
    for n, (data, source) in enumerate(datagrams):
        with contextlib.suppress(ProtocolError):
            whole = assembler.receive(data, ("192.0.2.1", source), float(n))
            if whole is not None:
                with contextlib.suppress(ProtocolError):
                    decode_message(whole)
        assert len(assembler) <= 4
