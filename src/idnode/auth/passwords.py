"""Password hashes for accounts: scrypt, salted, in one self-describing string.

scrypt because it is slow and memory-hard by design and in the standard library
(``hashlib.scrypt``, OpenSSL's). The stored form names its parameters, so they can
be raised later without invalidating existing hashes::

    scrypt$<log2 N>$<r>$<p>$<salt, base64>$<hash, base64>
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

__all__ = ["check_password", "hash_password"]

_LOG2_N, _R, _P = 14, 8, 1  # 16 MiB and some tens of milliseconds per check
_SALT_BYTES, _HASH_BYTES = 16, 32
# What a stored hash may ask for: bounds on the work one check can cost.
_MAX_LOG2_N, _MAX_R, _MAX_P = 20, 16, 4


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 * r * (n + p + 2),
        dklen=_HASH_BYTES,
    )


def hash_password(password: str) -> str:
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password, salt, _LOG2_N, _R, _P)
    encode = base64.b64encode
    return f"scrypt${_LOG2_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


@functools.cache
def _nobody() -> str:
    """Checked when an account does not exist, so that a wrong name costs what a
    wrong password does and timing does not tell which names exist. Made on first
    use: every CLI run would pay for it at import."""
    return hash_password(os.urandom(16).hex())


def check_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; for None (no such account)
    the same work is done and the answer is False."""
    target = _nobody() if stored is None else stored
    try:
        scheme, log2_n, r, p, salt, digest = target.split("$")
        params = int(log2_n), int(r), int(p)
        expected = base64.b64decode(digest, validate=True)
        salt_bytes = base64.b64decode(salt, validate=True)
    except ValueError:
        return False
    if scheme != "scrypt" or not (
        0 < params[0] <= _MAX_LOG2_N and 0 < params[1] <= _MAX_R and 0 < params[2] <= _MAX_P
    ):
        return False
    found = _scrypt(password, salt_bytes, *params)
    return hmac.compare_digest(found, expected) and stored is not None
