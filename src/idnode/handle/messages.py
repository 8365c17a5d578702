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
    "OPTIONALLY_DIGESTED",
    "PROTOCOL_VERSION",
    "AddValueRequest",
    "Body",
    "ChallengeAnswer",
    "ChallengeResponse",
    "CreateHandleRequest",
    "CreateHandleResponse",
    "DeleteHandleRequest",
    "ErrorResponse",
    "GenericResponse",
    "KeyExchange",
    "ListHandlesRequest",
    "ListHandlesResponse",
    "LoginRequest",
    "Message",
    "ModifyValueRequest",
    "PasswordLoginRequest",
    "PrefixRequest",
    "RawBody",
    "ReferralResponse",
    "RemoveValueRequest",
    "RequestDigest",
    "ResolutionRequest",
    "ResolutionResponse",
    "SessionExchangeKeyRequest",
    "SessionSetupRequest",
    "SessionSetupResponse",
    "SessionTerminateRequest",
    "SiteInfoRequest",
    "SiteInfoResponse",
    "Truncated",
    "VerifyChallengeRequest",
    "VerifyChallengeResponse",
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
    """Opcode 1. Empty index and type lists mean "all values".

    ``token``: China's IDIS SDKs add a field after the type list, a block holding a
    JWT that names the original caller of a recursive lookup, or nothing; None when
    the request has no such field (every other client).
    """

    handle: str
    indexes: tuple[int, ...] = ()
    types: tuple[str, ...] = ()
    token: bytes | None = None


@dataclass(frozen=True, slots=True)
class ResolutionResponse:
    handle: str
    values: Sequence[HandleValue]
    request_digest: RequestDigest | None = None


@dataclass(frozen=True, slots=True)
class SiteInfoRequest:
    """Opcode 2; the body is empty."""


@dataclass(frozen=True, slots=True)
class PrefixRequest:
    """Opcode 300 (home a prefix here) and 301 (stop homing it): the prefix, as its
    prefix handle ``0.NA/<prefix>`` or bare (the IDIS SDKs send what they are given)."""

    handle: str


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """Opcode 2001 (IDIS ``LOGIN_ID_SYSTEM``): log this TCP connection in as the
    identity at ``index`` of ``handle``, which the server then challenges. The client
    chooses the session id (envelope) that its later requests on the connection carry.
    The message has no credential field."""

    handle: str
    index: int


@dataclass(frozen=True, slots=True)
class PasswordLoginRequest:
    """Opcode 2000 (CAICT's ID-SDK): log this TCP connection in with a user name and
    password, laid out as a resolution request whose one type is the password."""

    user: str
    password: str = field(repr=False)  # in clear on the wire; never in logs


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
class ReferralResponse:
    """Codes 302 (service referral) and 303 (prefix referral): ask elsewhere.

    ``handle`` names the record the referral comes from (a prefix handle such as
    ``0.NA/88.100``); ``values`` are its HS_SITE / HS_SERV values, which say where.
    """

    handle: str
    values: Sequence[HandleValue] = ()
    request_digest: RequestDigest | None = None


# -- administration (RFC 3652 §3.5-3.7, and Handle.Net's encodings) ---------------


@dataclass(frozen=True, slots=True)
class CreateHandleRequest:
    """Opcode 100: a new handle with its values (OVERWRITE / MINT_NEW_SUFFIX flags apply)."""

    handle: str
    values: Sequence[HandleValue]


@dataclass(frozen=True, slots=True)
class DeleteHandleRequest:
    """Opcode 101."""

    handle: str


@dataclass(frozen=True, slots=True)
class AddValueRequest:
    """Opcode 102: values to add at indexes the handle does not use yet."""

    handle: str
    values: Sequence[HandleValue]


@dataclass(frozen=True, slots=True)
class RemoveValueRequest:
    """Opcode 103: the indexes of the values to remove."""

    handle: str
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModifyValueRequest:
    """Opcode 104: replacement values, matched to existing ones by index."""

    handle: str
    values: Sequence[HandleValue]


@dataclass(frozen=True, slots=True)
class ListHandlesRequest:
    """Opcode 105 (list handles) and 302 (list homed prefixes): the prefix handle asked
    about, ``0.NA/<prefix>``."""

    handle: str


@dataclass(frozen=True, slots=True)
class ListHandlesResponse:
    """Answer to opcodes 105 and 302. A long list comes as several messages, each but
    the last with the CONTINUOUS op flag."""

    handles: tuple[str, ...]
    request_digest: RequestDigest | None = None


@dataclass(frozen=True, slots=True)
class CreateHandleResponse:
    """Success for opcode 100: the handle created when the server minted its suffix."""

    handle: str | None = None
    request_digest: RequestDigest | None = None


@dataclass(frozen=True, slots=True)
class GenericResponse:
    """A success that carries nothing but an optional request digest (delete, add,
    remove, modify)."""

    request_digest: RequestDigest | None = None


# -- authentication (reference: "Authentication") --------------------------------


@dataclass(frozen=True, slots=True)
class ChallengeResponse:
    """Response code 402 to a request that needs an identity: a nonce to sign.

    The client signs the nonce followed by the request digest, so the digest (of the
    request being authorised) is mandatory here whatever the request's flags said.
    """

    nonce: bytes
    request_digest: RequestDigest


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """Opcode 200: who the client is and its signature over nonce + request digest.

    ``auth_type`` is ``HS_SECKEY`` or ``HS_PUBKEY``; the identity is the value at
    ``identity_index`` of ``identity_handle``. The envelope's session id ties the answer
    to its challenge.
    """

    auth_type: str
    identity_handle: str
    identity_index: int
    signed_response: bytes


@dataclass(frozen=True, slots=True)
class VerifyChallengeRequest:
    """Opcode 201: one server asking another, the home of an identity's secret key,
    whether ``signed_response`` is a valid answer by the key at ``index`` of
    ``handle`` to ``nonce`` and the request digest (raw bytes, no algorithm)."""

    handle: str
    index: int
    nonce: bytes
    request_digest: bytes
    signed_response: bytes


@dataclass(frozen=True, slots=True)
class VerifyChallengeResponse:
    """Success for opcode 201: whether the answer was valid."""

    valid: bool
    request_digest: RequestDigest | None = None


# -- sessions (opcodes 400-402) ---------------------------------------------------


class KeyExchange:
    """How a session's key is agreed (the ``mode`` of a session setup)."""

    NONE = 0
    CIPHER_CLIENT = 1  #: the server encrypts a key with the client's RSA key
    CIPHER_SERVER = 2  #: the client encrypts a key with the server's RSA key (opcode 402)
    CIPHER_HDL = 3  #: as CIPHER_CLIENT, the client's key taken from a handle value
    DIFFIE_HELLMAN = 4  #: what deployed clients use by default


@dataclass(frozen=True, slots=True)
class SessionSetupRequest:
    """Opcode 400: open a session whose key is agreed by ``mode``.

    ``public_key`` is the client's key (Diffie-Hellman or RSA, in the Handle public
    key encoding) for modes 1 and 4; ``exchange_handle``/``exchange_index`` name a
    handle value holding it for mode 3. The identity is only a hint: a session is
    authenticated by answering a challenge inside it. ``timeout`` is in seconds.
    """

    mode: int
    timeout: int
    identity_handle: str = ""
    identity_index: int = 0
    public_key: bytes = b""
    exchange_handle: str = ""
    exchange_index: int = 0


@dataclass(frozen=True, slots=True)
class SessionSetupResponse:
    """Success for opcode 400: the server's half of the key agreement (for
    Diffie-Hellman, the cipher code then the server's public key). The envelope's
    session id names the new session."""

    mode: int
    data: bytes
    request_digest: RequestDigest | None = None


@dataclass(frozen=True, slots=True)
class SessionExchangeKeyRequest:
    """Opcode 402: a session key encrypted with the server's public key."""

    encrypted_key: bytes


@dataclass(frozen=True, slots=True)
class SessionTerminateRequest:
    """Opcode 401: end the session the envelope names. No body."""


@dataclass(frozen=True, slots=True)
class RawBody:
    """A body we do not model (yet); kept as bytes so it can be relayed or refused."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Truncated:
    """Stands for a body left out because the message did not fit (envelope flag TC)."""


#: Response bodies that carry the request's digest exactly when the request asked for
#: it (RETURN_REQUEST_DIGEST). A challenge always carries one, so it is not among them.
OPTIONALLY_DIGESTED = (
    ResolutionResponse,
    SiteInfoResponse,
    ErrorResponse,
    ReferralResponse,
    ListHandlesResponse,
    CreateHandleResponse,
    GenericResponse,
    VerifyChallengeResponse,
    SessionSetupResponse,
)

Body = (
    ResolutionRequest
    | ResolutionResponse
    | SiteInfoRequest
    | SiteInfoResponse
    | ErrorResponse
    | ReferralResponse
    | CreateHandleRequest
    | DeleteHandleRequest
    | AddValueRequest
    | RemoveValueRequest
    | ModifyValueRequest
    | ListHandlesRequest
    | ListHandlesResponse
    | CreateHandleResponse
    | GenericResponse
    | ChallengeResponse
    | ChallengeAnswer
    | VerifyChallengeRequest
    | VerifyChallengeResponse
    | SessionSetupRequest
    | SessionSetupResponse
    | SessionExchangeKeyRequest
    | SessionTerminateRequest
    | PrefixRequest
    | LoginRequest
    | PasswordLoginRequest
    | RawBody
    | Truncated
)


@dataclass(slots=True)
class Message:
    """Envelope, header, body and credential of one Handle protocol message.

    Not frozen, unlike the bodies: every request builds two (the request decoded, the
    reply encoded), and a frozen dataclass sets each of these fourteen fields through
    ``object.__setattr__``, which made construction a tenth of a resolution's time.
    Treat it as a value all the same: change one with ``dataclasses.replace``.
    """

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
