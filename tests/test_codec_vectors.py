"""Byte-exact vectors assembled field by field from RFC 3652's layouts."""

from __future__ import annotations

import hashlib

import pytest

from idnode.errors import MessageTooLarge, RemoteProtocolError
from idnode.handle.codec import MessageFramer, decode_message, digest_request, encode_message
from idnode.handle.codes import DigestAlgorithm, EnvelopeFlag, OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    ErrorResponse,
    Message,
    RawBody,
    RequestDigest,
    ResolutionRequest,
    ResolutionResponse,
    SiteInfoRequest,
    Truncated,
    VerifyChallengeRequest,
    VerifyChallengeResponse,
)
from idnode.handle.values import HandleValue, Permission, TTLType, ValueReference
from tests.wirebytes import h, string

HANDLE = "88.100.1/PUMP-0001"

# Resolution request for HANDLE, index 1, type "URL", request id 0x1234, version 2.11.
REQUEST_BODY = (
    string(HANDLE)
    + h("00000001 00000001")  # index list: one entry, 1
    + h("00000001")  # type list: one entry
    + string("URL")
)
REQUEST_HEADER = (
    h("00000001")  # opcode RESOLUTION
    + h("00000000")  # response code: 0 in requests
    + h("00000000")  # op flags
    + h("ffff")  # site info serial (none known)
    + h("00")  # recursion count
    + h("00")  # reserved
    + h("00000000")  # expiration
    + len(REQUEST_BODY).to_bytes(4, "big")  # body length
)
REQUEST_ENVELOPE = (
    h("02 0b")  # version 2.11
    + h("02 0b")  # flags 0 | suggested major 2, suggested minor 11
    + h("00000000")  # session id
    + h("00001234")  # request id
    + h("00000000")  # sequence
    + (24 + len(REQUEST_BODY) + 4).to_bytes(4, "big")
)
REQUEST_BYTES = REQUEST_ENVELOPE + REQUEST_HEADER + REQUEST_BODY + h("00000000")

REQUEST = Message(
    opcode=OpCode.RESOLUTION,
    body=ResolutionRequest(HANDLE, (1,), ("URL",)),
    request_id=0x1234,
)

VALUE = HandleValue(
    index=1,
    type="URL",
    data=b"http://x.cn",
    ttl=86400,
    ttl_type=TTLType.RELATIVE,
    permissions=Permission.ADMIN_READ | Permission.ADMIN_WRITE | Permission.PUBLIC_READ,
    timestamp=1_600_000_000,
    references=(ValueReference("0.NA/88", 300),),
)
VALUE_BYTES = (
    h("00000001")  # index
    + h("5f5e1000")  # timestamp 1600000000
    + h("00")  # TTL type relative
    + h("00015180")  # TTL 86400
    + h("0e")  # permissions 1110
    + string("URL")
    + string("http://x.cn")
    + h("00000001")  # one reference
    + string("0.NA/88")
    + h("0000012c")  # its index, 300
)


def test_resolution_request_encodes_byte_exact() -> None:
    assert encode_message(REQUEST) == REQUEST_BYTES


def test_resolution_request_decodes_from_bytes() -> None:
    assert decode_message(REQUEST_BYTES) == REQUEST


def test_resolution_response_with_one_value() -> None:
    body = string(HANDLE) + h("00000001") + VALUE_BYTES
    header = h("00000001 00000001 80000000 ffff 00 00 00000000") + len(body).to_bytes(4, "big")
    envelope = h("020b020b 00000000 00001234 00000000") + (24 + len(body) + 4).to_bytes(4, "big")
    wire = envelope + header + body + h("00000000")
    msg = Message(
        opcode=OpCode.RESOLUTION,
        body=ResolutionResponse(HANDLE, (VALUE,)),
        response_code=ResponseCode.SUCCESS,
        op_flags=OpFlag.AUTHORITATIVE,
        request_id=0x1234,
    )
    assert encode_message(msg) == wire
    assert decode_message(wire) == msg


def test_not_found_reply_is_32_bytes_after_the_envelope() -> None:
    # Observed on Handle.Net: 24 header + 4 body (empty message) + 4 credential.
    msg = Message(
        opcode=OpCode.RESOLUTION,
        body=ErrorResponse(""),
        response_code=ResponseCode.HANDLE_NOT_FOUND,
        request_id=7,
    )
    wire = encode_message(msg)
    assert wire[16:20] == (32).to_bytes(4, "big")
    assert wire[20 + 4 : 20 + 8] == h("00000064")  # response code 100
    assert decode_message(wire) == msg


def test_error_response_carries_request_digest_before_message() -> None:
    digest = hashlib.sha256(b"x").digest()
    msg = Message(
        opcode=OpCode.RESOLUTION,
        body=ErrorResponse("no", RequestDigest(DigestAlgorithm.SHA256, digest)),
        response_code=ResponseCode.HANDLE_NOT_FOUND,
        op_flags=OpFlag.RETURN_REQUEST_DIGEST,
    )
    wire = encode_message(msg)
    assert wire[44 : 44 + 1 + 32 + 6] == h("03") + digest + string("no")
    assert decode_message(wire) == msg


def test_request_digest_covers_header_and_body_and_follows_version() -> None:
    covered = REQUEST_BYTES[20 : 20 + 24 + len(REQUEST_BODY)]
    sha256 = digest_request(REQUEST_BYTES, (2, 11))
    assert sha256 == RequestDigest(DigestAlgorithm.SHA256, hashlib.sha256(covered).digest())
    sha1 = digest_request(REQUEST_BYTES, (2, 5))
    assert sha1 == RequestDigest(DigestAlgorithm.SHA1, hashlib.sha1(covered).digest())
    md5 = digest_request(REQUEST_BYTES, (2, 0))
    assert md5.algorithm == DigestAlgorithm.MD5_OLD_FORMAT


def test_old_format_md5_digest_has_no_algorithm_byte() -> None:
    digest = hashlib.md5(b"x").digest()
    msg = Message(
        opcode=OpCode.RESOLUTION,
        body=ErrorResponse("", RequestDigest(DigestAlgorithm.MD5_OLD_FORMAT, digest)),
        response_code=ResponseCode.HANDLE_NOT_FOUND,
        op_flags=OpFlag.RETURN_REQUEST_DIGEST,
        version=(2, 0),
    )
    wire = encode_message(msg)
    assert wire[44:60] == digest
    assert decode_message(wire) == msg


def test_site_info_request_has_empty_body() -> None:
    msg = Message(opcode=OpCode.GET_SITE_INFO, body=SiteInfoRequest(), request_id=9)
    wire = encode_message(msg)
    assert wire[20:24] == h("00000002")
    assert wire[40:44] == h("00000000")  # body length
    assert len(wire) == 20 + 24 + 4
    assert decode_message(wire) == msg


def test_truncated_flag_in_envelope_and_no_body() -> None:
    msg = Message(
        opcode=OpCode.RESOLUTION,
        body=Truncated(),
        response_code=ResponseCode.SUCCESS,
        request_id=1,
    )
    wire = encode_message(msg)
    assert wire[2] & EnvelopeFlag.TRUNCATED
    decoded = decode_message(wire)
    assert decoded.truncated
    assert isinstance(decoded.body, Truncated)


def test_unknown_opcode_decodes_as_raw_body() -> None:
    wire = bytearray(REQUEST_BYTES)
    wire[20:24] = (4242).to_bytes(4, "big")
    msg = decode_message(bytes(wire))
    assert msg.opcode == 4242
    assert msg.opcode.name == "UNKNOWN_4242"
    assert msg.body == RawBody(REQUEST_BODY)


def test_missing_credential_is_tolerated() -> None:
    wire = bytearray(REQUEST_BYTES[:-4])
    wire[16:20] = (24 + len(REQUEST_BODY)).to_bytes(4, "big")
    assert decode_message(bytes(wire)).body == REQUEST.body


@pytest.mark.parametrize("garbage", [b"\x00", b"\x00" * 4, b"trailing garbage"])
def test_trailing_bytes_are_refused(garbage: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_message(REQUEST_BYTES + garbage)


def test_every_truncation_is_refused() -> None:
    for cut in range(len(REQUEST_BYTES)):
        with pytest.raises(RemoteProtocolError):
            decode_message(REQUEST_BYTES[:cut])


def test_body_length_larger_than_message_is_refused() -> None:
    wire = bytearray(REQUEST_BYTES)
    wire[40:44] = (0xFFFFFFF0).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError, match="body length"):
        decode_message(bytes(wire))


def test_huge_string_length_is_refused_without_allocating() -> None:
    wire = bytearray(REQUEST_BYTES)
    wire[44:48] = (0x7FFFFFFF).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError, match="handle needs"):
        decode_message(bytes(wire))


def test_huge_array_count_is_refused() -> None:
    at = 44 + 4 + len(HANDLE)
    wire = bytearray(REQUEST_BYTES)
    wire[at : at + 4] = (0x40000000).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError, match="cannot fit"):
        decode_message(bytes(wire))


def test_message_length_over_limit_is_refused() -> None:
    wire = bytearray(REQUEST_BYTES)
    wire[16:20] = (10_000_000).to_bytes(4, "big")
    with pytest.raises(MessageTooLarge):
        decode_message(bytes(wire))


def test_encrypted_messages_are_refused() -> None:
    wire = bytearray(REQUEST_BYTES)
    wire[2] |= EnvelopeFlag.ENCRYPTED
    with pytest.raises(RemoteProtocolError, match="encrypted"):
        decode_message(bytes(wire))


def test_framer_whole_and_byte_by_byte_give_the_same_frames() -> None:
    stream = REQUEST_BYTES * 3
    whole = MessageFramer()
    whole.receive_data(stream)
    frames = [whole.next_message() for _ in range(3)]
    assert frames == [REQUEST_BYTES] * 3
    assert whole.next_message() is None

    slow = MessageFramer()
    got = []
    for i in range(len(stream)):
        slow.receive_data(stream[i : i + 1])
        while (frame := slow.next_message()) is not None:
            got.append(frame)
    assert got == [REQUEST_BYTES] * 3
    assert slow.buffered == 0


def test_framer_refuses_oversized_frame_before_buffering_it() -> None:
    framer = MessageFramer()
    framer.receive_data(h("020b020b 00000000 00000001 00000000 7fffffff"))
    with pytest.raises(MessageTooLarge):
        framer.next_message()


def test_verify_challenge_request_and_response_layouts() -> None:
    body = VerifyChallengeRequest("0.NA/88.100", 300, b"\x01\x02", b"\xaa" * 32, b"\x22\x00")
    wire = encode_message(Message(opcode=OpCode.VERIFY_RESPONSE, body=body, request_id=7))
    assert wire[20 + 24 : -4] == (
        string("0.NA/88.100")
        + h("0000012c")  # key index 300
        + h("00000002 0102")  # nonce
        + h("00000020") + b"\xaa" * 32  # request digest, a block
        + h("00000002 2200")  # signed response
    )  # fmt: skip
    assert decode_message(wire).body == body
    # The old layout: a digest algorithm byte (3, SHA-256) and the digest, no length.
    old = bytearray(wire)
    start = 20 + 24 + len(string("0.NA/88.100")) + 4 + 6
    old[start : start + 4] = h("03")
    old[20 + 20 : 20 + 24] = (len(wire) - 20 - 24 - 4 - 3).to_bytes(4, "big")
    old[16:20] = (len(old) - 20).to_bytes(4, "big")
    assert decode_message(bytes(old)).body == body
    answer = Message(
        opcode=OpCode.VERIFY_RESPONSE,
        body=VerifyChallengeResponse(True),
        response_code=ResponseCode.SUCCESS,
    )
    encoded = encode_message(answer)
    assert encoded[20 + 24 :] == h("01") + h("00000000")  # valid, then the credential
    assert decode_message(encoded).body == VerifyChallengeResponse(True)
