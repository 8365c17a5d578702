"""Agreeing on a Handle protocol session key by Diffie-Hellman, as deployed clients do.

Pure arithmetic on Python integers: no sockets, and no cryptography backend that
might refuse the group a client chose. Deployed clients (Handle.Net's
``SessionSetupInfo`` default) send a Diffie-Hellman public key in the Handle key
encoding: the block ``DH_PUB_KEY``, two bytes of flags, then y, p and g as blocks
of big-endian two's-complement integers (Java's ``BigInteger.toByteArray``). The
server answers, from protocol 2.4 on, with the cipher code (3, AES) followed by its
own public key in the same group; both sides then take the shared secret, drop its
leading zero bytes while more than 32 remain, and keep 32 bytes as the session key.
That key authenticates every message of the session (HMAC-SHA256 from 2.7).

A client of ours uses the 2048-bit MODP group of RFC 3526 (group 14).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from idnode.errors import LocalProtocolError, RemoteProtocolError, SessionFailed
from idnode.handle.wire import Reader, Writer

__all__ = [
    "AES",
    "KEY_SIZE",
    "DHKey",
    "client_key",
    "client_session_key",
    "server_agreement",
]

#: Handle.Net's cipher code for AES (1 is DES, 2 triple DES).
AES = 3
#: Bytes of the shared secret kept as the session key.
KEY_SIZE = 32
_DH_PUBLIC = b"DH_PUB_KEY"
# Smaller groups are refused (breakable); larger ones cost the server too much time
# per setup (two 4,096-bit exponentiations take some 50-100 ms of Python).
_MIN_BITS, _MAX_BITS = 1024, 4096
# Bits of the private exponent: ample for the groups above, and keeps a setup cheap.
_EXPONENT_BITS = 512

#: RFC 3526 group 14: the 2048-bit MODP group, generator 2.
_GROUP_14 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
    "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
    "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E8603"
    "9B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)


@dataclass(frozen=True, slots=True)
class DHKey:
    """One side's key in a group: public ``y = g ** x mod p``; ``x`` is kept secret."""

    p: int
    g: int
    x: int

    @property
    def y(self) -> int:
        return pow(self.g, self.x, self.p)

    def public_bytes(self) -> bytes:
        """The public key in the Handle key encoding."""
        w = Writer()
        w.block(_DH_PUBLIC)
        w.u16(0)
        for number in (self.y, self.p, self.g):
            w.block(_java_bytes(number))
        return w.getvalue()

    def session_key(self, peer_y: int) -> bytes:
        """The session key agreed with the holder of ``peer_y``."""
        secret = pow(peer_y, self.x, self.p)
        raw = secret.to_bytes((self.p.bit_length() + 7) // 8, "big")
        start = 0
        while start + KEY_SIZE < len(raw) and raw[start] == 0:
            start += 1
        return raw[start : start + KEY_SIZE]


def client_key() -> DHKey:
    """A fresh client key in RFC 3526 group 14."""
    return _new_key(_GROUP_14, 2)


def server_agreement(client_public: bytes) -> tuple[bytes, bytes]:
    """The server's answer to a client's public key, and the session key.

    The answer is what goes in the session setup response: the cipher code, then
    the server's public key in the client's group. SessionFailed if the client's key
    is malformed or its group unacceptable.
    """
    try:
        y, p, g = _read_public(Reader(client_public))
    except RemoteProtocolError as exc:
        raise SessionFailed(
            f"the client's Diffie-Hellman key is unreadable: {exc.message}"
        ) from exc
    if not _MIN_BITS <= p.bit_length() <= _MAX_BITS or p % 2 == 0:
        raise SessionFailed(
            f"a Diffie-Hellman group of {p.bit_length()} bits is not accepted "
            f"({_MIN_BITS}-{_MAX_BITS}, odd prime modulus)"
        )
    if not (1 < g < p - 1 and 1 < y < p - 1):
        raise SessionFailed("the client's Diffie-Hellman key is out of its group's range")
    mine = _new_key(p, g)
    w = Writer()
    w.u32(AES)
    w.raw(mine.public_bytes())
    return w.getvalue(), mine.session_key(y)


def client_session_key(mine: DHKey, server_answer: bytes) -> bytes:
    """The session key from the server's answer to ``mine``; LocalProtocolError if the
    answer is not one we can use."""
    r = Reader(server_answer)
    try:
        cipher = r.u32("cipher code")
        y, p, g = _read_public(r)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"unreadable session setup answer: {exc.message}") from exc
    if cipher != AES:
        raise LocalProtocolError(f"the server chose cipher {cipher}; only AES (3) is supported")
    if (p, g) != (mine.p, mine.g) or not 1 < y < p - 1:
        raise LocalProtocolError("the server's Diffie-Hellman key is not in our group")
    return mine.session_key(y)


def _new_key(p: int, g: int) -> DHKey:
    bits = min(_EXPONENT_BITS, p.bit_length() - 2)
    return DHKey(p, g, secrets.randbits(bits) | (1 << (bits - 1)))


def _read_public(r: Reader) -> tuple[int, int, int]:
    kind = r.block("key type")
    if kind != _DH_PUBLIC:
        raise RemoteProtocolError(f"expected a DH_PUB_KEY, got {kind[:32]!r}")
    r.u16("key flags")
    y, p, g = (_read_number(r, name) for name in ("y", "p", "g"))
    r.expect_end("Diffie-Hellman public key")
    return y, p, g


def _read_number(r: Reader, name: str) -> int:
    raw = r.block(name)
    if len(raw) > _MAX_BITS // 8 + 1:
        raise RemoteProtocolError(f"Diffie-Hellman {name} longer than {_MAX_BITS} bits")
    return int.from_bytes(raw, "big", signed=True)


def _java_bytes(number: int) -> bytes:
    """``number`` as Java's BigInteger.toByteArray writes it: minimal, with a sign bit."""
    return number.to_bytes(number.bit_length() // 8 + 1, "big", signed=True)
