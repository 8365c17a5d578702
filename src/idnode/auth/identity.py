"""Proving an identity against the key value it names (HS_SECKEY or HS_PUBKEY).

An identity is ``index:handle``. Index 0 means "any key value of the handle" (as
Handle.Net treats it); the checks then return the index of the value that proved it,
so permissions and the audit log name a real key.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from idnode.auth.signatures import check_private_key_answer, check_secret_answer
from idnode.errors import AuthenticationFailed, InvalidCredential, RemoteProtocolError
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import DSAPublicKey, PublicKey, RSAPublicKey, parse_public_key
from idnode.keys import hashed_secret

__all__ = [
    "KEY_TYPES",
    "check_answer",
    "check_certificate_key",
    "check_password",
    "public_key_of",
]

KEY_TYPES = ("HS_SECKEY", "HS_PUBKEY")


def _key_values(
    values: Sequence[HandleValue] | None, identity: ValueReference, key_type: str
) -> list[HandleValue]:
    """The values that may prove ``identity`` with a key of ``key_type``."""
    who = f"{identity.index}:{identity.handle}"
    if values is None:
        raise InvalidCredential(f"identity handle {identity.handle} is not on this node")
    if identity.index == 0:
        keys = [v for v in values if v.type.upper() == key_type]
        if not keys:
            raise InvalidCredential(f"{identity.handle} has no {key_type} value")
        return sorted(keys, key=lambda v: v.index)
    for value in values:
        if value.index == identity.index:
            if value.type.upper() not in KEY_TYPES:
                raise InvalidCredential(f"{who} is a {value.type} value, not a key")
            if value.type.upper() != key_type:
                raise InvalidCredential(f"{who} holds {value.type}, the caller used {key_type}")
            return [value]
    raise InvalidCredential(f"{who}: no value at that index")


def public_key_of(values: Sequence[HandleValue] | None, identity: ValueReference) -> PublicKey:
    """The public key ``identity`` names (index 0: its handle's first HS_PUBKEY), to
    check a token with or to encrypt a session key for; InvalidCredential if the
    handle is not held here or holds no usable key there."""
    who = f"{identity.index}:{identity.handle}"
    if values is None:
        raise InvalidCredential(f"no identity {who}: its handle is not held here")
    for value in _key_values(values, identity, "HS_PUBKEY"):
        try:
            return parse_public_key(value.data)
        except RemoteProtocolError as exc:
            raise InvalidCredential(f"{who} holds no usable public key: {exc.message}") from exc
    raise InvalidCredential(f"no identity {who}: no HS_PUBKEY value at that index")


def check_answer(
    values: Sequence[HandleValue] | None,
    identity: ValueReference,
    auth_type: str,
    answer: bytes,
    nonce: bytes,
    digest: bytes,
    version: tuple[int, int],
) -> ValueReference:
    """The key value whose key signed nonce + digest in ``answer``, or raise."""
    for key in _key_values(values, identity, auth_type.upper()):
        if key.type.upper() == "HS_SECKEY":
            ok = check_secret_answer(key.data, nonce, digest, answer, version)
        else:
            # An SM2 signer id is the identity's handle for some clients.
            user_ids = (identity.handle.encode(),)
            ok = check_private_key_answer(key.data, nonce, digest, answer, user_ids)
        if ok:
            return ValueReference(identity.handle, key.index)
    raise AuthenticationFailed(f"the answer does not prove {identity.index}:{identity.handle}")


def check_password(
    values: Sequence[HandleValue] | None, identity: ValueReference, password: bytes
) -> ValueReference:
    """HTTP Basic: the password must be the identity's secret key, or the passphrase
    whose hash it holds (Handle.Net's hashed secret keys)."""
    try:
        keys = _key_values(values, identity, "HS_SECKEY")
    except InvalidCredential:
        if values is not None and any(
            v.index == identity.index and v.type.upper() == "HS_PUBKEY" for v in values
        ):
            raise InvalidCredential(
                f"{identity.index}:{identity.handle} is a public key; use a client certificate"
                " or a session (Authorization: Handle), not a password"
            ) from None
        raise
    hashed = hashed_secret(password)
    for key in keys:
        # Both compared, always: which one matched must not show in the timing.
        plain = hmac.compare_digest(key.data, password)
        if hmac.compare_digest(key.data, hashed) | plain:
            return ValueReference(identity.handle, key.index)
    raise AuthenticationFailed(f"wrong secret key for {identity.index}:{identity.handle}")


def check_certificate_key(
    values: Sequence[HandleValue] | None,
    identity: ValueReference,
    key: rsa.RSAPublicKey | dsa.DSAPublicKey,
) -> ValueReference:
    """A TLS client certificate proves ``identity`` if its key is one of its HS_PUBKEYs.

    The TLS layer has already checked that the client holds the certificate's private
    key; what remains is that the key is the identity's own.
    """
    for value in _key_values(values, identity, "HS_PUBKEY"):
        try:
            stored = parse_public_key(value.data)
        except RemoteProtocolError:
            continue
        if _same_key(stored, key):
            return ValueReference(identity.handle, value.index)
    raise AuthenticationFailed(
        f"the certificate's key is not a public key of {identity.index}:{identity.handle}"
    )


def _same_key(stored: PublicKey, key: rsa.RSAPublicKey | dsa.DSAPublicKey) -> bool:
    if isinstance(key, rsa.RSAPublicKey):
        n = key.public_numbers()
        return isinstance(stored, RSAPublicKey) and (stored.exponent, stored.modulus) == (
            n.e,
            n.n,
        )
    d = key.public_numbers()
    params = d.parameter_numbers
    return stored == DSAPublicKey(params.q, params.p, params.g, d.y)
