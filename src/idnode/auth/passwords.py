"""Password hashes for accounts: scrypt, salted, in one self-describing string.

scrypt because it is slow and memory-hard by design and in the standard library
(``hashlib.scrypt``, OpenSSL's). The stored form names its parameters, so they can
be raised later without invalidating existing hashes::

    scrypt$<log2 N>$<r>$<p>$<salt, base64>$<hash, base64>

The SNMS login ``/identity/token/v1`` sends ``sha256(sha256(password) + date)``, so a
node can check it only if it keeps ``sha256(password)``: an unsalted, fast hash, as
good as the password for that login and open to guessing if the database leaks. It
is kept only for accounts created to log in that way, after the scrypt hash::

    scrypt$...|sha256$<hex>
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

__all__ = ["check_date_digest", "check_password", "date_digest", "hash_password"]

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


def hash_password(password: str, *, keep_sha256: bool = False) -> str:
    """The stored form of ``password``; with ``keep_sha256`` it also serves SNMS's
    date-digest login (see above)."""
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password, salt, _LOG2_N, _R, _P)
    encode = base64.b64encode
    stored = f"scrypt${_LOG2_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"
    if keep_sha256:
        stored += f"{_SHA256_MARK}{_sha256_hex(password)}"
    return stored


_SHA256_MARK = "|sha256$"


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def date_digest(password: str, day: str) -> str:
    """What an SNMS client sends to ``/identity/token/v1`` on ``day`` (YYYY-MM-DD)."""
    return _sha256_hex(_sha256_hex(password) + day)


def check_date_digest(digest: str, stored: str | None, days: tuple[str, ...]) -> bool:
    """Whether ``digest`` is :func:`date_digest` of the password ``stored`` keeps the
    SHA-256 of, for one of ``days``; False for accounts that keep none."""
    kept = (stored or "").partition(_SHA256_MARK)[2]
    if len(kept) != 64:
        return False
    given = digest.strip().lower().encode("ascii", "replace")
    found = False
    for day in days:
        found |= hmac.compare_digest(_sha256_hex(kept + day).encode(), given)
    return found


@functools.cache
def _nobody() -> str:
    """Checked when an account does not exist, so that a wrong name costs what a
    wrong password does and timing does not tell which names exist. Made on first
    use: every CLI run would pay for it at import."""
    return hash_password(os.urandom(16).hex())


def check_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; for None (no such account)
    the same work is done and the answer is False."""
    target = (_nobody() if stored is None else stored).partition(_SHA256_MARK)[0]
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
