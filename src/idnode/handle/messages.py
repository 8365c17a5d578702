"""Typed Handle protocol messages: one header shape, one class per body.

Messages are plain immutable values. :mod:`idnode.handle.codec` turns them into bytes
and back; nothing here knows about sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from idnode.handle.codes import DigestAlgorithm, EnvelopeFlag, OpCode, OpFlag, ResponseCode
from idnode.handle.values import HandleValue
from idnode.handle.valuetypes import SiteInfo

__all__ = [
    "PROTOCOL_VERSION",
    "Body",
    "ErrorResponse",
    "Message",
    "RawBody",
    "RequestDigest",
    "ResolutionRequest",
    "ResolutionResponse",
    "SiteInfoRequest",
    "SiteInfoResponse",
    "Truncated",
]

# The version idnode suggests to peers; it reads everything from 2.0 up.
PROTOCOL_VERSION = (2, 11)


@dataclass(frozen=True, slots=True)
class RequestDigest:
    """A hash of the request's header and body, echoed so a client can match replies."""

    algorithm: DigestAlgorithm
    digest: bytes


@dataclass(frozen=True, slots=True)
class ResolutionRequest:
    """Opcode 1. Empty index and type lists mean "all values"."""

    handle: str
    indexes: tuple[int, ...] = ()
    types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResolutionResponse:
    handle: str
    values: Sequence[HandleValue]
    request_digest: RequestDigest | None = None


@dataclass(frozen=True, slots=True)
class SiteInfoRequest:
    """Opcode 2; the body is empty."""


@dataclass(frozen=True, slots=True)
class SiteInfoResponse:
    site: SiteInfo
    request_digest: RequestDigest | None = None


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Any response whose code has no body of its own: a human-readable message."""

    message: str
    request_digest: RequestDigest | None = None


@dataclass(frozen=True, slots=True)
class RawBody:
    """A body we do not model (yet); kept as bytes so it can be relayed or refused."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Truncated:
    """Stands for a body left out because the message did not fit (envelope flag TC)."""


Body = (
    ResolutionRequest
    | ResolutionResponse
    | SiteInfoRequest
    | SiteInfoResponse
    | ErrorResponse
    | RawBody
    | Truncated
)


@dataclass(frozen=True, slots=True)
class Message:
    """Envelope, header, body and credential of one Handle protocol message."""

    opcode: OpCode
    body: Body
    response_code: ResponseCode = ResponseCode.RESERVED
    op_flags: OpFlag = OpFlag.NONE
    request_id: int = 0
    session_id: int = 0
    version: tuple[int, int] = PROTOCOL_VERSION
    suggested_version: tuple[int, int] = PROTOCOL_VERSION
    envelope_flags: EnvelopeFlag = EnvelopeFlag.NONE
    site_info_serial: int = 0xFFFF
    recursion_count: int = 0
    expiration: int = 0
    sequence: int = 0
    credential: bytes = field(default=b"", repr=False)

    @property
    def is_response(self) -> bool:
        return self.response_code != ResponseCode.RESERVED

    @property
    def truncated(self) -> bool:
        return bool(self.envelope_flags & EnvelopeFlag.TRUNCATED)
