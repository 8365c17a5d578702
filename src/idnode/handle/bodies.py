"""Request bodies: one reader and one writer per opcode, found through a table.

Responses stay in :mod:`idnode.handle.codec`, since their layout depends on the
response code and the request digest flag as much as on the opcode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idnode.handle.codes import OpCode
from idnode.handle.errors import LocalProtocolError, RemoteProtocolError
from idnode.handle.messages import (
    AddValueRequest,
    Body,
    ChallengeAnswer,
    CreateHandleRequest,
    DeleteHandleRequest,
    KeyExchange,
    ListHandlesRequest,
    LoginRequest,
    ModifyValueRequest,
    PasswordLoginRequest,
    PrefixRequest,
    RawBody,
    RemoveValueRequest,
    ResolutionRequest,
    SessionExchangeKeyRequest,
    SessionSetupRequest,
    SessionTerminateRequest,
    SiteInfoRequest,
    VerifyChallengeRequest,
)
from idnode.handle.values import read_values, write_values
from idnode.handle.wire import Reader, Writer

__all__ = ["LISTINGS", "MAX_HANDLE_LENGTH", "read_request_body", "write_request_body"]

MAX_HANDLE_LENGTH = 2048
#: Opcodes answered with a list of handles: list handles and list homed prefixes.
LISTINGS = frozenset({OpCode.LIST_HANDLES, OpCode.LIST_HOMED_NAS})


def read_handle(r: Reader) -> str:
    handle = r.string("handle")
    if len(handle.encode("utf-8")) > MAX_HANDLE_LENGTH:
        raise RemoteProtocolError(f"handle longer than {MAX_HANDLE_LENGTH} bytes")
    return handle


def write_handle(w: Writer, handle: str) -> None:
    if len(handle.encode("utf-8")) > MAX_HANDLE_LENGTH:
        raise LocalProtocolError(f"handle longer than {MAX_HANDLE_LENGTH} bytes")
    w.string(handle)


def _resolution(r: Reader) -> Body:
    handle = read_handle(r)
    indexes, types = r.int_array("index list"), r.string_array("type list")
    # IDIS SDKs append an identity token (a block, often empty); others end here.
    token = r.block("identity token") if r.remaining else None
    return ResolutionRequest(handle, indexes, types, token)


def _password_login(r: Reader) -> Body:
    user = read_handle(r)
    r.int_array("index list")
    fields = r.string_array("type list")
    if len(fields) != 1:
        raise RemoteProtocolError(f"a password login carries 1 password, not {len(fields)}")
    return PasswordLoginRequest(user, fields[0])


def _challenge_answer(r: Reader) -> Body:
    return ChallengeAnswer(
        r.string("authentication type"),
        read_handle(r),
        r.u32("identity index"),
        r.block("signed response"),
    )


def _verify_challenge(r: Reader) -> Body:
    handle = read_handle(r)
    index = r.u32("key index")
    nonce = r.block("nonce")
    # A block (what deployed servers send); older ones sent an algorithm byte and a
    # digest of its fixed size, which a block's length can never start with.
    if r.remaining and r.peek_u8() in _DIGEST_SIZES:
        digest = r.raw(_DIGEST_SIZES[r.u8("digest algorithm")], "request digest")
    else:
        digest = r.block("request digest")
    return VerifyChallengeRequest(handle, index, nonce, digest, r.block("signed response"))


def _session_setup(r: Reader) -> Body:
    mode = r.u16("key exchange mode")
    timeout = r.u32("session timeout")
    identity = read_handle(r)
    index = r.u32("identity index")
    public_key, exchange_handle, exchange_index = b"", "", 0
    if mode in (KeyExchange.CIPHER_CLIENT, KeyExchange.DIFFIE_HELLMAN):
        public_key = r.block("exchange key")
    elif mode == KeyExchange.CIPHER_HDL:
        exchange_handle = read_handle(r)
        exchange_index = r.u32("exchange key index")
    # Handle.Net counts four bytes for the two-byte mode, so its bodies end in two
    # bytes of padding.
    r.raw(r.remaining, "padding")
    return SessionSetupRequest(
        mode, timeout, identity, index, public_key, exchange_handle, exchange_index
    )


# Digest algorithm byte -> digest size, for the old verify-challenge layout.
_DIGEST_SIZES = {1: 16, 2: 20, 3: 32}

_READERS: dict[OpCode, Callable[[Reader], Body]] = {
    OpCode.RESOLUTION: _resolution,
    OpCode.CREATE_HANDLE: lambda r: CreateHandleRequest(read_handle(r), read_values(r)),
    OpCode.ADD_VALUE: lambda r: AddValueRequest(read_handle(r), read_values(r)),
    OpCode.MODIFY_VALUE: lambda r: ModifyValueRequest(read_handle(r), read_values(r)),
    OpCode.DELETE_HANDLE: lambda r: DeleteHandleRequest(read_handle(r)),
    OpCode.REMOVE_VALUE: lambda r: RemoveValueRequest(read_handle(r), r.int_array("indexes")),
    OpCode.LIST_HANDLES: lambda r: ListHandlesRequest(read_handle(r)),
    OpCode.LIST_HOMED_NAS: lambda r: ListHandlesRequest(read_handle(r)),
    OpCode.CHALLENGE_RESPONSE: _challenge_answer,
    OpCode.VERIFY_RESPONSE: _verify_challenge,
    OpCode.SESSION_SETUP: _session_setup,
    OpCode.SESSION_EXCHANGEKEY: lambda r: SessionExchangeKeyRequest(r.block("session key")),
    OpCode.HOME_NA: lambda r: PrefixRequest(read_handle(r)),
    OpCode.UNHOME_NA: lambda r: PrefixRequest(read_handle(r)),
    OpCode.LOGIN_ID_SYSTEM: lambda r: LoginRequest(read_handle(r), r.u32("identity index")),
    OpCode.LOGIN: _password_login,
}


def read_request_body(r: Reader, body_length: int, opcode: OpCode) -> Body:
    """The typed body of a request; opcodes we do not model come back as RawBody."""
    if opcode == OpCode.GET_SITE_INFO:
        # Empty by the spec; IDIS SDKs send a handle ("/"): tolerated, not used.
        r.raw(body_length, "site info request body")
        return SiteInfoRequest()
    if opcode == OpCode.SESSION_TERMINATE:
        r.raw(body_length, "session terminate body")  # empty, as above
        return SessionTerminateRequest()
    reader = _READERS.get(opcode)
    if reader is None:
        return RawBody(r.raw(body_length, "body"))
    return reader(r)


def write_request_body(w: Writer, body: Body) -> bool:
    """Write ``body`` if it is a request body; False if it is not one."""
    writer = _WRITERS.get(type(body))
    if writer is None:
        return False
    writer(w, body)
    return True


def _write_resolution(w: Writer, body: ResolutionRequest) -> None:
    write_handle(w, body.handle)
    w.int_array(body.indexes)
    w.string_array(body.types)
    if body.token is not None:
        w.block(body.token)


def _write_session_setup(w: Writer, body: SessionSetupRequest) -> None:
    w.u16(body.mode)
    w.u32(body.timeout)
    write_handle(w, body.identity_handle)
    w.u32(body.identity_index)
    if body.mode in (KeyExchange.CIPHER_CLIENT, KeyExchange.DIFFIE_HELLMAN):
        w.block(body.public_key)
    elif body.mode == KeyExchange.CIPHER_HDL:
        write_handle(w, body.exchange_handle)
        w.u32(body.exchange_index)


def _write_values(
    w: Writer, body: CreateHandleRequest | AddValueRequest | ModifyValueRequest
) -> None:
    write_handle(w, body.handle)
    write_values(w, body.values)


def _write_challenge_answer(w: Writer, body: ChallengeAnswer) -> None:
    w.string(body.auth_type)
    write_handle(w, body.identity_handle)
    w.u32(body.identity_index)
    w.block(body.signed_response)


def _write_verify(w: Writer, body: VerifyChallengeRequest) -> None:
    write_handle(w, body.handle)
    w.u32(body.index)
    w.block(body.nonce)
    w.block(body.request_digest)
    w.block(body.signed_response)


def _write_password_login(w: Writer, body: PasswordLoginRequest) -> None:
    write_handle(w, body.user)
    w.int_array(())
    w.string_array((body.password,))


def _write_login(w: Writer, body: LoginRequest) -> None:
    write_handle(w, body.handle)
    w.u32(body.index)


def _write_remove(w: Writer, body: RemoveValueRequest) -> None:
    write_handle(w, body.handle)
    w.int_array(body.indexes)


def _write_handle_only(
    w: Writer, body: DeleteHandleRequest | ListHandlesRequest | PrefixRequest
) -> None:
    write_handle(w, body.handle)


def _write_nothing(w: Writer, body: Body) -> None:
    pass


_WRITERS: dict[type, Callable[[Writer, Any], None]] = {
    ResolutionRequest: _write_resolution,
    SiteInfoRequest: _write_nothing,
    SessionTerminateRequest: _write_nothing,
    SessionSetupRequest: _write_session_setup,
    SessionExchangeKeyRequest: lambda w, body: w.block(body.encrypted_key),
    CreateHandleRequest: _write_values,
    AddValueRequest: _write_values,
    ModifyValueRequest: _write_values,
    DeleteHandleRequest: _write_handle_only,
    ListHandlesRequest: _write_handle_only,
    PrefixRequest: _write_handle_only,
    RemoveValueRequest: _write_remove,
    ChallengeAnswer: _write_challenge_answer,
    VerifyChallengeRequest: _write_verify,
    LoginRequest: _write_login,
    PasswordLoginRequest: _write_password_login,
}
