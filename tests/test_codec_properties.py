"""Round trips and fuzzing: decode(encode(m)) == m, and garbage never escapes as a crash."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idnode.errors import ProtocolError
from idnode.handle.codec import decode_message, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.encoded import EncodedValues
from idnode.handle.messages import Message, ResolutionResponse
from idnode.handle.values import (
    HandleValue,
    Permission,
    ValueReference,
    ValueShape,
    read_value,
    write_value,
)
from idnode.handle.valuetypes import AdminValue, SiteInfo, ValueList
from idnode.handle.wire import Reader, Writer
from tests import strategies


@given(strategies.messages)
def test_message_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(strategies.values)
def test_value_round_trip(value: HandleValue) -> None:
    w = Writer()
    write_value(w, value)
    r = Reader(w.getvalue())
    assert read_value(r) == value
    assert r.remaining == 0


@given(st.lists(strategies.values, max_size=4))
def test_encoded_fields_are_the_decoded_values_parts(values: list[HandleValue]) -> None:
    encoded = EncodedValues.of(values)
    assert list(encoded.fields()) == [
        (int(v.permissions), v.type.encode("utf-8"), v.data) for v in encoded
    ]
    assert [v.data for v in encoded] == [v.data for v in values]


@given(strategies.values)
def test_a_value_shape_encodes_as_write_value_does(value: HandleValue) -> None:
    plain = replace(value, references=())
    shape = ValueShape(plain.index, plain.type, plain.permissions, plain.ttl, plain.ttl_type)
    w = Writer()
    write_value(w, plain)
    assert shape.wire(plain.data, plain.timestamp) == w.getvalue()


@given(st.lists(strategies.values, max_size=4))
def test_values_joined_from_shapes_are_the_values_read_from_their_bytes(
    values: list[HandleValue],
) -> None:
    plain = [replace(v, references=()) for v in values]
    shaped = []
    for v in plain:
        shape = ValueShape(v.index, v.type, v.permissions, v.ttl, v.ttl_type)
        shaped.append((shape, shape.wire(v.data, v.timestamp)))
    joined = EncodedValues.joined(shaped)
    scanned = EncodedValues(joined.wire)  # located by reading the bytes
    assert list(joined) == plain
    assert list(joined.fields()) == list(scanned.fields())
    assert joined.timestamps_set() == scanned.timestamps_set() == all(v.timestamp for v in plain)
    public = joined.select(public_only=True)
    assert public.wire == scanned.select(public_only=True).wire
    assert public.timestamps_set() == all(
        v.timestamp for v in plain if v.permissions & Permission.PUBLIC_READ
    )


@given(strategies.admin_values)
def test_admin_round_trip(admin: AdminValue) -> None:
    assert AdminValue.from_bytes(admin.to_bytes()) == admin


@given(strategies.value_lists)
def test_vlist_round_trip(vlist: ValueList) -> None:
    assert ValueList.from_bytes(vlist.to_bytes()) == vlist


@given(strategies.sites)
def test_site_round_trip(site: SiteInfo) -> None:
    assert SiteInfo.from_bytes(site.to_bytes()) == site


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except ProtocolError:
        return
    # Whatever decodes must encode again: the typed message is well formed.
    assert isinstance(msg, Message)


@given(st.binary(max_size=600))
def test_random_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(strategies.messages, st.randoms(use_true_random=False))
def test_mutated_messages_decode_or_raise_protocol_error(msg: Message, rnd: random.Random) -> None:
    wire = bytearray(encode_message(msg))
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(3)
        pos = rnd.randrange(len(wire))
        if op == 0:
            wire[pos] = rnd.randrange(256)
        elif op == 1:
            del wire[pos]
        else:
            wire.insert(pos, rnd.randrange(256))
    _decode_or_protocol_error(bytes(wire))


def test_length_fields_set_to_extremes_never_crash() -> None:
    # Every 4-byte window of a message with values, overwritten with boundary values.
    value = HandleValue(1, "URL", b"http://x.cn", references=(ValueReference("0.NA/88", 300),))
    wire = encode_message(
        Message(
            opcode=OpCode.RESOLUTION,
            body=ResolutionResponse("88.100.1/X", (value, value)),
            response_code=ResponseCode.SUCCESS,
        )
    )
    for pos in range(len(wire) - 3):
        for val in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF):
            mutated = bytearray(wire)
            mutated[pos : pos + 4] = val.to_bytes(4, "big")
            _decode_or_protocol_error(bytes(mutated))
