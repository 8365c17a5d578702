"""Encrypted sessions as China's IDIS SDKs set them up (key exchange mode 3).

Theory of operation. On a TCP connection, the client asks for a session (opcode 400,
mode 3) naming a handle value that holds its public key (RSA or SM2). The server makes
a fresh symmetric key, encrypts ``[4-byte cipher code][key]`` with that public key,
and answers with it; from then on, every message of that session on that connection
is encrypted after its 20-byte envelope (header, body and credential), the envelope
marked with the ENCRYPTED flag and its length giving the ciphertext's. Only the holder
of the private key can read the session key, so only it can speak in the session; who
it is, the server still learns from a login (opcode 2001) inside the session.

Ciphers, as the SDKs implement them: SM4 (code 4) in CBC mode with PKCS#7 padding and
the key itself as the IV, nothing sent before the ciphertext; AES-128 (code 3) in CBC
mode with PKCS#7 padding and a random 16-byte IV sent in front of the ciphertext.
(The SDKs also know DES and triple DES, codes 1 and 2; idnode does not offer them.)
The wrapped key: RSA PKCS#1 v1.5; SM2 as C1 || C3 || C2 (65-byte point, SM3 hash,
ciphertext), the raw layout BouncyCastle's engine reads.

Pure functions over bytes: no sockets, no clock.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from idnode import sm2
from idnode.errors import RemoteProtocolError
from idnode.handle.codec import ENVELOPE_SIZE
from idnode.handle.codes import EnvelopeFlag
from idnode.handle.valuetypes import PublicKey, RSAPublicKey, SM2PublicKey

__all__ = [
    "CIPHERS",
    "CipherName",
    "SessionCipher",
    "is_encrypted",
    "seal",
    "session_id_of",
    "unseal",
    "wrap_key",
]

CipherName = Literal["sm4", "aes"]
#: The cipher codes of the session key block, by the names the configuration uses.
CIPHERS: dict[CipherName, int] = {"aes": 3, "sm4": 4}
_KEY_SIZE = 16
_BLOCK = 16
_ENCRYPTED = int(EnvelopeFlag.ENCRYPTED)


@dataclass(frozen=True, slots=True)
class SessionCipher:
    code: int
    key: bytes = field(repr=False)

    @classmethod
    def generate(cls, name: CipherName) -> SessionCipher:
        return cls(CIPHERS[name], os.urandom(_KEY_SIZE))

    def key_block(self) -> bytes:
        """What the client's public key encrypts: the cipher code, then the key."""
        return struct.pack(">I", self.code) + self.key

    def _cipher(self, iv: bytes) -> Cipher[modes.CBC]:
        algorithm = algorithms.SM4(self.key) if self.code == 4 else algorithms.AES(self.key)
        return Cipher(algorithm, modes.CBC(iv))

    def encrypt(self, data: bytes) -> bytes:
        padder = sym_padding.PKCS7(_BLOCK * 8).padder()
        padded = padder.update(data) + padder.finalize()
        iv = self.key if self.code == 4 else os.urandom(_BLOCK)
        encryptor = self._cipher(iv).encryptor()
        sealed = encryptor.update(padded) + encryptor.finalize()
        return sealed if self.code == 4 else iv + sealed

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext; RemoteProtocolError if ``data`` is not a ciphertext of this
        key (wrong length or padding)."""
        iv, body = (self.key, data) if self.code == 4 else (data[:_BLOCK], data[_BLOCK:])
        if not body or len(body) % _BLOCK:
            raise RemoteProtocolError("an encrypted message is not a whole number of blocks")
        decryptor = self._cipher(iv).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(_BLOCK * 8).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError as exc:
            raise RemoteProtocolError(
                "an encrypted message does not decrypt with the session key"
            ) from exc


def is_encrypted(message: bytes) -> bool:
    return len(message) > 2 and bool(message[2] & _ENCRYPTED)


def session_id_of(message: bytes) -> int:
    """The session id in a message's envelope (readable in clear)."""
    if len(message) < ENVELOPE_SIZE:
        raise RemoteProtocolError("a message shorter than its envelope")
    return int(struct.unpack_from(">I", message, 4)[0])


def _with_envelope(message: bytes, payload: bytes, encrypted: bool) -> bytes:
    envelope = bytearray(message[:ENVELOPE_SIZE])
    envelope[2] = envelope[2] | _ENCRYPTED if encrypted else envelope[2] & ~_ENCRYPTED & 0xFF
    struct.pack_into(">I", envelope, 16, len(payload))
    return bytes(envelope) + payload


def unseal(message: bytes, cipher: SessionCipher) -> bytes:
    """An encrypted message as it was before encryption: the envelope's flag cleared
    and its length that of the plaintext."""
    return _with_envelope(message, cipher.decrypt(message[ENVELOPE_SIZE:]), encrypted=False)


def seal(messages: bytes, cipher: SessionCipher) -> bytes:
    """``messages`` (one, or several back to back, as a long listing is sent) each
    encrypted after its envelope, for a client in the session: the SDKs decrypt
    message by message."""
    sealed, start = [], 0
    while start < len(messages):
        (length,) = struct.unpack_from(">I", messages, start + 16)
        end = start + ENVELOPE_SIZE + length
        message = messages[start:end]
        payload = cipher.encrypt(message[ENVELOPE_SIZE:])
        sealed.append(_with_envelope(message, payload, encrypted=True))
        start = end
    return b"".join(sealed)


def wrap_key(public_key: PublicKey, cipher: SessionCipher) -> bytes:
    """The session key block, encrypted for the holder of ``public_key``."""
    block = cipher.key_block()
    try:
        if isinstance(public_key, SM2PublicKey):
            return sm2.encrypt_raw(public_key, block)
        if isinstance(public_key, RSAPublicKey):
            key = rsa.RSAPublicNumbers(public_key.exponent, public_key.modulus).public_key()
            return key.encrypt(block, padding.PKCS1v15())
    except (ValueError, sm2.SM2Error) as exc:  # a stored key that is not a usable one
        raise RemoteProtocolError(f"the public key cannot encrypt a session key: {exc}") from exc
    raise RemoteProtocolError("session keys are sent encrypted with RSA or SM2 keys only")
