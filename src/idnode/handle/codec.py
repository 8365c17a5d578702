"""Bytes to :class:`Message` and back, plus TCP stream framing. Pure: no I/O.

Theory of operation. A message on the wire is a 20-byte envelope, a 24-byte header,
the body, and a credential (a 4-byte length, usually 0). Over UDP one datagram holds
one whole message; over TCP messages follow each other and the envelope's length field
frames them (:class:`MessageFramer`). Decoding untrusted input either returns a
:class:`Message` or raises :class:`~idnode.errors.RemoteProtocolError`; every length
is checked against the bytes present before use and the whole message is bounded by
``MAX_MESSAGE_LENGTH``, so input cannot make us allocate more than its own size.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from idnode.handle.bodies import (
    LISTINGS,
    MAX_HANDLE_LENGTH,
    read_request_body,
    write_request_body,
)
from idnode.handle.codes import DigestAlgorithm, EnvelopeFlag, OpCode, OpFlag, ResponseCode
from idnode.handle.credential import (
    Credential,
    mac_credential,
    mac_matches,
    read_credential,
    signed_content,
    signed_credential,
)
from idnode.handle.encoded import EncodedValues
from idnode.handle.errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError
from idnode.handle.messages import (
    OPTIONALLY_DIGESTED,
    Body,
    ChallengeResponse,
    CreateHandleResponse,
    ErrorResponse,
    GenericResponse,
    ListHandlesResponse,
    Message,
    RawBody,
    ReferralResponse,
    RequestDigest,
    ResolutionResponse,
    SessionSetupResponse,
    SiteInfoResponse,
    Truncated,
    VerifyChallengeResponse,
)
from idnode.handle.values import read_values, write_values
from idnode.handle.valuetypes import SiteInfo
from idnode.handle.wire import Reader, Writer

__all__ = [
    "ENVELOPE_SIZE",
    "HEADER_SIZE",
    "MAX_HANDLE_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "MAX_UDP_PACKET",
    "Envelope",
    "MessageFramer",
    "PacketAssembler",
    "Signer",
    "decode_envelope",
    "decode_message",
    "digest_request",
    "encode_message",
    "header_and_body",
    "peek_codes",
    "session_counter_of",
    "vouched",
]

ENVELOPE_SIZE = 20
HEADER_SIZE = 24
MAX_MESSAGE_LENGTH = 262_144
MAX_UDP_PACKET = 512

_U32 = struct.Struct(">I")
_ENVELOPE = struct.Struct(">BBBBIIII")
_HEADER = struct.Struct(">IIIHBBII")
_DIGEST_SIZES = {
    DigestAlgorithm.MD5_OLD_FORMAT: 16,
    DigestAlgorithm.MD5: 16,
    DigestAlgorithm.SHA1: 20,
    DigestAlgorithm.SHA256: 32,
}


@dataclass(frozen=True, slots=True)
class Envelope:
    version: tuple[int, int]
    flags: EnvelopeFlag
    suggested_version: tuple[int, int]
    session_id: int
    request_id: int
    sequence: int
    message_length: int


def _unpack_envelope(data: bytes | bytearray | memoryview) -> tuple[int, ...]:
    """The eight envelope fields, refusing a short envelope or an oversized length."""
    if len(data) < ENVELOPE_SIZE:
        raise RemoteProtocolError(f"message envelope needs 20 bytes, got {len(data)}")
    fields: tuple[int, ...] = _ENVELOPE.unpack_from(data)
    if fields[7] > MAX_MESSAGE_LENGTH:
        raise MessageTooLarge(f"message length {fields[7]} is over the {MAX_MESSAGE_LENGTH} limit")
    return fields


def decode_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    major, minor, flag_byte, sug_minor, session, request, seq, length = _unpack_envelope(data)
    return Envelope(
        version=(major, minor),
        flags=EnvelopeFlag(flag_byte & 0xE0),
        suggested_version=(flag_byte & 0x03 or major, sug_minor),
        session_id=session,
        request_id=request,
        sequence=seq,
        message_length=length,
    )


#: Signs what a message signs (given its version): the hash algorithm's name and the
#: signature. The key stays with the caller; the codec says what is signed.
Signer = Callable[[bytes, tuple[int, int]], tuple[bytes, bytes]]


def encode_message(
    msg: Message,
    signer: Signer | None = None,
    *,
    session_key: bytes | None = None,
    session_counter: int = 0,
) -> bytes:
    """The message's bytes; with ``signer``, carrying a signature of it as its
    credential (an answer to a request that set CERTIFY); with ``session_key``,
    carrying a MAC under that key instead (a message inside a session)."""
    body = b"" if isinstance(msg.body, Truncated) else _encode_body(msg)
    credential = msg.credential
    if signer is not None or session_key is not None:
        content = signed_content(
            msg.version,
            msg.suggested_version,
            msg.session_id,
            msg.request_id,
            _header(msg, body) + body,
            session_counter,
        )
        if session_key is not None:
            credential = mac_credential(session_key, content, session_counter)
        else:
            assert signer is not None
            credential = signed_credential(*signer(content, msg.version))
    cred = _U32.pack(len(credential)) + credential
    message_length = HEADER_SIZE + len(body) + len(cred)
    if message_length > MAX_MESSAGE_LENGTH:
        raise LocalProtocolError(f"message of {message_length} bytes is over the limit")
    envelope_flags = int(msg.envelope_flags)
    if isinstance(msg.body, Truncated):
        envelope_flags |= EnvelopeFlag.TRUNCATED
    try:
        envelope = _ENVELOPE.pack(
            msg.version[0],
            msg.version[1],
            envelope_flags | (msg.suggested_version[0] & 0x03),
            msg.suggested_version[1],
            msg.session_id,
            msg.request_id,
            msg.sequence,
            message_length,
        )
    except struct.error as exc:
        raise LocalProtocolError(f"an envelope field is out of range: {exc}") from exc
    return envelope + _header(msg, body) + body + cred


def _header(msg: Message, body: bytes) -> bytes:
    try:
        return _HEADER.pack(
            msg.opcode,
            msg.response_code,
            msg.op_flags,
            msg.site_info_serial,
            msg.recursion_count,
            0,
            msg.expiration,
            len(body),
        )
    except struct.error as exc:
        raise LocalProtocolError(f"a header field is out of range: {exc}") from exc


def header_and_body(data: bytes | memoryview) -> bytes:
    """The header and body of a whole message: what a request digest covers, and a
    signature (after what :func:`~idnode.handle.credential.signed_content` adds)."""
    if len(data) < ENVELOPE_SIZE + HEADER_SIZE:
        raise RemoteProtocolError("message shorter than its header")
    (body_length,) = _U32.unpack_from(data, ENVELOPE_SIZE + HEADER_SIZE - 4)
    end = ENVELOPE_SIZE + HEADER_SIZE + body_length
    if end > len(data):
        raise RemoteProtocolError("message shorter than its header says")
    return bytes(data[ENVELOPE_SIZE:end])


def vouched(data: bytes, msg: Message) -> tuple[Credential, bytes] | None:
    """The credential of ``msg`` (decoded from ``data``) and the bytes it vouches for,
    whether by signature or MAC; None if it carries none or an unreadable one."""
    if not msg.credential:
        return None
    try:
        credential = read_credential(msg.credential)
        covered = header_and_body(data)
    except RemoteProtocolError:
        return None
    content = signed_content(
        msg.version,
        msg.suggested_version,
        msg.session_id,
        msg.request_id,
        covered,
        credential.session_counter,
    )
    return credential, content


def session_counter_of(data: bytes, msg: Message, key: bytes) -> int | None:
    """The session counter of ``msg`` (decoded from ``data``) if its credential is a
    valid MAC under the session ``key``; None if it carries none or a wrong one."""
    found = vouched(data, msg)
    if found is None or not mac_matches(found[0], key, found[1]):
        return None
    return found[0].session_counter


def peek_codes(data: bytes) -> tuple[int, int] | None:
    """The raw opcode and response code of a message, read without decoding it (what
    a server records of each answer it sends); None when its header is not in clear
    (compressed or encrypted) or not all there."""
    if len(data) < ENVELOPE_SIZE + HEADER_SIZE or data[2] & _COMPRESSED_OR_ENCRYPTED:
        return None
    opcode, code = _CODES.unpack_from(data, ENVELOPE_SIZE)
    return opcode, code


def decode_message(data: bytes | memoryview) -> Message:
    """Decode exactly one whole message (one UDP datagram or one TCP frame)."""
    size = len(data)
    major, minor, flag_byte, sug_minor, session, request_id, seq, length = _unpack_envelope(data)
    if flag_byte & _COMPRESSED_OR_ENCRYPTED:
        raise RemoteProtocolError("compressed or encrypted messages are not supported")
    if size != ENVELOPE_SIZE + length:
        raise RemoteProtocolError(
            f"envelope says {length} bytes follow, but {size - ENVELOPE_SIZE} do "
            "(multi-packet messages are not supported)"
        )
    if length < HEADER_SIZE:
        raise RemoteProtocolError(f"message of {length} bytes has no header")
    raw_opcode, raw_code, raw_flags, serial, recursion, _, expiration, body_length = (
        _HEADER.unpack_from(data, ENVELOPE_SIZE)
    )
    body_start = ENVELOPE_SIZE + HEADER_SIZE
    if body_length > size - body_start:
        raise RemoteProtocolError(f"body length {body_length} exceeds the message")
    opcode = _lookup(_OPCODES, OpCode, raw_opcode)
    response_code = _lookup(_RESPONSE_CODES, ResponseCode, raw_code)
    op_flags = _lookup(_OP_FLAGS, OpFlag, raw_flags)
    envelope_flags = _lookup(_ENVELOPE_FLAGS, EnvelopeFlag, flag_byte & 0xE0)
    version = (major, minor)
    r = Reader(data, body_start, body_start + body_length)
    body = _decode_body(r, body_length, version, envelope_flags, opcode, response_code, op_flags)
    r.expect_end("message body")
    # The credential is mandatory per RFC 3652, but some old clients leave it off.
    r = Reader(data, body_start + body_length)
    credential = r.block("credential") if r.remaining else b""
    r.expect_end("message")
    return Message(
        opcode=opcode,
        body=body,
        response_code=response_code,
        op_flags=op_flags,
        request_id=request_id,
        session_id=session,
        version=version,
        suggested_version=(flag_byte & 0x03 or major, sug_minor),
        envelope_flags=envelope_flags,
        site_info_serial=serial,
        recursion_count=recursion,
        expiration=expiration,
        sequence=seq,
        credential=credential,
    )


# Converting a wire integer to an enum member costs a microsecond; a dict lookup
# does not. Flag combinations are cached as they are seen, up to a bound, so that
# hostile input cannot grow the cache.
_OPCODES: dict[int, OpCode] = {int(m): m for m in OpCode}
_RESPONSE_CODES: dict[int, ResponseCode] = {int(m): m for m in ResponseCode}
_OP_FLAGS: dict[int, OpFlag] = {0: OpFlag.NONE}
_ENVELOPE_FLAGS: dict[int, EnvelopeFlag] = {0: EnvelopeFlag.NONE}
_COMPRESSED_OR_ENCRYPTED = int(EnvelopeFlag.COMPRESSED | EnvelopeFlag.ENCRYPTED)
_TRUNCATED = int(EnvelopeFlag.TRUNCATED)
_RETURN_DIGEST = int(OpFlag.RETURN_REQUEST_DIGEST)
_CACHE_BOUND = 256
_CODES = struct.Struct(">II")


_E = TypeVar("_E", OpCode, ResponseCode, OpFlag, EnvelopeFlag)


def _lookup(cache: dict[int, _E], kind: type[_E], raw: int) -> _E:
    member = cache.get(raw)
    if member is None:
        member = kind(raw)
        if len(cache) < _CACHE_BOUND:
            cache[raw] = member
    return member


def digest_request(request: bytes | memoryview, version: tuple[int, int]) -> RequestDigest:
    """The digest a response carries of its request: over the request's header and body.

    The algorithm follows the reply's protocol version as the deployed servers do:
    MD5 without an algorithm byte before 2.1, SHA-1 up to 2.6, SHA-256 from 2.7.
    """
    covered = header_and_body(request)
    if version < (2, 1):
        return RequestDigest(DigestAlgorithm.MD5_OLD_FORMAT, hashlib.md5(covered).digest())  # noqa: S324
    if version < (2, 7):
        return RequestDigest(DigestAlgorithm.SHA1, hashlib.sha1(covered).digest())  # noqa: S324
    return RequestDigest(DigestAlgorithm.SHA256, hashlib.sha256(covered).digest())


def _encode_body(msg: Message) -> bytes:
    body = msg.body
    # The answer to a resolution is the hot path: joined directly, no Writer.
    if type(body) is ResolutionResponse and body.request_digest is None:
        values = body.values
        if isinstance(values, EncodedValues) and not int(msg.op_flags) & _RETURN_DIGEST:
            name = body.handle.encode("utf-8")
            return _U32.pack(len(name)) + name + values.wire
    w = Writer()
    if not write_request_body(w, body):
        _write_response_body(w, msg, body)
    return w.getvalue()


def _write_response_body(w: Writer, msg: Message, body: Body) -> None:
    if isinstance(body, ChallengeResponse) and msg.version < (2, 1):
        # The old layout: nonce, then the digest as a byte block, no flag needed.
        w.block(body.nonce)
        w.block(body.request_digest.digest)
        return
    if isinstance(body, RawBody):
        w.raw(body.data)
        return
    if not isinstance(body, _RESPONSE_BODIES):  # pragma: no cover - Truncated: the caller's
        raise LocalProtocolError(f"cannot encode body {body!r}")
    _write_digest(w, msg, body.request_digest)
    _write_response_fields(w, body)


def _write_response_fields(w: Writer, body: Body) -> None:
    """What follows the request digest in a response body."""
    match body:
        case ResolutionResponse(handle, values):
            w.string(handle)
            if isinstance(values, EncodedValues):
                w.raw(values.wire)
            else:
                write_values(w, values)
        case SiteInfoResponse(site):
            w.raw(site.to_bytes())
        case ErrorResponse(text):
            w.string(text)
        case ReferralResponse(handle, values):
            w.string(handle)
            write_values(w, values)
        case ListHandlesResponse(handles):
            w.string_array(handles)
        case CreateHandleResponse(handle) if handle is not None:
            w.string(handle)
        case ChallengeResponse(nonce):
            w.block(nonce)
        case VerifyChallengeResponse(valid):
            w.u8(1 if valid else 0)
        case SessionSetupResponse(mode, data):
            w.u16(mode)
            w.block(data)


_RESPONSE_BODIES = (*OPTIONALLY_DIGESTED, ChallengeResponse)


def _write_digest(w: Writer, msg: Message, digest: RequestDigest | None) -> None:
    wants = bool(msg.op_flags & OpFlag.RETURN_REQUEST_DIGEST)
    if wants != (digest is not None):
        raise LocalProtocolError("a request digest goes with the RETURN_REQUEST_DIGEST flag")
    if digest is None:
        return
    if len(digest.digest) != _DIGEST_SIZES.get(digest.algorithm, -1):
        raise LocalProtocolError(f"{digest.algorithm.name} digest has the wrong size")
    if digest.algorithm != DigestAlgorithm.MD5_OLD_FORMAT:
        w.u8(digest.algorithm)
    w.raw(digest.digest)


def _read_digest(r: Reader, version: tuple[int, int]) -> RequestDigest:
    if version < (2, 1):
        return RequestDigest(DigestAlgorithm.MD5_OLD_FORMAT, r.raw(16, "request digest"))
    algorithm = DigestAlgorithm(r.u8("digest algorithm"))
    size = _DIGEST_SIZES.get(algorithm)
    if size is None or algorithm == DigestAlgorithm.MD5_OLD_FORMAT:
        raise RemoteProtocolError(f"unknown request digest algorithm {int(algorithm)}")
    return RequestDigest(algorithm, r.raw(size, "request digest"))


def _decode_body(
    r: Reader,
    body_length: int,
    version: tuple[int, int],
    envelope_flags: EnvelopeFlag,
    opcode: OpCode,
    response_code: ResponseCode,
    op_flags: OpFlag,
) -> Body:
    if int(envelope_flags) & _TRUNCATED:
        r.raw(body_length, "truncated body")
        return Truncated()
    if response_code == ResponseCode.RESERVED:
        return read_request_body(r, body_length, opcode)
    if response_code == ResponseCode.AUTHENTICATION_NEEDED:
        return _read_challenge(r, version, op_flags)
    digest = _read_digest(r, version) if int(op_flags) & _RETURN_DIGEST else None
    if response_code == ResponseCode.SUCCESS:
        body = _read_success(r, opcode, digest)
        if body is not None:
            return body
    else:
        return _read_failure(r, response_code, digest)
    return RawBody(r.raw(r.remaining, "body"))


def _read_failure(
    r: Reader, response_code: ResponseCode, digest: RequestDigest | None
) -> ErrorResponse | ReferralResponse:
    if response_code in _REFERRALS:
        handle = r.string("referral handle")
        # Handle.Net leaves the value list out when it has none.
        return ReferralResponse(handle, read_values(r) if r.remaining else (), digest)
    return ErrorResponse(r.string("error message"), digest)


def _read_success(r: Reader, opcode: OpCode, digest: RequestDigest | None) -> Body | None:
    body: Body | None = None
    if opcode in _RESOLUTION_LIKE:
        handle = r.string("handle")
        body = ResolutionResponse(handle, read_values(r), digest)
    elif opcode == OpCode.GET_SITE_INFO:
        body = SiteInfoResponse(SiteInfo.from_bytes(r.raw(r.remaining, "site info")), digest)
    elif opcode in LISTINGS:
        body = ListHandlesResponse(r.string_array("handle list"), digest)
    elif opcode == OpCode.CREATE_HANDLE:
        body = CreateHandleResponse(r.string("handle") if r.remaining else None, digest)
    elif opcode in _BODILESS_SUCCESS:
        body = GenericResponse(digest)
    elif opcode == OpCode.VERIFY_RESPONSE:
        body = VerifyChallengeResponse(bool(r.u8("verification result") & 0x01), digest)
    elif opcode == OpCode.SESSION_SETUP:
        mode = r.u16("key exchange mode")
        body = SessionSetupResponse(mode, r.block("key exchange data"), digest)
    return body


_REFERRALS = frozenset({ResponseCode.SERVICE_REFERRAL, ResponseCode.PREFIX_REFERRAL})
#: Answered like a resolution: CAICT's SDK reads a password login's answer that way.
_RESOLUTION_LIKE = frozenset({OpCode.RESOLUTION, OpCode.LOGIN})
_BODILESS_SUCCESS = frozenset(
    {
        OpCode.HOME_NA,
        OpCode.UNHOME_NA,
        OpCode.LOGIN_ID_SYSTEM,
        OpCode.DELETE_HANDLE,
        OpCode.ADD_VALUE,
        OpCode.REMOVE_VALUE,
        OpCode.MODIFY_VALUE,
        OpCode.SESSION_TERMINATE,
        OpCode.SESSION_EXCHANGEKEY,
    }
)
_NONCE_LIMIT = 1024


def _read_challenge(r: Reader, version: tuple[int, int], op_flags: OpFlag) -> ChallengeResponse:
    if version < (2, 1):
        nonce = r.block("challenge nonce")
        digest = RequestDigest(DigestAlgorithm.MD5_OLD_FORMAT, r.block("request digest"))
    else:
        if not int(op_flags) & _RETURN_DIGEST:
            raise RemoteProtocolError("a challenge must carry the digest of its request")
        digest = _read_digest(r, version)
        nonce = r.block("challenge nonce")
    if not 0 < len(nonce) <= _NONCE_LIMIT:
        raise RemoteProtocolError(f"challenge nonce of {len(nonce)} bytes")
    return ChallengeResponse(nonce, digest)


class MessageFramer:
    """Splits a TCP byte stream into whole messages by their envelope lengths.

    Feed bytes with :meth:`receive_data`; take complete messages with
    :meth:`next_message` until it returns ``None``. A frame announcing more than
    ``MAX_MESSAGE_LENGTH`` raises :class:`MessageTooLarge` before anything is buffered
    for it; the connection should then be closed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def head(self) -> bytes:
        """The buffered envelope and header, for answering a frame that was refused."""
        return bytes(self._buffer[: ENVELOPE_SIZE + HEADER_SIZE])

    def next_message(self) -> bytes | None:
        if len(self._buffer) < ENVELOPE_SIZE:
            return None
        env = decode_envelope(self._buffer)
        end = ENVELOPE_SIZE + env.message_length
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[:end])
        del self._buffer[:end]
        return frame


class PacketAssembler:
    """Multi-packet UDP messages put together again (RFC 3652 §2.2.1): every packet
    carries the message's envelope, whose length is the whole message's and whose
    sequence number orders the packet; its payload is the next slice of the message.

    Sans-I/O: ``receive`` takes one datagram, its source and the time, and gives the
    whole message once its last packet has come, else None. Bounded: at most
    ``max_pending`` messages in assembly (the oldest is dropped for a new one), each
    forgotten ``lifetime`` seconds after its first packet; a message is at most
    MAX_MESSAGE_LENGTH as ever. A single-packet message passes straight through.
    """

    def __init__(self, *, max_pending: int = 1024, lifetime: float = 5.0) -> None:
        self.max_pending = max_pending
        self.lifetime = lifetime
        # (source, request id) -> (started, total length, packets by sequence number)
        self._pending: OrderedDict[tuple[object, int], tuple[float, int, dict[int, bytes]]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._pending)

    def receive(self, data: bytes, source: object, now: float) -> bytes | None:
        """The whole message ``data`` completes, ``data`` itself if it is whole, or
        None while packets are missing. RemoteProtocolError for a packet that cannot
        belong to any message (a short envelope, a length over the limit)."""
        fields = _unpack_envelope(data)
        sequence, length = fields[6], fields[7]
        payload = data[ENVELOPE_SIZE:]
        if sequence == 0 and len(payload) >= length:
            return data  # the common case: one packet (decoding judges any excess)
        if not payload or len(payload) >= length:
            raise RemoteProtocolError("a packet of a multi-packet message with no fitting payload")
        self._expire(now)
        key = (source, fields[5])
        started, total, packets = self._pending.pop(key, (now, length, {}))
        if total != length:
            raise RemoteProtocolError("packets of one message disagree on its length")
        packets[sequence] = bytes(payload)
        received = sum(len(p) for p in packets.values())
        if received < total:
            self._pending[key] = (started, total, packets)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
            return None
        body = b"".join(packets[n] for n in sorted(packets))
        if len(body) != total or sorted(packets) != list(range(len(packets))):
            raise RemoteProtocolError("the packets of a message do not fit together")
        envelope = bytearray(data[:ENVELOPE_SIZE])
        envelope[12:16] = b"\x00\x00\x00\x00"  # sequence number of the whole
        return bytes(envelope) + body

    def _expire(self, now: float) -> None:
        while self._pending:
            started = next(iter(self._pending.values()))[0]
            if now - started < self.lifetime:
                return
            self._pending.popitem(last=False)
