"""Proving an identity against the key value it names (HS_SECKEY or HS_PUBKEY)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from idnode.auth.signatures import check_private_key_answer, check_secret_answer
from idnode.errors import AuthenticationFailed, InvalidCredential
from idnode.handle.values import HandleValue, ValueReference

__all__ = ["KEY_TYPES", "check_answer", "check_password"]

KEY_TYPES = ("HS_SECKEY", "HS_PUBKEY")


def _key_value(values: Sequence[HandleValue] | None, identity: ValueReference) -> HandleValue:
    who = f"{identity.index}:{identity.handle}"
    if values is None:
        raise InvalidCredential(f"identity handle {identity.handle} is not on this node")
    for value in values:
        if value.index == identity.index:
            if value.type.upper() not in KEY_TYPES:
                raise InvalidCredential(f"{who} is a {value.type} value, not a key")
            return value
    raise InvalidCredential(f"{who}: no value at that index")


def check_answer(
    values: Sequence[HandleValue] | None,
    identity: ValueReference,
    auth_type: str,
    answer: bytes,
    nonce: bytes,
    digest: bytes,
    version: tuple[int, int],
) -> None:
    """Raise unless ``answer`` signs nonce + digest with the identity's key."""
    key = _key_value(values, identity)
    if key.type.upper() != auth_type.upper():
        raise InvalidCredential(
            f"{identity.index}:{identity.handle} holds {key.type}, the answer used {auth_type}"
        )
    if key.type.upper() == "HS_SECKEY":
        ok = check_secret_answer(key.data, nonce, digest, answer, version)
    else:
        ok = check_private_key_answer(key.data, nonce, digest, answer)
    if not ok:
        raise AuthenticationFailed(f"the answer does not prove {identity.index}:{identity.handle}")


def check_password(
    values: Sequence[HandleValue] | None, identity: ValueReference, password: bytes
) -> None:
    """HTTP Basic: the password must be the identity's secret key."""
    key = _key_value(values, identity)
    if key.type.upper() != "HS_SECKEY":
        raise InvalidCredential(
            f"{identity.index}:{identity.handle} is a public key; use a client certificate"
            " or challenge-response, not a password"
        )
    if not hmac.compare_digest(key.data, password):
        raise AuthenticationFailed(f"wrong secret key for {identity.index}:{identity.handle}")
