"""The credential section of a message: what a signed message signs, and the layout
of the signature. Pure: the signing itself is done by whoever holds the key.

A client sets CERTIFY to ask for a signed answer; the server signs with the private
key whose public half is in its HS_SITE value. Signed (as the deployed 2.x protocol
does it, which differs from RFC 3652's description):

- from protocol 2.7 on: major and minor version, from 2.8 on also the suggested
  major and minor version, then session id, request id and session counter (4 bytes
  each), then the message header and body;
- 2.6 wrote those three integers over each other (all at offset 4 after the version
  bytes, ten zero bytes to follow) and its peers expect exactly that;
- before 2.6: the header and body alone.

The credential: version 0, a reserved byte, 2 bytes of flags, the signer (an empty
handle, then the session counter where an index would be), the type ``HS_SIGNED``,
the length of what follows, then the hash algorithm's name (``SHA-256``) and the
signature, each as a byte block.

Inside a session (opcodes 400-402) the same bytes are authenticated with the session
key instead: type ``HS_MAC``, ``HMAC-SHA256`` (from 2.7) over the same content, the
session counter filled in. The counter numbers a side's messages in the session, so
that the other side can refuse one it has seen before.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from idnode.handle.errors import RemoteProtocolError
from idnode.handle.wire import Reader, Writer

__all__ = [
    "MAC",
    "SIGNED",
    "Credential",
    "mac_credential",
    "mac_matches",
    "read_credential",
    "signed_content",
    "signed_credential",
]

SIGNED = b"HS_SIGNED"
MAC = b"HS_MAC"
#: MAC algorithms by the name the credential gives; HMAC-SHA256 is what 2.7+ sends.
_MACS = {b"HMAC-SHA256": hashlib.sha256, b"HMAC-SHA1": hashlib.sha1}
_SESSION_MAC = b"HMAC-SHA256"
#: What old servers called the same signature (Handle.Net's CREDENTIAL_TYPE_OLDSIGNED).
_OLD_SIGNED = b"HS_DSAPUBKEY"
_THREE = struct.Struct(">III")


@dataclass(frozen=True, slots=True)
class Credential:
    type: bytes  #: ``HS_SIGNED``, or ``HS_MAC`` in sessions
    hash_name: bytes  #: ``SHA-256``, ``SHA1``, ...
    signature: bytes
    session_counter: int = 0

    @property
    def is_signature(self) -> bool:
        return self.type in (SIGNED, _OLD_SIGNED)


def signed_content(
    version: tuple[int, int],
    suggested: tuple[int, int],
    session_id: int,
    request_id: int,
    header_and_body: bytes,
    session_counter: int = 0,
) -> bytes:
    """The bytes a message of ``version`` is signed over."""
    if version < (2, 6):
        return header_and_body
    versions = bytes(version) + (bytes(suggested) if version >= (2, 8) else b"")
    if version >= (2, 7):
        fields = _THREE.pack(session_id, request_id, session_counter)
    else:  # 2.6: each integer written at offset 4 (2 after the version bytes)
        overlaid = bytearray(12)
        overlaid[0:4] = session_id.to_bytes(4, "big")
        overlaid[2:6] = request_id.to_bytes(4, "big")
        overlaid[2:6] = session_counter.to_bytes(4, "big")
        fields = bytes(overlaid)
    return versions + fields + header_and_body


def signed_credential(hash_name: bytes, signature: bytes, session_counter: int = 0) -> bytes:
    """The credential section carrying ``signature`` (the bytes after its length)."""
    return _credential(SIGNED, hash_name, signature, session_counter)


def mac_credential(key: bytes, content: bytes, session_counter: int) -> bytes:
    """The credential section authenticating ``content`` with the session ``key``."""
    mac = hmac.digest(key, content, "sha256")
    return _credential(MAC, _SESSION_MAC, mac, session_counter)


def mac_matches(credential: Credential, key: bytes, content: bytes) -> bool:
    """Whether ``credential`` is a MAC of ``content`` under ``key``. Constant time."""
    digest = _MACS.get(credential.hash_name.upper())
    if credential.type != MAC or digest is None:
        return False
    return hmac.compare_digest(hmac.digest(key, content, digest), credential.signature)


def _credential(kind: bytes, hash_name: bytes, signature: bytes, session_counter: int) -> bytes:
    w = Writer()
    w.u8(0)  # version
    w.u8(0)  # reserved
    w.u16(0)  # flags
    w.block(b"")  # signer handle: unused
    w.u32(session_counter)
    w.block(kind)
    w.u32(4 + len(hash_name) + 4 + len(signature))
    w.block(hash_name)
    w.block(signature)
    return w.getvalue()


def read_credential(data: bytes) -> Credential:
    """A credential section; RemoteProtocolError if it is not one."""
    r = Reader(data)
    r.u8("credential version")
    r.u8("reserved byte")
    r.u16("credential flags")
    r.block("signer handle")
    counter = r.u32("session counter")
    kind = r.block("signature type")
    section = r.u32("signature length")
    if section != r.remaining:
        raise RemoteProtocolError(f"signature section says {section} bytes, {r.remaining} follow")
    hash_name = r.block("hash algorithm")
    signature = r.block("signature")
    r.expect_end("credential")
    return Credential(kind, hash_name, signature, counter)
