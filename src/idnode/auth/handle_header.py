"""The ``Authorization: Handle ...`` header of the Handle.Net HTTP API. Pure parsing.

A client opens a session (``POST /api/sessions``: a session id and a server nonce),
then proves an identity by signing ``server nonce + client nonce`` with it::

    Authorization: Handle sessionId="...", id="300:0.NA/88.100.1", type="HS_PUBKEY",
                   cnonce="<base64>", alg="SHA256", signature="<base64>"

and from then on names the session alone (``Handle sessionId="..."``). Handle.Net
checks such a header exactly as a protocol challenge answer whose nonce is the
server's and whose "request digest" is the client nonce; :func:`protocol_answer`
rebuilds that answer so the same :func:`~idnode.auth.identity.check_answer` verifies
both. Secret keys use ``type="HS_SECKEY"`` with ``alg`` one of SHA1, SHA256, MD5,
HMAC-SHA1, HMAC-SHA256 or PBKDF2-HMAC-SHA1 (the latter with ``salt``, ``iterations``
and ``length`` fields).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from idnode.auth.signatures import (
    HMAC_SHA1,
    HMAC_SHA256,
    MD5,
    PBKDF2_HMAC_SHA1,
    SHA1,
    SHA256,
)
from idnode.errors import AuthenticationFailed
from idnode.handle.values import ValueReference
from idnode.handle.wire import Writer

__all__ = ["HandleAuthorization", "parse_handle_authorization", "parse_identity"]

_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s"]*)\s*(?:,|$)')
_MAX_HEADER = 16 * 1024
# Secret-key algorithm names (compared without case or punctuation) to answer codes.
_SECRET_ALGORITHMS = {
    "MD5": MD5,
    "SHA": SHA1,
    "SHA1": SHA1,
    "SHA2": SHA256,
    "SHA256": SHA256,
    "HMACSHA1": HMAC_SHA1,
    "HMACSHA256": HMAC_SHA256,
    "PBKDF2HMACSHA1": PBKDF2_HMAC_SHA1,
    "PBKDF2WITHHMACSHA1": PBKDF2_HMAC_SHA1,
}

# Public-key hash names as clients write them, to the names signatures.py knows.
_SIGNATURE_HASHES = {"SHA": "SHA1", "SHA1": "SHA1", "SHA2": "SHA-256", "SHA256": "SHA-256"}


@dataclass(frozen=True, slots=True)
class HandleAuthorization:
    """The fields of one ``Handle`` authorization header (raw strings, as sent)."""

    fields: dict[str, str]

    @property
    def session_id(self) -> str | None:
        return self.fields.get("sessionid")

    @property
    def client_cert(self) -> bool:
        return self.fields.get("clientcert", "").lower() == "true"

    @property
    def authenticating(self) -> bool:
        """Whether the header proves an identity (not only names a session)."""
        return "signature" in self.fields or "id" in self.fields

    def identity(self) -> ValueReference:
        return parse_identity(self._required("id"))

    def auth_type(self) -> str:
        auth_type = self._required("type").upper()
        if auth_type not in ("HS_PUBKEY", "HS_SECKEY"):
            raise AuthenticationFailed(f"type must be HS_PUBKEY or HS_SECKEY, not {auth_type!r}")
        return auth_type

    def client_nonce(self) -> bytes:
        return _base64(self._required("cnonce"), "cnonce")

    def protocol_answer(self) -> bytes:
        """The signature as the protocol's challenge answer body carries it."""
        alg = self._required("alg")
        signature = _base64(self._required("signature"), "signature")
        name = re.sub(r"[^A-Z0-9]", "", alg.upper())
        if self.auth_type() == "HS_PUBKEY":
            w = Writer()
            w.block(_SIGNATURE_HASHES.get(name, alg).encode("ascii", "replace"))
            w.block(signature)
            return w.getvalue()
        code = _SECRET_ALGORITHMS.get(name)
        if code is None:
            raise AuthenticationFailed(f"unknown secret-key algorithm {alg!r}")
        if code == PBKDF2_HMAC_SHA1:
            w = Writer()
            w.u8(code)
            w.block(_base64(self._required("salt"), "salt"))
            w.u32(_number(self._required("iterations"), "iterations"))
            w.u32(_number(self._required("length"), "length"))
            w.block(signature)
            return w.getvalue()
        return bytes([code]) + signature

    def _required(self, name: str) -> str:
        value = self.fields.get(name.lower())
        if not value:
            raise AuthenticationFailed(f"the Handle authorization header needs {name}=")
        return value


def parse_handle_authorization(credentials: str) -> HandleAuthorization:
    """The fields after ``Handle`` in an Authorization header; names are case-blind."""
    if len(credentials) > _MAX_HEADER:
        raise AuthenticationFailed("Authorization header too long")
    fields: dict[str, str] = {}
    position = 0
    text = credentials.strip()
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None or match.end() == position:
            raise AuthenticationFailed(
                f"malformed Handle authorization header near {text[position : position + 20]!r}"
            )
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[name] = value
        position = match.end()
    version = fields.get("version")
    if version not in (None, "0"):
        raise AuthenticationFailed(f"unknown Handle authorization version {version!r}")
    return HandleAuthorization(fields)


def parse_identity(text: str) -> ValueReference:
    """``index:handle`` as clients write identities; a bare handle means index 0."""
    index, sep, handle = text.partition(":")
    if sep and index.isdigit() and handle:
        return ValueReference(handle, int(index))
    if not text:
        raise AuthenticationFailed("empty identity")
    return ValueReference(text, 0)


def _base64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthenticationFailed(f"{name} is not base64") from exc


def _number(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise AuthenticationFailed(f"{name} must be a positive integer")
    return int(text)
