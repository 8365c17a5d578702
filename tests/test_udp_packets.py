"""Requests sent in several UDP packets (RFC 3652 §2.2.1; issue 20): put together
again by the codec's PacketAssembler, then served as any request."""

from __future__ import annotations

import socket

import pytest

from idnode.errors import ProtocolError
from idnode.handle.codec import ENVELOPE_SIZE, PacketAssembler, decode_message, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import Message, ResolutionRequest, ResolutionResponse
from tests.conftest import RunningNode

#: A resolution asking for many types: about 1,200 bytes, over the 512 of one packet.
BIG = Message(
    OpCode.RESOLUTION,
    ResolutionRequest("88.100.1/PUMP-0001", (), (*(f"TYPE.{n:04d}" for n in range(120)), "URL")),
    request_id=4242,
)


def packets(message: bytes, size: int = 512) -> list[bytes]:
    """``message`` split as the reference client splits it: the envelope on each
    packet, its sequence number counting, the length the whole message's."""
    envelope, rest = bytearray(message[:ENVELOPE_SIZE]), message[ENVELOPE_SIZE:]
    step = size - ENVELOPE_SIZE
    out = []
    for n, start in enumerate(range(0, len(rest), step)):
        envelope[12:16] = n.to_bytes(4, "big")
        out.append(bytes(envelope) + rest[start : start + step])
    return out


def test_packets_in_any_order_make_the_message() -> None:
    whole = encode_message(BIG)
    parts = packets(whole)
    assert len(parts) >= 3
    assembler = PacketAssembler()
    for part in reversed(parts[1:]):
        assert assembler.receive(part, ("192.0.2.1", 7), 0.0) is None
    made = assembler.receive(parts[0], ("192.0.2.1", 7), 0.1)
    assert made is not None
    assert decode_message(made) == decode_message(whole)
    assert len(assembler) == 0
    # One packet is one message, as ever.
    small = encode_message(Message(OpCode.RESOLUTION, ResolutionRequest("88.1/A"), request_id=1))
    assert assembler.receive(small, ("192.0.2.1", 7), 0.2) == small


def test_assembly_is_bounded_and_forgets() -> None:
    parts = packets(encode_message(BIG))
    assembler = PacketAssembler(max_pending=2, lifetime=5.0)
    for source in range(3):  # a third message in assembly pushes out the first
        assert assembler.receive(parts[0], ("192.0.2.1", source), 0.0) is None
    assert len(assembler) == 2
    assert assembler.receive(parts[1], ("192.0.2.1", 9), 6.0) is None  # the others expired
    assert len(assembler) == 1
    # Packets of different sources never mix.
    for part in parts[1:]:
        assert assembler.receive(part, ("192.0.2.2", 1), 7.0) is None
    lying = bytearray(parts[0])
    lying[16:20] = (10_000).to_bytes(4, "big")  # disagrees on the message's length
    with pytest.raises(ProtocolError):
        assembler.receive(bytes(lying), ("192.0.2.2", 1), 7.0)


def test_a_request_in_three_packets_is_answered(running_node: RunningNode) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for part in packets(encode_message(BIG)):
            sock.sendto(part, ("127.0.0.1", running_node.ports.handle))
        reply = decode_message(sock.recv(65536))
    assert reply.request_id == 4242
    assert reply.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, ResolutionResponse)
    assert {v.type for v in reply.body.values} == {"URL"}
