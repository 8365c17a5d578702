"""Byte-exact vectors for the administration and authentication bodies.

Laid out field by field from Handle.Net's encodings (the deployed reference for these
bodies): create/add/modify carry handle + value list, remove an index list, delete and
the listings one handle; a challenge is [request digest] + nonce block; an answer is
auth type, identity handle, identity index and the signed response as a block.
"""

from __future__ import annotations

import pytest

from idnode.errors import RemoteProtocolError
from idnode.handle.codec import decode_message, encode_message
from idnode.handle.codes import DigestAlgorithm, OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    ChallengeAnswer,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    GenericResponse,
    ListHandlesResponse,
    Message,
    RemoveValueRequest,
    RequestDigest,
)
from idnode.handle.values import HandleValue, Permission
from tests.wirebytes import h, string

HANDLE = "88.100.1/PUMP-0001"


def envelope(body: bytes, *, request_id: int = 7, session_id: int = 0) -> bytes:
    return (
        h("02 0b 02 0b")
        + session_id.to_bytes(4, "big")
        + request_id.to_bytes(4, "big")
        + h("00000000")
        + (24 + len(body) + 4).to_bytes(4, "big")
    )


def header(opcode: int, code: int, flags: int, body: bytes) -> bytes:
    return (
        opcode.to_bytes(4, "big")
        + code.to_bytes(4, "big")
        + flags.to_bytes(4, "big")
        + h("ffff 00 00 00000000")
        + len(body).to_bytes(4, "big")
    )


def message(opcode: int, code: int, flags: int, body: bytes, **kw: int) -> bytes:
    return envelope(body, **kw) + header(opcode, code, flags, body) + body + h("00000000")


def test_create_handle_request() -> None:
    value = HandleValue(1, "URL", b"https://x", permissions=Permission(0x0E), timestamp=5)
    body = (
        string(HANDLE)
        + h("00000001")  # one value
        + h("00000001 00000005 00 00015180 0e")  # index, timestamp, TTL type, TTL, perms
        + string("URL")
        + string("https://x")
        + h("00000000")  # no references
    )
    wire = message(100, 0, 0, body)
    msg = Message(OpCode.CREATE_HANDLE, CreateHandleRequest(HANDLE, (value,)), request_id=7)
    assert encode_message(msg) == wire
    assert decode_message(wire) == msg


def test_remove_value_request_carries_an_index_list() -> None:
    body = string(HANDLE) + h("00000002 00000064 0000012c")
    wire = message(103, 0, 0, body)
    msg = Message(OpCode.REMOVE_VALUE, RemoveValueRequest(HANDLE, (100, 300)), request_id=7)
    assert encode_message(msg) == wire
    assert decode_message(wire) == msg


def test_challenge_is_digest_then_nonce_and_needs_the_digest_flag() -> None:
    digest = bytes(range(32))
    nonce = b"N" * 16
    body = h("03") + digest + h("00000010") + nonce
    wire = message(102, 402, OpFlag.RETURN_REQUEST_DIGEST, body, session_id=99)
    msg = Message(
        OpCode.ADD_VALUE,
        ChallengeResponse(nonce, RequestDigest(DigestAlgorithm.SHA256, digest)),
        response_code=ResponseCode.AUTHENTICATION_NEEDED,
        op_flags=OpFlag.RETURN_REQUEST_DIGEST,
        request_id=7,
        session_id=99,
    )
    assert encode_message(msg) == wire
    assert decode_message(wire) == msg
    without_flag = message(102, 402, 0, h("00000010") + nonce)
    with pytest.raises(RemoteProtocolError, match="digest"):
        decode_message(without_flag)


def test_challenge_answer() -> None:
    body = string("HS_PUBKEY") + string("0.NA/88.100.1") + h("0000012c") + h("00000003 010203")
    wire = message(200, 0, 0, body, session_id=99)
    msg = Message(
        OpCode.CHALLENGE_RESPONSE,
        ChallengeAnswer("HS_PUBKEY", "0.NA/88.100.1", 300, b"\x01\x02\x03"),
        request_id=7,
        session_id=99,
    )
    assert encode_message(msg) == wire
    assert decode_message(wire) == msg


@pytest.mark.parametrize(
    ("opcode", "body", "wire_body"),
    [
        (
            OpCode.LIST_HANDLES,
            ListHandlesResponse(("88.100.1/A", "88.100.1/B")),
            (h("00000002") + string("88.100.1/A") + string("88.100.1/B")),
        ),
        (OpCode.CREATE_HANDLE, CreateHandleResponse("88.100.1/NEW"), string("88.100.1/NEW")),
        (OpCode.CREATE_HANDLE, CreateHandleResponse(None), b""),
        (OpCode.DELETE_HANDLE, GenericResponse(), b""),
    ],
)
def test_success_bodies(opcode: OpCode, body: object, wire_body: bytes) -> None:
    wire = message(opcode, 1, 0, wire_body)
    msg = Message(opcode, body, response_code=ResponseCode.SUCCESS, request_id=7)  # type: ignore[arg-type]
    assert encode_message(msg) == wire
    assert decode_message(wire) == msg
