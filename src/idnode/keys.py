"""Key pairs for a node's server and administrator, in PEM files and Handle encoding.

Private keys are written with mode 0600 and never logged; only their public halves
go into handle values (HS_PUBKEY) and the site record. Two kinds: RSA (the default,
what every Handle client verifies) and SM2 (the national algorithm, for nodes whose
clients require it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from idnode import sm2
from idnode.errors import ConfigError, RemoteProtocolError
from idnode.handle.valuetypes import RSAPublicKey, SM2PublicKey, parse_public_key

__all__ = [
    "KEY_TYPES",
    "KeyType",
    "PrivateKey",
    "generate_key",
    "handle_public_key",
    "hashed_secret",
    "load_private_key",
    "load_public_key",
    "write_public_key",
]

KEY_BITS = 2048
KeyType = Literal["rsa", "sm2"]
KEY_TYPES: tuple[KeyType, ...] = ("rsa", "sm2")
PrivateKey = rsa.RSAPrivateKey | sm2.SM2PrivateKey


def hashed_secret(passphrase: bytes) -> bytes:
    """The secret key a passphrase stands for, as Handle.Net hashes it: the lower-case
    hex of its SHA-1.

    An HS_SECKEY value holding this keeps the passphrase itself off the server. It
    does not make the stored value useless to a thief: the protocol's challenge
    answers are keyed with the stored bytes, so whoever holds them can answer, as with
    any secret key. What hashing protects is the passphrase, which people reuse.
    """
    return hashlib.sha1(passphrase).hexdigest().encode()  # noqa: S324 - the protocol's


def generate_key(path: Path, key_type: KeyType = "rsa") -> PrivateKey:
    """Create a key pair and write the private key as unencrypted PKCS#8 PEM, 0600."""
    key: PrivateKey
    if key_type == "sm2":
        key = sm2.generate()
        pem = key.to_pem()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    return key


def load_private_key(path: Path) -> PrivateKey:
    """An RSA or SM2 private key from a PEM file (PKCS#8, or the traditional forms)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read private key {path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except UnsupportedAlgorithm:
        # The SM2 curve: OpenSSL reads it, the cryptography package does not.
        try:
            return sm2.private_key_from_pem(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read private key {path}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{path} holds neither an RSA nor an SM2 private key")
    return key


def handle_public_key(key: PrivateKey) -> RSAPublicKey | SM2PublicKey:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.public_key()
    numbers = key.public_key().public_numbers()
    return RSAPublicKey(exponent=numbers.e, modulus=numbers.n)


def write_public_key(path: Path, key: PrivateKey) -> None:
    """The public half as a PEM file, to hand to whoever must recognise the key (the
    parent node delegating this node's prefix)."""
    if isinstance(key, sm2.SM2PrivateKey):
        path.write_bytes(key.public_pem())
        return
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_public_key(path: Path) -> RSAPublicKey | SM2PublicKey:
    """An RSA or SM2 public key from a PEM file, in Handle encoding. Private keys are
    refused: the file is meant to come from somebody else, who should keep theirs."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read public key {path}: {exc}") from exc
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{path} holds a private key; give the public half only")
    try:
        key = parse_public_key(data)
    except RemoteProtocolError as exc:
        raise ConfigError(f"{path} is not a PEM public key: {exc.message}") from exc
    if not isinstance(key, RSAPublicKey | SM2PublicKey):
        raise ConfigError(f"{path} holds neither an RSA nor an SM2 public key")
    # Stored in Handle's binary layout, which every Handle client reads.
    if isinstance(key, RSAPublicKey):
        return RSAPublicKey(key.exponent, key.modulus)
    return SM2PublicKey(key.point)
