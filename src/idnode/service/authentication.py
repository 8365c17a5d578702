"""Authentication: who a challenge answer, a password or a client certificate proves.

An identity whose key is held here is checked here; one held by another node (an
enterprise's administrator at its parent's node, say) is checked through the upstream
resolver: a secret key by asking its home (opcode 201), which alone knows it, a public
key by resolving it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import jwt
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from idnode.auth.identity import (
    check_answer,
    check_certificate_key,
    check_password,
    public_key_of,
)
from idnode.domain import HandleRecord
from idnode.errors import (
    AuthenticationError,
    AuthenticationFailed,
    AuthenticationTimeout,
    HandleNotFound,
    IdnodeError,
    InvalidCredential,
    NotResponsible,
    ValuesNotFound,
)
from idnode.handle.messages import PROTOCOL_VERSION, ChallengeAnswer
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import RSAPublicKey
from idnode.service.core import Caller, ServiceCore, Upstream

__all__ = ["Authentication"]


class Authentication:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def authenticate_answer(
        self,
        answer: ChallengeAnswer,
        nonce: bytes,
        digest: bytes,
        version: tuple[int, int],
        origin: str,
    ) -> Caller:
        """The caller a challenge answer proves, or AuthenticationFailed/InvalidCredential
        (blocking while the home of an identity held elsewhere is asked)."""
        caller = self.answer_held_here(answer, nonce, digest, version, origin)
        if caller is None:
            return self.answer_held_elsewhere(answer, nonce, digest, origin)
        return caller

    def answer_held_here(
        self,
        answer: ChallengeAnswer,
        nonce: bytes,
        digest: bytes,
        version: tuple[int, int],
        origin: str,
    ) -> Caller | None:
        """:meth:`authenticate_answer` for an identity held here; None for one held
        elsewhere that the upstream resolver can ask about (:meth:`answer_held_elsewhere`)."""
        identity = ValueReference(answer.identity_handle, answer.identity_index)
        values = self._core.values_of(answer.identity_handle)
        if values is None and self._core.upstream is not None:
            return None
        proven = check_answer(
            values, identity, answer.auth_type, answer.signed_response, nonce, digest, version
        )
        return Caller(proven, origin)

    def answer_held_elsewhere(
        self, answer: ChallengeAnswer, nonce: bytes, digest: bytes, origin: str
    ) -> Caller:
        """An identity whose handle another node holds (an enterprise's administrator
        at its parent's node, say): a secret key is checked by asking that node
        (opcode 201), which alone knows it; a public key is resolved and checked here.
        An identity nobody holds is InvalidCredential; one whose home cannot be asked,
        AuthenticationError."""
        upstream = self._upstream()
        identity = ValueReference(answer.identity_handle, answer.identity_index)
        found: bool | HandleRecord
        with _asking_home(identity):
            if _secret(answer):
                found = upstream.verify_challenge(identity, nonce, digest, answer.signed_response)
            else:
                found = upstream.resolve(identity.handle, (identity.index,))
        return Caller(_proven_elsewhere(identity, answer, found, nonce, digest), origin)

    async def answer_held_elsewhere_async(
        self, answer: ChallengeAnswer, nonce: bytes, digest: bytes, origin: str
    ) -> Caller:
        """:meth:`answer_held_elsewhere` on an event loop, which goes on serving meanwhile."""
        upstream = self._upstream()
        identity = ValueReference(answer.identity_handle, answer.identity_index)
        found: bool | HandleRecord
        with _asking_home(identity):
            if _secret(answer):
                signed = answer.signed_response
                found = await upstream.verify_challenge_async(identity, nonce, digest, signed)
            else:
                found = await upstream.resolve_async(identity.handle, (identity.index,))
        return Caller(_proven_elsewhere(identity, answer, found, nonce, digest), origin)

    # -- IDIS identity tokens (a JWT after a resolution request's type list) ----------

    #: How far a token's timestamp may be from now, either way, in seconds.
    TOKEN_LIFETIME = 300.0

    def token_held_here(self, token: bytes, origin: str) -> Caller | None:
        """The caller an IDIS identity token names, checked against the RSA key of the
        identity it claims (RS256, as the SDKs sign it); None when that identity is
        held elsewhere and the upstream resolver can fetch its key
        (:meth:`token_held_elsewhere`). AuthenticationFailed for a token that does not
        check, AuthenticationTimeout for one too old (or from the future),
        InvalidCredential when the identity has no such key."""
        identity = _token_identity(token)
        values = self._core.values_of(identity.handle)
        if values is None and self._core.upstream is not None:
            return None
        return Caller(self._checked_token(token, identity, values), origin)

    def token_held_elsewhere(self, token: bytes, origin: str) -> Caller:
        identity = _token_identity(token)
        with _asking_home(identity):
            record = self._upstream().resolve(identity.handle, (identity.index,))
        return Caller(self._checked_token(token, identity, record.values), origin)

    async def token_held_elsewhere_async(self, token: bytes, origin: str) -> Caller:
        identity = _token_identity(token)
        with _asking_home(identity):
            record = await self._upstream().resolve_async(identity.handle, (identity.index,))
        return Caller(self._checked_token(token, identity, record.values), origin)

    def _checked_token(
        self, token: bytes, identity: ValueReference, values: Sequence[HandleValue] | None
    ) -> ValueReference:
        who = f"{identity.index}:{identity.handle}"
        key = _rsa_key(values, identity)
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"])
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(
                f"the identity token of {who} does not check: {exc}"
            ) from exc
        try:
            issued = float(claims["timestamp"]) / 1000  # the SDKs put milliseconds there
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise AuthenticationFailed(f"the identity token of {who} has no timestamp") from exc
        if not math.isfinite(issued):  # NaN compares false with everything: never expired
            raise AuthenticationFailed(f"the identity token of {who} has no usable timestamp")
        if abs(self._core.wall_clock() - issued) > self.TOKEN_LIFETIME:
            raise AuthenticationTimeout(f"the identity token of {who} has expired")
        return identity

    def _upstream(self) -> Upstream:
        upstream = self._core.upstream
        if upstream is None:
            raise AuthenticationError("identities held elsewhere cannot be checked here")
        return upstream

    def verify_challenge(
        self,
        identity: ValueReference,
        nonce: bytes,
        digest: bytes,
        answer: bytes,
        version: tuple[int, int],
    ) -> bool:
        """Opcode 201: whether ``answer`` proves the secret key of ``identity``, held
        here, for another server that challenged a client claiming it (and has only
        the client's word). HandleNotFound if the identity's handle is not held here;
        InvalidCredential if it holds no secret key at that index."""
        values = self._core.values_of(identity.handle)
        if values is None:
            raise HandleNotFound(f"{identity.handle} is not held here")
        try:
            check_answer(values, identity, "HS_SECKEY", answer, nonce, digest, version)
        except AuthenticationFailed:
            return False
        return True

    def authenticate_password(
        self, identity: ValueReference, password: bytes, origin: str
    ) -> Caller:
        """HTTP Basic: the caller whose secret key is ``password``."""
        values = self._core.values_of(identity.handle)
        return Caller(check_password(values, identity, password), origin)

    def authenticate_certificate(
        self,
        identity: ValueReference,
        key: rsa.RSAPublicKey | dsa.DSAPublicKey,
        origin: str,
    ) -> Caller:
        """A verified TLS client certificate naming ``identity`` and holding ``key``."""
        proven = check_certificate_key(self._core.values_of(identity.handle), identity, key)
        return Caller(proven, origin)


def _secret(answer: ChallengeAnswer) -> bool:
    return answer.auth_type.upper() == "HS_SECKEY"


@contextmanager
def _asking_home(identity: ValueReference) -> Iterator[None]:
    """What asking an identity's home may fail with, as authentication errors."""
    who = f"{identity.index}:{identity.handle}"
    try:
        yield
    except AuthenticationError:
        raise
    except (HandleNotFound, ValuesNotFound, NotResponsible, InvalidCredential) as exc:
        raise InvalidCredential(f"no identity {who}: {exc.message}") from exc
    except IdnodeError as exc:
        raise AuthenticationError(f"cannot check {who} at its home: {exc.message}") from exc


def _proven_elsewhere(
    identity: ValueReference,
    answer: ChallengeAnswer,
    found: bool | HandleRecord,
    nonce: bytes,
    digest: bytes,
) -> ValueReference:
    """The identity, if what its home said (``found``: the verdict on a secret key, or
    the record holding a public key) proves it."""
    if isinstance(found, bool):
        if not found:
            who = f"{identity.index}:{identity.handle}"
            raise AuthenticationFailed(f"{who}'s home server says the answer does not prove it")
        return identity
    return check_answer(
        found.values,
        identity,
        answer.auth_type,
        answer.signed_response,
        nonce,
        digest,
        PROTOCOL_VERSION,
    )


def _token_identity(token: bytes) -> ValueReference:
    """The identity a token claims (read before its signature is checked, to find the
    key that checks it)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return ValueReference(str(claims["user_handle"]), int(claims["user_index"]))
    except (jwt.PyJWTError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise AuthenticationFailed(
            "the identity token is not a JWT naming user_handle and user_index"
        ) from exc


def _rsa_key(values: Sequence[HandleValue] | None, identity: ValueReference) -> rsa.RSAPublicKey:
    who = f"{identity.index}:{identity.handle}"
    key = public_key_of(values, identity)
    if not isinstance(key, RSAPublicKey):
        raise InvalidCredential(f"{who} is not an RSA key; identity tokens are RS256")
    try:
        return rsa.RSAPublicNumbers(key.exponent, key.modulus).public_key()
    except ValueError as exc:
        raise InvalidCredential(f"{who} holds no usable RSA key: {exc}") from exc
