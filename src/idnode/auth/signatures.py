"""Answers to authentication challenges: computing them (clients) and checking them
(servers). Pure functions over bytes; no I/O, no clock.

What is signed is always ``nonce + request digest``: the server's random nonce binds
the answer to this challenge, the digest binds it to the request being authorised.

Secret keys (HS_SECKEY). The answer is one algorithm byte, then:

- ``0x22`` PBKDF2-HMAC-SHA1 (the deployed default from protocol 2.7): salt (block),
  iterations (int), key length in bits (int), then HMAC-SHA1 keyed with
  PBKDF2(secret, salt) over the signed bytes (block);
- ``0x12`` / ``0x13`` HMAC-SHA1 / HMAC-SHA256 keyed with the secret;
- ``0x03`` SHA-256, ``0x02`` SHA-1 and ``0x01`` MD5 of ``secret + signed + secret``
  (legacy; SHA-256 is what HTTP clients send as ``alg="SHA256"``);
- before protocol 2.1 the bare MD5 form with no algorithm byte.

Public keys (HS_PUBKEY): the hash algorithm's name as a block (``SHA-256``, ``SHA1``,
...), then the signature as a block: RSA PKCS#1 v1.5, or DSA in DER. SM2 keys sign
with SM3 (the name ``SM3``, or ``SM2``/``SM3withSM2`` as some clients write it), the
signature in DER; the signer id in the SM3 digest is the default of GM/T 0009, or the
identity's handle for clients that use that.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

from idnode import sm2
from idnode.errors import RemoteProtocolError
from idnode.handle.codec import vouched
from idnode.handle.messages import Message
from idnode.handle.valuetypes import DSAPublicKey, RSAPublicKey, SM2PublicKey, parse_public_key
from idnode.handle.wire import Reader, Writer
from idnode.keys import PrivateKey

__all__ = [
    "HMAC_SHA1",
    "HMAC_SHA256",
    "MD5",
    "PBKDF2_HMAC_SHA1",
    "PBKDF2_ITERATIONS",
    "SHA1",
    "SHA256",
    "SM3_NAMES",
    "answer_with_private_key",
    "answer_with_secret",
    "check_private_key_answer",
    "check_secret_answer",
    "check_signature",
    "sign",
    "signed_by",
]

PBKDF2_HMAC_SHA1 = 0x22
HMAC_SHA1 = 0x12
HMAC_SHA256 = 0x13
SHA256 = 0x03
SHA1 = 0x02
MD5 = 0x01
PBKDF2_ITERATIONS = 10_000
# A client chooses the iteration count; more than this would let one request buy
# seconds of server CPU.
MAX_PBKDF2_ITERATIONS = 100_000
#: The hash names under which clients send SM2 signatures (all mean SM2 with SM3).
SM3_NAMES = frozenset({"SM3", "SM2", "SM3WITHSM2", "SM2WITHSM3"})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA-256": hashes.SHA256,
    "SHA256": hashes.SHA256,
    "SHA1": hashes.SHA1,
    "SHA-1": hashes.SHA1,
}


def _password(secret: bytes) -> bytes:
    # Deployed clients hand the secret to PBKDF2 as Latin-1 characters, which the
    # JDK turns into UTF-8 bytes; the same for ASCII secrets, different above 0x7F.
    return secret.decode("latin-1").encode("utf-8")


def _pbkdf2_mac(secret: bytes, signed: bytes, salt: bytes, iterations: int, bits: int) -> bytes:
    key = hashlib.pbkdf2_hmac("sha1", _password(secret), salt, iterations, bits // 8)
    return hmac.new(key, signed, hashlib.sha1).digest()


def answer_with_secret(
    secret: bytes, nonce: bytes, digest: bytes, version: tuple[int, int]
) -> bytes:
    """The answer a client sends for a secret key, in the form its version expects."""
    signed = nonce + digest
    if version < (2, 1):
        return hashlib.md5(secret + signed + secret).digest()  # noqa: S324 - protocol
    if version < (2, 7):
        return bytes([SHA1]) + hashlib.sha1(secret + signed + secret).digest()  # noqa: S324
    salt = os.urandom(16)
    w = Writer()
    w.u8(PBKDF2_HMAC_SHA1)
    w.block(salt)
    w.u32(PBKDF2_ITERATIONS)
    w.u32(160)
    w.block(_pbkdf2_mac(secret, signed, salt, PBKDF2_ITERATIONS, 160))
    return w.getvalue()


def check_secret_answer(
    secret: bytes, nonce: bytes, digest: bytes, answer: bytes, version: tuple[int, int]
) -> bool:
    """Whether ``answer`` proves knowledge of ``secret``. Malformed answers are False."""
    signed = nonce + digest
    if version < (2, 1):
        expected = hashlib.md5(secret + signed + secret).digest()  # noqa: S324
        return hmac.compare_digest(expected, answer)
    if not answer:
        return False
    algorithm, rest = answer[0], answer[1:]
    if algorithm == PBKDF2_HMAC_SHA1:
        try:
            r = Reader(rest)
            salt = r.block("salt")
            iterations = r.u32("iterations")
            bits = r.u32("key length")
            mac = r.block("mac")
            r.expect_end("PBKDF2 answer")
        except RemoteProtocolError:
            return False
        if not (0 < iterations <= MAX_PBKDF2_ITERATIONS and 0 < bits <= 512 and bits % 8 == 0):
            return False
        return hmac.compare_digest(_pbkdf2_mac(secret, signed, salt, iterations, bits), mac)
    expected_by_algorithm = {
        HMAC_SHA1: lambda: hmac.new(secret, signed, hashlib.sha1).digest(),
        HMAC_SHA256: lambda: hmac.new(secret, signed, hashlib.sha256).digest(),
        SHA256: lambda: hashlib.sha256(secret + signed + secret).digest(),
        SHA1: lambda: hashlib.sha1(secret + signed + secret).digest(),  # noqa: S324
        MD5: lambda: hashlib.md5(secret + signed + secret).digest(),  # noqa: S324
    }
    compute = expected_by_algorithm.get(algorithm)
    return compute is not None and hmac.compare_digest(compute(), rest)


def answer_with_private_key(
    key: PrivateKey,
    nonce: bytes,
    digest: bytes,
    version: tuple[int, int],
    identity_handle: str = "",
) -> bytes:
    """A signature over nonce + digest: RSA with SHA-256 from 2.7 on (SHA-1 before),
    or SM2 as the national SDKs sign (the SM3 digest of nonce + digest, the
    identity's handle as the signer id), which is what their servers check."""
    if isinstance(key, sm2.SM2PrivateKey):
        user_id = identity_handle.encode() or sm2.DEFAULT_USER_ID
        name, signature = b"SM3", key.sign(sm2.sm3(nonce + digest), user_id)
    else:
        name, signature = sign(key, nonce + digest, version)
    w = Writer()
    w.block(name)
    w.block(signature)
    return w.getvalue()


def sign(key: PrivateKey, data: bytes, version: tuple[int, int]) -> tuple[bytes, bytes]:
    """The hash algorithm's name and a signature of ``data``, as a peer of
    ``version`` expects them: RSA with SHA-256 from 2.7 on, SHA-1 before (older peers
    verify SHA-1 signatures only); SM2 keys sign with SM3 whatever the version. Also a
    message signer for the codec."""
    if isinstance(key, sm2.SM2PrivateKey):
        return b"SM3", key.sign(data)
    if version < (2, 7):
        return b"SHA1", key.sign(data, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    return b"SHA-256", key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def check_private_key_answer(
    public_key_data: bytes,
    nonce: bytes,
    digest: bytes,
    answer: bytes,
    user_ids: tuple[bytes, ...] = (),
) -> bool:
    """Whether ``answer`` is a signature by the key in an HS_PUBKEY value's data;
    ``user_ids``: signer ids an SM2 signature may use besides the default."""
    try:
        r = Reader(answer)
        hash_name = r.block("hash algorithm")
        signature = r.block("signature")
        r.expect_end("signature answer")
    except RemoteProtocolError:
        return False
    return check_signature(public_key_data, nonce + digest, hash_name, signature, user_ids)


def check_signature(
    public_key_data: bytes,
    signed: bytes,
    hash_name: bytes,
    signature: bytes,
    user_ids: tuple[bytes, ...] = (),
) -> bool:
    """Whether ``signature`` (with the hash algorithm named) is one of ``signed`` by
    the key in ``public_key_data`` (Handle's key encoding: HS_PUBKEY, HS_SITE)."""
    name = hash_name.decode("ascii", "replace").upper()
    try:
        key = parse_public_key(public_key_data)
    except RemoteProtocolError:
        return False
    if isinstance(key, SM2PublicKey):
        return name in SM3_NAMES and sm2.verify(key, signed, signature, user_ids)
    hash_type = _HASHES.get(name)
    if hash_type is None:
        return False
    try:
        if isinstance(key, RSAPublicKey):
            rsa.RSAPublicNumbers(key.exponent, key.modulus).public_key().verify(
                signature, signed, padding.PKCS1v15(), hash_type()
            )
        else:
            _dsa_key(key).verify(signature, signed, hash_type())
    except (InvalidSignature, ValueError):
        return False
    return True


def signed_by(data: bytes, message: Message, public_key_data: bytes) -> bool:
    """Whether ``message`` (decoded from ``data``) carries a signature of itself by
    the key in ``public_key_data``: what a client that set CERTIFY checks."""
    found = vouched(data, message)
    if found is None or not found[0].is_signature:
        return False
    credential, content = found
    return check_signature(public_key_data, content, credential.hash_name, credential.signature)


def _dsa_key(key: DSAPublicKey) -> dsa.DSAPublicKey:
    params = dsa.DSAParameterNumbers(key.p, key.q, key.g)
    return dsa.DSAPublicNumbers(key.y, params).public_key()
