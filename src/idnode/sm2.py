"""SM2 keys (GB/T 32918, the national public-key algorithm): signing, verifying and
encrypting with them, and reading and writing them as PEM.

Why gmssl-pyx: ``cryptography`` has SM3 and SM4 but refuses the SM2 curve (OpenSSL
knows it, the library does not expose it). gmssl-pyx binds GmSSL 3, the reference
implementation of the GM/T standards, ships wheels for current CPython on Linux, and
does SM2 with the user-id digest Z of GM/T 0009 that the national SDKs use (Bouncy
Castle's ``SM3withSM2``); pure-Python SM2 packages are slower by two orders of
magnitude and not constant-time. The PEM side (PKCS#8, SubjectPublicKeyInfo with the
SM2 curve's OID) is asn1crypto, so keys made by ``openssl genpkey -algorithm SM2``,
by the SDKs and by ``idnode keygen --sm2`` are the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import gmssl_pyx
from asn1crypto import core, keys, pem
from cryptography.hazmat.primitives import hashes

from idnode.errors import ConfigError
from idnode.handle.valuetypes import SM2_CURVE_NAME, SM2_CURVE_OID, SM2PublicKey

__all__ = [
    "DEFAULT_USER_ID",
    "SM2Error",
    "SM2PrivateKey",
    "decrypt",
    "decrypt_raw",
    "encrypt",
    "encrypt_raw",
    "generate",
    "private_key_from_pem",
    "sm3",
    "verify",
]

#: What GmSSL raises for keys and data it refuses.
SM2Error = gmssl_pyx.GmsslInnerError
#: The order of the SM2 curve's base point: a secret key is in [1, n - 2].
_ORDER = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)

#: The signer id of GM/T 0009 when none is agreed (the national SDKs use the
#: signer's handle instead).
DEFAULT_USER_ID = b"1234567812345678"


@dataclass(frozen=True, slots=True)
class SM2PrivateKey:
    """An SM2 key pair: the 32-byte secret and the 64-byte public point (x || y)."""

    secret: bytes = field(repr=False)
    point: bytes

    def public_key(self) -> SM2PublicKey:
        return SM2PublicKey(b"\x04" + self.point)

    def sign(self, data: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
        """An SM2-with-SM3 signature of ``data``, DER (r, s)."""
        return bytes(gmssl_pyx.sm2_sign(self.secret, self.point, data, user_id))

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, as ``openssl genpkey -algorithm SM2`` writes it."""
        ec = keys.ECPrivateKey(
            {
                "version": "ecPrivkeyVer1",
                "private_key": int.from_bytes(self.secret, "big"),
                "public_key": b"\x04" + self.point,
            }
        )
        info = keys.PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": keys.PrivateKeyAlgorithm(
                    {
                        "algorithm": "ec",
                        "parameters": keys.ECDomainParameters(name="named", value=SM2_CURVE_NAME),
                    }
                ),
                "private_key": ec,
            }
        )
        return bytes(pem.armor("PRIVATE KEY", info.dump()))

    def public_pem(self) -> bytes:
        return self.public_key().to_pem()


def generate() -> SM2PrivateKey:
    point, secret = gmssl_pyx.sm2_key_generate()
    return SM2PrivateKey(bytes(secret), bytes(point))


def private_key_from_pem(data: bytes) -> SM2PrivateKey:
    """The SM2 key in PKCS#8 or SEC1 ("EC PRIVATE KEY") PEM. Raises ConfigError for
    anything else, naming what was found."""
    try:
        kind, _, der = pem.unarmor(data)
        if kind == "EC PRIVATE KEY":
            ec = keys.ECPrivateKey.load(der)
            curve = ec["parameters"].native if ec["parameters"].native else None
        else:
            info = keys.PrivateKeyInfo.load(der)
            if info["private_key_algorithm"]["algorithm"].native != "ec":
                raise ConfigError("not an SM2 key")
            curve = info["private_key_algorithm"]["parameters"].chosen.native
            ec = info["private_key"].parsed
        secret_int = ec["private_key"].native
        public = ec["public_key"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"not an SM2 private key in PEM: {exc}") from exc
    if curve is not None and curve not in (SM2_CURVE_NAME, SM2_CURVE_OID):
        raise ConfigError(f"an EC key on curve {curve}, not SM2 ({SM2_CURVE_OID})")
    if not 0 < int(secret_int) < _ORDER - 1:
        raise ConfigError("the SM2 private key is out of the curve's range")
    secret = int(secret_int).to_bytes(32, "big")
    if public is None:
        raise ConfigError("the SM2 private key does not carry its public point")
    try:
        point = gmssl_pyx.normalize_sm2_public_key(bytes(public))
    except gmssl_pyx.InvalidValueError as exc:
        raise ConfigError(f"the SM2 key's public point is invalid: {exc}") from exc
    return SM2PrivateKey(secret, bytes(point))


def sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def verify(
    key: SM2PublicKey, data: bytes, signature: bytes, user_ids: tuple[bytes, ...] = ()
) -> bool:
    """Whether ``signature`` (DER) is an SM2-with-SM3 signature by ``key`` of ``data``
    or of its SM3 digest, under one of ``user_ids`` or the default id. Malformed input
    is False.

    The national SDKs sign the SM3 digest of what is signed, with the signer's handle
    as the user id (``user_ids``); GM/T 0009 proper signs the data with the default id.
    Those two forms are accepted, the SDKs' first: a forged signature costs two checks.
    (GmSSL reports each failed check on standard error, a few lines each.)"""
    try:
        point = gmssl_pyx.normalize_sm2_public_key(key.point)
    except gmssl_pyx.InvalidValueError:
        return False
    tries = [(sm3(data), u) for u in user_ids] + [(data, DEFAULT_USER_ID)]
    for message, user_id in tries:
        try:
            if gmssl_pyx.sm2_verify(point, message, signature, user_id):
                return True
        except gmssl_pyx.GmsslInnerError:
            return False
    return False


class _Ciphertext(core.Sequence):  # type: ignore[misc]  # asn1crypto has no types
    """SM2 ciphertext in DER (GM/T 0009): C1's coordinates, C3, C2."""

    _fields: ClassVar[list[tuple[str, type]]] = [
        ("x", core.Integer),
        ("y", core.Integer),
        ("hash", core.OctetString),
        ("ciphertext", core.OctetString),
    ]


def encrypt(key: SM2PublicKey, plaintext: bytes) -> bytes:
    """SM2 public-key encryption, C1C3C2 in DER (GM/T 0009)."""
    point = gmssl_pyx.normalize_sm2_public_key(key.point)
    return bytes(gmssl_pyx.sm2_encrypt(point, plaintext))


def encrypt_raw(key: SM2PublicKey, plaintext: bytes) -> bytes:
    """SM2 public-key encryption as the national SDKs decrypt it (BouncyCastle's
    engine): C1 (the uncompressed point, 65 bytes) || C3 (SM3, 32 bytes) || C2."""
    parsed = _Ciphertext.load(encrypt(key, plaintext))
    x, y = int(parsed["x"].native), int(parsed["y"].native)
    c1 = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    return c1 + bytes(parsed["hash"].native) + bytes(parsed["ciphertext"].native)


def decrypt(key: SM2PrivateKey, ciphertext: bytes) -> bytes:
    return bytes(gmssl_pyx.sm2_decrypt(key.secret, ciphertext))


def decrypt_raw(key: SM2PrivateKey, ciphertext: bytes) -> bytes:
    """The inverse of :func:`encrypt_raw`."""
    if len(ciphertext) < 65 + 32 + 1 or ciphertext[0] != 4:
        raise ValueError("not an SM2 ciphertext in C1C3C2 layout")
    der = _Ciphertext(
        {
            "x": int.from_bytes(ciphertext[1:33], "big"),
            "y": int.from_bytes(ciphertext[33:65], "big"),
            "hash": ciphertext[65:97],
            "ciphertext": ciphertext[97:],
        }
    ).dump()
    return decrypt(key, bytes(der))
