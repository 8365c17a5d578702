"""Authentication: who a challenge answer, a password or a client certificate proves.

An identity whose key is held here is checked here; one held by another node (an
enterprise's administrator at its parent's node, say) is checked through the upstream
resolver: a secret key by asking its home (opcode 201), which alone knows it, a public
key by resolving it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from idnode.auth.identity import check_answer, check_certificate_key, check_password
from idnode.errors import (
    AuthenticationError,
    AuthenticationFailed,
    HandleNotFound,
    IdnodeError,
    InvalidCredential,
    NotResponsible,
    ValuesNotFound,
)
from idnode.handle.messages import PROTOCOL_VERSION, ChallengeAnswer
from idnode.handle.values import ValueReference
from idnode.service.core import Caller, ServiceCore

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
        """The caller a challenge answer proves, or AuthenticationFailed/InvalidCredential."""
        identity = ValueReference(answer.identity_handle, answer.identity_index)
        values = self._core.values_of(answer.identity_handle)
        if values is None and self._core.upstream is not None:
            return Caller(self._identity_elsewhere(identity, answer, nonce, digest), origin)
        proven = check_answer(
            values, identity, answer.auth_type, answer.signed_response, nonce, digest, version
        )
        return Caller(proven, origin)

    def _identity_elsewhere(
        self, identity: ValueReference, answer: ChallengeAnswer, nonce: bytes, digest: bytes
    ) -> ValueReference:
        """An identity whose handle another node holds. One nobody holds is
        InvalidCredential; one whose home cannot be asked, AuthenticationError."""
        upstream = self._core.upstream
        assert upstream is not None
        who = f"{identity.index}:{identity.handle}"
        signed = answer.signed_response
        secret = answer.auth_type.upper() == "HS_SECKEY"
        try:
            if secret:
                valid = upstream.verify_challenge(identity, nonce, digest, signed)
            else:
                record = upstream.resolve(identity.handle, (identity.index,))
        except AuthenticationError:
            raise
        except (HandleNotFound, ValuesNotFound, NotResponsible, InvalidCredential) as exc:
            raise InvalidCredential(f"no identity {who}: {exc.message}") from exc
        except IdnodeError as exc:
            raise AuthenticationError(f"cannot check {who} at its home: {exc.message}") from exc
        if secret:
            if not valid:
                raise AuthenticationFailed(f"{who}'s home server says the answer does not prove it")
            return identity
        return check_answer(
            record.values, identity, answer.auth_type, signed, nonce, digest, PROTOCOL_VERSION
        )

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
