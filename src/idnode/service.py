"""The service layer: what a node does, whichever front end asked.

The Handle UDP/TCP servers, the HTTP API and the CLI all call these methods and turn
their results or :mod:`idnode.errors` exceptions into their own wire formats. Nothing
else talks to storage.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from idnode import edits, history
from idnode.auth import replay
from idnode.auth.challenges import NONCE_SIZE
from idnode.auth.identity import check_answer, check_certificate_key, check_password
from idnode.auth.permissions import Authorizer, admin_values
from idnode.auth.session_keys import server_agreement
from idnode.domain import (
    ALL_WRITES,
    AuditContext,
    AuditEntry,
    AuditQuery,
    HandleRecord,
    SearchQuery,
    StoredSession,
)
from idnode.errors import (
    AuthenticationError,
    AuthenticationFailed,
    AuthenticationNeeded,
    HandleAlreadyExists,
    HandleNotFound,
    IdnodeError,
    InvalidCredential,
    InvalidValue,
    NoSuchResource,
    NotResponsible,
    Referral,
    SessionFailed,
    SessionMessageRejected,
    SessionTimeout,
    ValuesNotFound,
)
from idnode.gs1 import GS1Key
from idnode.handle.encoded import EncodedValues
from idnode.handle.messages import (
    PROTOCOL_VERSION,
    ChallengeAnswer,
    KeyExchange,
    SessionSetupRequest,
)
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, ServiceHandle, SiteInfo
from idnode.history import Version
from idnode.names import (
    NA_PREFIX,
    handle_key,
    prefix_chain,
    split_handle,
    validate_handle,
    validate_prefix,
)
from idnode.sites import HASH_OPTIONS, SITE_TYPES, Share
from idnode.stats import ReportedRow, StatsRecorder, StatsRow
from idnode.storage.base import Storage
from idnode.storage.staging import Staging
from idnode.templates import BUILTIN, TEMPLATE_INDEX, TEMPLATE_TYPE, Template

# Ids of Handle protocol sessions in the sessions table.
_HANDLE_SESSION = "handle:"

__all__ = [
    "ADMIN_VALUE_INDEX",
    "ANONYMOUS",
    "BulkResult",
    "Caller",
    "NodeService",
    "StagedLoad",
    "Upstream",
]

# Prefix handles (0.NA/<prefix>) live with the prefix they describe, or with a parent
# prefix that delegates it (0.NA/88.100 at the node homing 88).
# Values of a delegation (a prefix handle held by the parent) that say where to go.
_REFERRAL_TYPES = frozenset((*SITE_TYPES, ServiceHandle.TYPE))
_HASH_NAMES = {option: name for name, option in HASH_OPTIONS.items()}
#: Templates are stored as records of this reserved prefix (never homed, so never
#: resolvable from outside), one per name, a value per version.
TEMPLATE_PREFIX = "0.TPL"
TEMPLATE_DEFINITION = "TEMPLATE.DEFINITION"
#: Where a prefix handle's HS_ADMIN value goes (Handle.Net's convention).
ADMIN_VALUE_INDEX = 100


class Upstream(Protocol):
    """Resolves handles this node does not hold (a :class:`idnode.resolver.Resolver`)."""

    def resolve(
        self, handle: str, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord: ...

    def verify_challenge(
        self, identity: ValueReference, nonce: bytes, digest: bytes, answer: bytes
    ) -> bool:
        """Ask the home of ``identity``'s secret key (opcode 201) about ``answer``."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, and from where (for the audit log).

    ``identity`` is the key value the caller proved it holds, ``index:handle``; None
    for anonymous callers.
    """

    identity: ValueReference | None = None
    origin: str = "local"

    @property
    def authenticated(self) -> bool:
        return self.identity is not None

    @property
    def actor(self) -> str:
        if self.identity is None:
            return "anonymous"
        return f"{self.identity.index}:{self.identity.handle}"


ANONYMOUS = Caller()


@dataclass
class BulkResult:
    """What a bulk registration did (or, checked only, would do) with its records."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0  #: stored already with the same values (timestamps aside)
    skipped: int = 0  #: stored already with other values, and not to be replaced
    elsewhere: int = 0  #: another server's share of this site

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.skipped + self.elsewhere


@dataclass
class StagedLoad:
    """Records set aside by :meth:`NodeService.stage_many`, waiting to be written:
    their spans in the staging area, each with how many of its records are under
    each prefix (by key), for the statistics."""

    staging: Staging
    spans: list[tuple[range, Counter[str]]] = dataclasses.field(default_factory=list)
    elsewhere: int = 0  #: another server's share of this site, not staged

    def close(self) -> None:
        self.staging.close()

    def __enter__(self) -> StagedLoad:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NodeService:
    """Resolution and record management over one storage backend.

    ``clock`` returns monotonic seconds; tests pass their own to step time. ``share``
    is this server's part of a site whose servers divide the handles; None: all.
    """

    # How long the set of homed prefixes is trusted before it is read again, so that a
    # prefix homed by another process (another worker, the CLI) is served without a
    # restart.
    HOMED_REFRESH_SECONDS = 5.0
    # An HTTP session lasts this long from when it was opened; authenticating does not
    # extend it.
    SESSION_SECONDS = 3600.0
    # A Handle protocol session lasts what its client asks, at most this long (the
    # deployed default), from when it was set up.
    HANDLE_SESSION_SECONDS = 86_400.0

    def __init__(
        self,
        storage: Storage,
        site: SiteInfo,
        clock: Callable[[], float] = time.monotonic,
        stats: StatsRecorder | None = None,
        admins: Sequence[ValueReference] = (),
        wall_clock: Callable[[], float] = time.time,
        upstream: Upstream | None = None,
        recursive: bool = False,
        share: Share | None = None,
    ) -> None:
        self._storage = storage
        self._share = share
        self._upstream = upstream
        self._recursive = recursive and upstream is not None
        self._site = site
        self._clock = clock
        self._wall_clock = wall_clock
        self._stats = stats or StatsRecorder()
        self._authorizer = Authorizer(self._values_of, admins)
        self._homed: frozenset[str] = frozenset()
        self._homed_read_at = float("-inf")

    # -- reads ---------------------------------------------------------------

    def resolve(
        self,
        handle: str,
        *,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        caller: Caller = ANONYMOUS,
        public_only: bool = True,
        recursive: bool = False,
    ) -> HandleRecord:
        """The handle's values the caller may read, filtered by index and type.

        A handle this node does not hold is referred (Referral: the delegation it
        holds for the handle's prefix), or resolved through the upstream resolver on a
        recursive node, or when ``recursive`` asks for it and the node has one.

        A value is kept when its index is listed or its type matches a listed type
        (a type ending in "." selects its subtypes); no lists means all values. Values
        without PUBLIC_READ are left out unless ``public_only`` is False and the caller
        has READ_VALUE; an anonymous caller asking for them (when the answer would hold
        any) gets AuthenticationNeeded, which front ends turn into a challenge.
        Raises InvalidHandle, NotResponsible, Referral, HandleNotFound or ValuesNotFound.
        """
        try:
            prefix_key = self._responsible_prefix(handle)
        except NotResponsible:
            if self._upstream is not None and (recursive or self._recursive):
                return self._resolve_upstream(handle, indexes, types)
            referral = self._referral(handle)
            if referral is None:
                raise
            raise referral from None
        record = self._storage.get(handle)
        if record is None:
            self._stats.not_found(prefix_key)
            raise self._referral(handle) or HandleNotFound(f"handle {handle} not found")
        encoded = EncodedValues.of(record.values)
        wanted = frozenset(indexes)
        values = encoded.select(public_only=True, indexes=wanted, types=types)
        if not public_only:
            everything = encoded.select(public_only=False, indexes=wanted, types=types)
            if len(everything) > len(values):
                if caller.identity is None:
                    raise AuthenticationNeeded(
                        f"{handle} has values that are not public; authenticate to read them"
                    )
                granted = self._authorizer.permissions(caller.identity, self._governing(record))
                if granted & AdminPermission.READ_VALUE:
                    # Values without ADMIN_READ are the owner's (a template's "owner"
                    # access): shown only to those who may modify values too.
                    owner = granted & AdminPermission.MODIFY_VALUE
                    values = (
                        everything
                        if owner
                        else encoded.select(
                            public_only=False, indexes=wanted, types=types, admin_read=True
                        )
                    )
        if not values and (indexes or types):
            # Asked for values that are not there (or not visible). With no filter an
            # existing handle is answered even when none of its values is public, as
            # Handle.Net does: clients probe identities' key handles that way.
            self._stats.not_found(prefix_key)
            raise ValuesNotFound(f"handle {handle} has no values matching the request")
        self._stats.resolved(prefix_key)
        return HandleRecord(record.handle, values)

    def resolve_gs1(self, key: GS1Key, prefix: str) -> list[list[HandleValue]]:
        """The public values of each record under ``prefix`` for ``key`` and its less
        specific keys (a serial number's, its batch's, its product's), the most
        specific first, each in index order: what the entity inherits from the levels
        above it. HandleNotFound when none has a record."""
        found: list[list[HandleValue]] = []
        for candidate in key.candidates():
            handle = candidate.identifier(prefix)
            if self._storage.get(handle) is not None:
                found.append(sorted(self.resolve(handle).values, key=lambda v: v.index))
        if not found:
            self._stats.not_found(handle_key(prefix))
            raise HandleNotFound(f"nothing is known here about {key.path}")
        return found

    def _resolve_upstream(
        self, handle: str, indexes: Sequence[int], types: Sequence[str]
    ) -> HandleRecord:
        assert self._upstream is not None
        prefix_key = handle_key(split_handle(handle)[0])
        try:
            record = self._upstream.resolve(handle, indexes, types)
        except (HandleNotFound, ValuesNotFound):
            self._stats.not_found(prefix_key)
            raise
        self._stats.resolved(prefix_key)
        return record

    def _referral(self, handle: str) -> Referral | None:
        """The delegation this node holds for the handle's prefix, nearest first.

        None when the search reaches a prefix homed here (then this node is the
        authority and the handle does not exist) or finds nothing.
        """
        prefix, suffix = split_handle(handle)
        # For 0.NA/88.100.1 the record itself was not found: look at its parents.
        chain = (
            prefix_chain(suffix)[1:] if handle_key(prefix) == NA_PREFIX else prefix_chain(prefix)
        )
        for name in chain:
            if handle_key(name) in self._homed:
                return None
            delegation = self._storage.get(f"{NA_PREFIX}/{name}")
            if delegation is None:
                continue
            where = [
                v
                for v in delegation.values
                if v.type in _REFERRAL_TYPES and v.permissions & Permission.PUBLIC_READ
            ]
            if where:
                return Referral(
                    f"{handle} is not held here; ask the site of {delegation.handle}",
                    delegation.handle,
                    where,
                )
        return None

    def search(self, query: SearchQuery) -> list[str]:
        """Handles whose public values match ``query`` (values that are not public are
        never indexed, so anyone may search)."""
        return self._storage.search(query)

    def site_info(self) -> SiteInfo:
        return self._site

    def homed_prefixes(self) -> list[str]:
        return self._storage.homed_prefixes()

    def count(self, prefix: str | None = None) -> int:
        return self._storage.count(prefix)

    def export_records(self, prefix: str | None = None) -> Iterator[HandleRecord]:
        return self._storage.iter_records(prefix)

    # -- authentication --------------------------------------------------------

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
        values = self._values_of(answer.identity_handle)
        if values is None and self._upstream is not None:
            return Caller(self._identity_elsewhere(identity, answer, nonce, digest), origin)
        proven = check_answer(
            values, identity, answer.auth_type, answer.signed_response, nonce, digest, version
        )
        return Caller(proven, origin)

    def _identity_elsewhere(
        self, identity: ValueReference, answer: ChallengeAnswer, nonce: bytes, digest: bytes
    ) -> ValueReference:
        """An identity whose handle another node holds (an enterprise's administrator
        at its parent's node, say): a secret key is checked by asking that node
        (opcode 201), which alone knows it; a public key is resolved and checked here.
        An identity nobody holds is InvalidCredential; one whose home cannot be asked,
        AuthenticationError."""
        assert self._upstream is not None
        who = f"{identity.index}:{identity.handle}"
        signed = answer.signed_response
        secret = answer.auth_type.upper() == "HS_SECKEY"
        try:
            if secret:
                valid = self._upstream.verify_challenge(identity, nonce, digest, signed)
            else:
                record = self._upstream.resolve(identity.handle, (identity.index,))
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
        values = self._values_of(identity.handle)
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
        return Caller(check_password(self._values_of(identity.handle), identity, password), origin)

    def authenticate_certificate(
        self,
        identity: ValueReference,
        key: rsa.RSAPublicKey | dsa.DSAPublicKey,
        origin: str,
    ) -> Caller:
        """A verified TLS client certificate naming ``identity`` and holding ``key``."""
        proven = check_certificate_key(self._values_of(identity.handle), identity, key)
        return Caller(proven, origin)

    # -- HTTP API sessions (kept in storage, so every worker process knows them) ----

    def open_session(self, caller: Caller = ANONYMOUS) -> StoredSession:
        """A new session with a fresh nonce; already authenticated as ``caller``."""
        now = self._wall_clock()
        self._storage.purge_sessions(now)
        session = StoredSession(
            secrets.token_urlsafe(24),
            secrets.token_bytes(NONCE_SIZE),
            caller.identity,
            now + self.SESSION_SECONDS,
        )
        self._storage.put_session(session)
        return session

    def session(self, session_id: str) -> StoredSession:
        """The open session ``session_id``; AuthenticationNeeded when unknown or expired."""
        # A Handle protocol session is proven by the MAC of each message, which HTTP
        # requests do not carry: its id names nothing here.
        session = None
        if not session_id.startswith(_HANDLE_SESSION):
            session = self._storage.get_session(session_id)
        if session is None or session.expires <= self._wall_clock():
            raise AuthenticationNeeded(
                "the session is unknown or has expired; open a new one with POST /api/sessions"
            )
        return session

    def session_caller(self, session_id: str, origin: str) -> Caller:
        return Caller(self.session(session_id).identity, origin)

    def authenticate_session(
        self,
        session_id: str,
        identity: ValueReference,
        auth_type: str,
        answer: bytes,
        client_nonce: bytes,
        origin: str,
    ) -> Caller:
        """Prove ``identity`` in a session: ``answer`` signs its nonce + ``client_nonce``.

        The session is then authenticated as that identity until it expires.
        """
        session = self.session(session_id)
        if not 8 <= len(client_nonce) <= 1024:
            raise AuthenticationFailed("cnonce must be 8 to 1024 bytes")
        values = self._values_of(identity.handle)
        proven = check_answer(
            values, identity, auth_type, answer, session.nonce, client_nonce, PROTOCOL_VERSION
        )
        self._bind(session, proven)
        return Caller(proven, origin)

    def bind_session(self, session_id: str, caller: Caller) -> StoredSession:
        """Authenticate an open session as ``caller`` (proven some other way)."""
        return self._bind(self.session(session_id), caller.identity)

    def _bind(self, session: StoredSession, identity: ValueReference | None) -> StoredSession:
        # A session already bound to this identity is not written again: a request
        # that authenticates in its session, then binds it, costs one write, not two.
        if session.identity != identity:
            session = dataclasses.replace(session, identity=identity)
            self._storage.put_session(session)
        return session

    def close_session(self, session_id: str) -> None:
        self._storage.delete_session(session_id)

    # -- Handle protocol sessions (opcodes 400-402), stored with the HTTP ones ------

    def open_handle_session(
        self, setup: SessionSetupRequest, version: tuple[int, int]
    ) -> tuple[int, bytes]:
        """A new session: its number and the server's half of the key agreement.

        Only Diffie-Hellman (what deployed clients use by default) is offered, and only
        from protocol 2.7, whose messages are authenticated with HMAC-SHA256.
        """
        if setup.mode != KeyExchange.DIFFIE_HELLMAN:
            raise SessionFailed(
                f"key exchange mode {setup.mode} is not offered; use Diffie-Hellman (4)"
            )
        if version < (2, 7):
            raise SessionFailed("sessions need protocol 2.7 or later (HMAC-SHA256)")
        answer, key = server_agreement(setup.public_key)
        now = self._wall_clock()
        self._storage.purge_sessions(now)
        lasts = self.HANDLE_SESSION_SECONDS
        if setup.timeout > 0:
            lasts = min(float(setup.timeout), lasts)
        number = secrets.randbelow(2**31 - 1) + 1
        session = StoredSession(_HANDLE_SESSION + str(number), key, None, now + lasts)
        self._storage.put_session(session)
        return number, answer

    def handle_session(self, number: int) -> StoredSession:
        """The open Handle protocol session ``number``; SessionTimeout if none."""
        session = self._storage.get_session(_HANDLE_SESSION + str(number))
        if session is None or session.expires <= self._wall_clock():
            raise SessionTimeout(f"session {number} is unknown or has expired; set up a new one")
        return session

    def accept_session_message(self, session: StoredSession, counter: int) -> None:
        """Count a message of ``session`` (its MAC checked by the caller);
        SessionMessageRejected if its counter was seen before."""
        state = (session.counter, session.seen)
        while True:
            new = replay.accept(state, counter)
            if new is None:
                raise SessionMessageRejected(
                    f"message {counter} of session {session.session_id} was seen before"
                )
            if self._storage.advance_session(session.session_id, state, new):
                return
            # Another worker counted a message meanwhile: start from what it stored.
            current = self._storage.get_session(session.session_id)
            if current is None:
                raise SessionTimeout(f"session {session.session_id} ended meanwhile")
            state = (current.counter, current.seen)

    def bind_handle_session(self, number: int, caller: Caller) -> None:
        """The session has proven ``caller`` (by a challenge answered inside it)."""
        self._bind(self.handle_session(number), caller.identity)

    def close_handle_session(self, number: int) -> None:
        self._storage.delete_session(_HANDLE_SESSION + str(number))

    # -- writes over the protocol and the HTTP API: authorised, audited ----------

    def create_handle(
        self,
        handle: str,
        values: Sequence[HandleValue],
        caller: Caller,
        *,
        overwrite: bool = False,
        mint_suffix: bool = False,
    ) -> str:
        """Create ``handle`` (a new suffix appended to it with ``mint_suffix``).

        Needs ADD_HANDLE from the prefix's administrators (ADD_NA from the parent
        prefix's for a prefix handle); replacing an existing handle with ``overwrite``
        also needs DELETE_HANDLE on it. Returns the handle created.
        """
        if mint_suffix:  # what was given is the prefix, or prefix/ and a suffix start
            start = handle if "/" in handle else handle + "/"
            handle = start + str(uuid.uuid4())
            # On a server holding a share of its site, a suffix from its own share.
            while not self._in_share(handle):
                handle = start + str(uuid.uuid4())
        self._writable_handle(handle)
        edits.check_new_values(values)
        new_values = edits.stamped(values, self._now())

        def change(current: HandleRecord | None) -> HandleRecord:
            if current is not None:
                if not overwrite:
                    raise HandleAlreadyExists(f"handle {current.handle} already exists")
                self._require(caller, AdminPermission.DELETE_HANDLE, current, "replace it")
            needed, governing = self._creation_rights(handle)
            self._authorizer.require(caller.identity, needed, governing, f"create {handle}")
            return HandleRecord(handle, new_values)

        self._storage.update(handle, change, self._audit(caller, "create"))
        self._stats.registered(handle_key(split_handle(handle)[0]))
        return handle

    def delete_handle(self, handle: str, caller: Caller) -> None:
        self._writable_handle(handle)

        def change(current: HandleRecord | None) -> None:
            current = self._existing(current, handle)
            needed = (
                AdminPermission.DELETE_NA
                if handle_key(split_handle(handle)[0]) == NA_PREFIX
                else AdminPermission.DELETE_HANDLE
            )
            self._require(caller, needed, current, f"delete {handle}")

        self._storage.update(handle, change, self._audit(caller, "delete"))

    def add_values(self, handle: str, values: Sequence[HandleValue], caller: Caller) -> None:
        self._edit(handle, caller, "add-value", values, edits.add_values)

    def modify_values(self, handle: str, values: Sequence[HandleValue], caller: Caller) -> None:
        self._edit(handle, caller, "modify-value", values, edits.modify_values)

    def put_values(self, handle: str, values: Sequence[HandleValue], caller: Caller) -> None:
        """Add or replace the given values by index (HTTP PUT with ``index=``)."""
        self._edit(handle, caller, "put-values", values, edits.put_values)

    def remove_values(self, handle: str, indexes: Sequence[int], caller: Caller) -> None:
        self._writable_handle(handle)

        def change(current: HandleRecord | None) -> HandleRecord:
            current = self._existing(current, handle)
            kept, needed = edits.remove_values(current.values, indexes)
            self._require(caller, needed, current, f"remove values of {handle}")
            self._check_template(kept)
            return HandleRecord(current.handle, kept)

        self._storage.update(handle, change, self._audit(caller, "remove-value"))

    def list_handles(
        self, prefix: str, caller: Caller, offset: int = 0, limit: int | None = None
    ) -> tuple[list[str], int]:
        """A page of the handles under ``prefix`` and their total (LIST_HANDLES needed)."""
        validate_prefix(prefix)
        if not self._is_responsible(handle_key(prefix), ""):
            raise NotResponsible(f"prefix {prefix} is not homed at this node")
        self._authorizer.require(
            caller.identity,
            AdminPermission.LIST_HANDLES,
            self._prefix_admins(prefix),
            f"list {prefix}",
        )
        return self._storage.list_handles(prefix, offset, limit), self._storage.count(prefix)

    def exists(self, handle: str) -> bool:
        """Whether ``handle`` is stored here (a lookup, not a counted resolution)."""
        return self._storage.get(handle) is not None

    def audit_log(self, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        return self._storage.audit_log(query)

    # -- templates ---------------------------------------------------------------

    def templates(self) -> list[Template]:
        """Every template's latest version, built-in ones first."""
        stored = [self._stored_templates(r) for r in self._storage.iter_records(TEMPLATE_PREFIX)]
        return list(BUILTIN.values()) + [versions[-1] for versions in stored if versions]

    def template(self, name: str, version: int | None = None) -> Template:
        """Template ``name`` (or ``name@version``), its latest version by default."""
        name, _, number = name.partition("@")
        if number.isdigit() and version is None:
            version = int(number)
        if name in BUILTIN and version in (None, 1):
            return BUILTIN[name]
        record = self._storage.get(f"{TEMPLATE_PREFIX}/{name}") if "/" not in name else None
        versions = self._stored_templates(record) if record is not None else []
        if version is None and versions:
            return versions[-1]
        for template in versions:
            if template.version == version:
                return template
        known = f" (versions 1 to {len(versions)})" if versions else ""
        raise NoSuchResource(f"no template {name}{f' version {version}' if version else ''}{known}")

    def define_template(self, name: str, definition: object, caller: Caller) -> Template:
        """Store a new version of template ``name`` (1 if it is new); only the node's
        administrators may, as templates apply to every prefix of the node."""
        if name in BUILTIN:
            raise InvalidValue(f"{name} is a built-in template; give yours another name")
        self._authorizer.require(
            caller.identity, AdminPermission.ADD_HANDLE, [], f"define template {name}"
        )
        checked = Template.from_json(definition, name)
        handle = f"{TEMPLATE_PREFIX}/{name}"
        result: list[Template] = []

        def change(current: HandleRecord | None) -> HandleRecord:
            values = tuple(current.values) if current is not None else ()
            template = dataclasses.replace(checked, version=len(values) + 1)
            data = json.dumps(template.to_json(), ensure_ascii=False).encode("utf-8")
            result.append(template)
            new = HandleValue(template.version, TEMPLATE_DEFINITION, data, timestamp=self._now())
            return HandleRecord(handle, (*values, new))

        self._storage.update(handle, change, self._audit(caller, "define-template"))
        return result[-1]

    def create_from_template(
        self,
        handle: str,
        template: str,
        fields: Mapping[str, object],
        caller: Caller,
        *,
        readers: ValueReference | None = None,
        overwrite: bool = False,
    ) -> str:
        """Create ``handle`` from a template's fields (validated field by field), with
        the reader group ``readers`` allowed to read its partner-level values."""
        values = self.template(template).values(fields, readers)
        return self.create_handle(handle, values, caller, overwrite=overwrite)

    @staticmethod
    def _stored_templates(record: HandleRecord) -> list[Template]:
        name = split_handle(record.handle)[1]
        found = []
        for value in sorted(record.values, key=lambda v: v.index):
            if value.type == TEMPLATE_DEFINITION:
                doc = json.loads(value.data)
                found.append(Template.from_json(doc, name, value.index))
        return found

    # -- history -----------------------------------------------------------------

    # Audit entries read back for one handle at most: a handle written more often
    # than this shows its first writes, then its current record (as "unrecorded").
    MAX_VERSIONS = 100_000

    def history(self, handle: str, caller: Caller | None = None) -> list[Version]:
        """Every version of ``handle``, oldest first (see :mod:`idnode.history`).

        With a ``caller`` (the HTTP API), only an administrator may read it, one holding
        READ_VALUE on the record (or, once deleted, from its prefix's administrators):
        versions hold values that are not public, and who wrote them from where.
        None is the node's operator (the CLI on the data directory).
        """
        validate_handle(handle)
        current = self._storage.get(handle)
        if caller is not None:
            governing = (
                self._governing(current)
                if current is not None
                else self._prefix_admins(split_handle(handle)[0])
            )
            self._authorizer.require(
                caller.identity,
                AdminPermission.READ_VALUE,
                governing,
                f"read the history of {handle}",
            )
        entries = self._storage.audit_log(AuditQuery(handle=handle, limit=self.MAX_VERSIONS))
        found = history.versions(entries, current)
        if not found:
            raise HandleNotFound(f"handle {handle} not found, and it has no history here")
        return found

    def version(self, handle: str, number: int, caller: Caller | None = None) -> Version:
        found = self.history(handle, caller)
        if not 1 <= number <= len(found):
            raise ValuesNotFound(f"{handle} has versions 1 to {len(found)}, not {number}")
        return found[number - 1]

    def restore_version(self, handle: str, number: int, caller: Caller) -> int:
        """Make version ``number``'s values the record's again, as a new version (an
        audited write, with the permissions its changes need); returns its number.

        A deleted handle comes back this way too, which needs ADD_HANDLE.
        """
        target = self.version(handle, number, caller).record
        if target is None:
            raise InvalidValue(
                f"version {number} of {handle} is its deletion; delete the handle instead"
            )
        self._writable_handle(handle)
        now = self._now()

        def change(current: HandleRecord | None) -> HandleRecord:
            assert target is not None
            if current is None:
                needed, governing = self._creation_rights(handle)
                self._authorizer.require(caller.identity, needed, governing, f"recreate {handle}")
                return HandleRecord(handle, edits.stamped(target.values, now))
            result, needed = edits.restore_values(current.values, target.values, now)
            self._require(caller, needed, current, f"restore {handle} to version {number}")
            return HandleRecord(current.handle, result)

        self._storage.update(handle, change, self._audit(caller, f"restore-version-{number}"))
        return len(self.history(handle))

    # -- writes (local administration by the node's operator) -------------------

    def home_prefix(self, prefix: str) -> None:
        validate_prefix(prefix)
        self._storage.home_prefix(prefix)
        self._homed_read_at = float("-inf")

    def unhome_prefix(self, prefix: str) -> bool:
        """Stop serving ``prefix`` (its records stay); False if it was not homed."""
        validate_prefix(prefix)
        removed = self._storage.unhome_prefix(prefix)
        self._homed_read_at = float("-inf")
        return removed

    def delegate_prefix(
        self,
        prefix: str,
        sites: Sequence[SiteInfo],
        ttl: int,
        admin_key: tuple[int, bytes] | None = None,
    ) -> HandleRecord:
        """Point ``0.NA/<prefix>`` at the sites that serve it, as its parent node does.

        The prefix must sit below one homed here (or this node is the root, homing
        0.NA). An existing prefix handle keeps its other values (HS_ADMIN, keys); its
        HS_SITE values are replaced, so a prefix moves to new servers by delegating it
        again: resolvers follow once the old values' TTL has run out.

        ``admin_key`` (index, HS_PUBKEY data): the key of the prefix's administrator,
        stored at that index with an HS_ADMIN value (index 100) granting it every
        permission on the prefix handle, as a Handle.Net root does for a prefix it
        hands out; the identity ``<index>:0.NA/<prefix>`` can then, for instance,
        report the prefix's statistics here.
        """
        validate_prefix(prefix)
        key = handle_key(prefix)
        homed = self._homed_keys(fresh=True)
        if key in homed:
            raise InvalidValue(f"{prefix} is homed at this node; unhome it before delegating it")
        if NA_PREFIX not in homed and not any(p in homed for p in prefix_chain(key)[1:]):
            raise NotResponsible(
                f"{prefix} is not below a prefix homed here; delegate it from its parent's node"
            )
        if not sites:
            raise InvalidValue("a delegation needs at least one site")
        handle = f"{NA_PREFIX}/{prefix}"
        now = self._now()
        current = self._storage.get(handle)
        kept = [v for v in (current.values if current else ()) if v.type not in SITE_TYPES]
        if admin_key is not None:
            key_index, key_data = admin_key
            admin = AdminValue(AdminPermission.ALL, ValueReference(handle, key_index))
            kept = [v for v in kept if v.index not in (ADMIN_VALUE_INDEX, key_index)]
            kept += [
                HandleValue(ADMIN_VALUE_INDEX, "HS_ADMIN", admin.to_bytes(), timestamp=now),
                HandleValue(
                    key_index,
                    "HS_PUBKEY",
                    key_data,
                    timestamp=now,
                    permissions=Permission.ADMIN_READ
                    | Permission.ADMIN_WRITE
                    | Permission.PUBLIC_READ,
                ),
            ]
        taken = {v.index for v in kept}
        indexes = (i for i in range(1, 1 << 31) if i not in taken)
        site_values = [
            HandleValue(next(indexes), "HS_SITE", site.to_bytes(), ttl=ttl, timestamp=now)
            for site in sites
        ]
        record = HandleRecord(handle, tuple(sorted([*kept, *site_values], key=lambda v: v.index)))
        self._storage.put(record)
        self._stats.registered(NA_PREFIX)
        return record

    def delegations(self) -> list[HandleRecord]:
        """The prefix handles held here that point elsewhere: prefixes delegated to
        other nodes (those homed here are not among them)."""
        homed = self._homed_keys(fresh=True)
        return [
            record
            for record in self._storage.iter_records(NA_PREFIX)
            if handle_key(split_handle(record.handle)[1]) not in homed
            and any(v.type in _REFERRAL_TYPES for v in record.values)
        ]

    def put_record(self, record: HandleRecord) -> None:
        prefix, _ = split_handle(record.handle)
        self._storage.put(record)
        self._stats.registered(handle_key(prefix))

    BULK_BATCH = 5000

    def register_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        caller: Caller | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> BulkResult:
        """Create or update many records: :meth:`stage_many`, then
        :meth:`write_staged`, for records checked already."""
        with self.stage_many(records, replace=replace, caller=caller) as load:
            return self.write_staged(load, replace=replace, caller=caller, progress=progress)

    def stage_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        caller: Caller | None = None,
        parallel: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> StagedLoad:
        """Set records aside for :meth:`write_staged`, so that a front end can check
        all of them before any is written, and read its source only once.

        With a ``caller`` (the HTTP API) each record must be under a prefix homed here
        whose administrators grant the caller ADD_HANDLE (and DELETE_HANDLE to replace);
        without one it is the node's operator. Records of another server of this site
        are counted, not kept. ``parallel``: a second process stages the records
        while this one goes on reading (for large loads on more than one core).
        """
        load = StagedLoad(self._storage.staging(parallel=parallel))
        try:
            allowed: set[str] = set()
            now = self._now()
            for batch in _batches(records, self.BULK_BATCH):
                kept = []
                prefixes: Counter[str] = Counter()
                for record in batch:
                    if not self._in_share(record.handle):
                        load.elsewhere += 1
                        continue
                    prefixes[self._bulk_allowed(record.handle, caller, replace, allowed)] += 1
                    values = record.values
                    stamped = (
                        values.timestamps_set()
                        if isinstance(values, EncodedValues)
                        else all(v.timestamp for v in values)
                    )
                    if not stamped:
                        values = edits.stamped_if_unset(values, now)
                    kept.append(HandleRecord(record.handle, values))
                if kept:
                    load.spans.append((load.staging.add(kept), prefixes))
                if progress is not None:
                    progress(len(batch))
            load.staging.finish()
        except BaseException:
            load.close()
            raise
        return load

    def write_staged(
        self,
        load: StagedLoad,
        *,
        replace: bool,
        caller: Caller | None = None,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> BulkResult:
        """Write staged records, a span per transaction; with ``dry_run`` only say
        what would be written.

        A record stored already with the same values (timestamps aside) is left as it
        is, so running the same registration again, or again after a crash, writes only
        what is missing: no duplicates, no gaps. Other existing records are replaced
        only with ``replace``. With a ``caller`` every write is audited.
        """
        result = BulkResult(elsewhere=load.elsewhere)
        audit = None if caller is None else self._audit(caller, "bulk")
        left: list[str] = []

        def choose(existing: dict[str, tuple[HandleRecord, HandleRecord]]) -> list[str]:
            left.clear()
            for key, (stored, staged) in existing.items():
                if _same_values(stored.values, staged.values):
                    result.unchanged += 1
                elif not replace:
                    result.skipped += 1
                else:
                    result.updated += 1
                    continue
                left.append(key)
            return left

        for span, prefixes in load.spans:
            before = result.updated
            written = self._storage.put_staged(
                load.staging, span, choose, audit=audit, dry_run=dry_run
            )
            result.created += written - (result.updated - before)
            if not dry_run:
                registered = prefixes.copy()
                registered.subtract(key.partition("/")[0] for key in left)
                for prefix_key, count in registered.items():
                    if count > 0:
                        self._stats.registered(prefix_key, count)
            if progress is not None:
                progress(len(span))
        return result

    def _bulk_allowed(
        self, handle: str, caller: Caller | None, replace: bool, allowed: set[str]
    ) -> str:
        prefix, _ = split_handle(handle)
        key = handle_key(prefix)
        if caller is not None and key not in allowed:
            self._writable_handle(handle)
            needed = AdminPermission.ADD_HANDLE
            if replace:
                needed |= AdminPermission.DELETE_HANDLE
            what = f"register handles under {prefix}"
            self._authorizer.require(caller.identity, needed, self._prefix_admins(prefix), what)
            allowed.add(key)
        return key

    # -- statistics -------------------------------------------------------------

    def flush_stats(self) -> None:
        """Add this process's counts since the last flush to the shared totals."""
        rows = self._stats.drain()
        try:
            self._storage.add_stats(rows)
        except BaseException:
            self._stats.restore(rows)
            raise

    def stats(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        """Totals per prefix and hour, as flushed by every process on this database."""
        return self._storage.stats(prefix, since)

    def reported_stats(self, since: int = 0) -> list[ReportedRow]:
        """What other nodes reported here, per source node, prefix and hour."""
        return self._storage.reported_stats(since)

    def accept_stats_report(self, rows: Sequence[ReportedRow], caller: Caller) -> int:
        """Store another node's report of totals; returns how many rows were stored.

        A node may report for the prefixes delegated to it and those below them: the
        caller needs ADD_HANDLE from the administrators of the nearest prefix handle
        held here (whoever may register handles under a prefix may report its counts).
        One row the caller may not report refuses the whole report, so a report is
        stored entirely or not at all.
        """
        if caller.identity is None:
            raise AuthenticationNeeded("reporting statistics needs an authenticated identity")
        for prefix in sorted({row.stats.prefix for row in rows}):
            validate_prefix(prefix)
            self._authorizer.require(
                caller.identity,
                AdminPermission.ADD_HANDLE,
                self._delegation_admins(prefix),
                f"report statistics for {prefix}",
            )
        received = self._wall_clock()
        stored = [
            ReportedRow(
                row.source,
                dataclasses.replace(row.stats, prefix=handle_key(row.stats.prefix)),
                caller.actor,
                received,
            )
            for row in rows
        ]
        self._storage.put_reported_stats(stored)
        return len(stored)

    def stats_report(self, source: str, since: int = 0) -> list[ReportedRow]:
        """The rows this node reports to its parent, from hour ``since`` on: its own
        totals for the prefixes it homes and those below them (named ``source``), and
        what its own children reported here, so totals travel up the hierarchy."""
        homed = self._homed_keys(fresh=True) - {NA_PREFIX}
        own = [
            ReportedRow(source, row)
            for row in self._storage.stats(since=since)
            if any(p in homed for p in prefix_chain(row.prefix))
        ]
        forwarded = [ReportedRow(r.source, r.stats) for r in self._storage.reported_stats(since)]
        return own + forwarded

    # -- helpers -------------------------------------------------------------

    def _edit(
        self,
        handle: str,
        caller: Caller,
        operation: str,
        values: Sequence[HandleValue],
        edit: Callable[[Sequence[HandleValue], Sequence[HandleValue]], edits.Edit],
    ) -> None:
        self._writable_handle(handle)
        edits.check_new_values(values)
        new_values = edits.stamped(values, self._now())

        def change(current: HandleRecord | None) -> HandleRecord:
            current = self._existing(current, handle)
            result, needed = edit(current.values, new_values)
            edits.check_size(result)
            self._require(caller, needed, current, f"{operation} on {handle}")
            self._check_template(result)
            return HandleRecord(current.handle, result)

        self._storage.update(handle, change, self._audit(caller, operation))

    def _check_template(self, values: Sequence[HandleValue]) -> None:
        """A record made from a template must still fit it after an edit of its
        values. One naming a template unknown here (made on another node) is not
        checked: there is nothing to check it against."""
        named = next(
            (v for v in values if v.index == TEMPLATE_INDEX and v.type == TEMPLATE_TYPE), None
        )
        if named is None:
            return
        try:
            template = self.template(named.data.decode("utf-8"))
        except (UnicodeDecodeError, NoSuchResource):
            return
        template.check_values(values)

    def _values_of(self, handle: str) -> Sequence[HandleValue] | None:
        record = self._storage.get(handle)
        return None if record is None else record.values

    def _prefix_admins(self, prefix: str) -> list[AdminValue]:
        """The HS_ADMIN values of the prefix handle ``0.NA/<prefix>``, if it is here."""
        return admin_values(self._values_of(f"{NA_PREFIX}/{prefix}") or ())

    def _delegation_admins(self, prefix: str) -> list[AdminValue]:
        """The HS_ADMIN values of the nearest prefix handle held here for ``prefix``."""
        for name in prefix_chain(handle_key(prefix)):
            values = self._values_of(f"{NA_PREFIX}/{name}")
            if values is not None:
                return admin_values(values)
        return []

    def _governing(self, record: HandleRecord) -> list[AdminValue]:
        """The HS_ADMIN values over a record: its own, then its prefix handle's."""
        governing = admin_values(record.values)
        prefix, _ = split_handle(record.handle)
        if handle_key(prefix) != NA_PREFIX:
            governing += self._prefix_admins(prefix)
        return governing

    def _creation_rights(self, handle: str) -> tuple[AdminPermission, list[AdminValue]]:
        prefix, suffix = split_handle(handle)
        if handle_key(prefix) != NA_PREFIX:
            return AdminPermission.ADD_HANDLE, self._prefix_admins(prefix)
        # A prefix handle is created by the administrators of its parent prefix.
        parent = suffix.rpartition(".")[0]
        return AdminPermission.ADD_NA, self._prefix_admins(parent) if parent else []

    def _require(
        self, caller: Caller, needed: AdminPermission, record: HandleRecord, what: str
    ) -> None:
        if needed:
            governing = self._governing(record)
            self._authorizer.require(caller.identity, needed, governing, what)

    def _existing(self, current: HandleRecord | None, handle: str) -> HandleRecord:
        if current is None:
            raise HandleNotFound(f"handle {handle} not found")
        return current

    def _writable_handle(self, handle: str) -> None:
        validate_handle(handle)
        self._responsible_prefix(handle)

    def _responsible_prefix(self, handle: str) -> str:
        """The handle's prefix key; NotResponsible unless this node homes the prefix."""
        prefix, suffix = split_handle(handle)
        prefix_key = handle_key(prefix)
        if not self._is_responsible(prefix_key, suffix):
            raise NotResponsible(f"prefix {prefix} is not homed at this node")
        if not self._in_share(handle):
            assert self._share is not None
            raise NotResponsible(
                f"{handle} is held by another server of this site (this one holds share "
                f"{self._share} by {_HASH_NAMES[self._share.hash_option]})"
            )
        return prefix_key

    def _in_share(self, handle: str) -> bool:
        return self._share is None or self._share.holds(handle)

    def _audit(self, caller: Caller, operation: str) -> AuditContext:
        return AuditContext(caller.actor, caller.origin, operation)

    def _now(self) -> int:
        return int(self._wall_clock())

    def _homed_keys(self, *, fresh: bool = False) -> frozenset[str]:
        """The homed prefixes' keys, read again when stale or when ``fresh`` asks."""
        now = self._clock()
        if fresh or now - self._homed_read_at > self.HOMED_REFRESH_SECONDS:
            self._homed = frozenset(handle_key(p) for p in self._storage.homed_prefixes())
            self._homed_read_at = now
        return self._homed

    def _is_responsible(self, key: str, suffix: str) -> bool:
        homed = self._homed_keys()
        if key == NA_PREFIX:
            # A prefix handle is served where its prefix, or a parent of it, is homed.
            return key in homed or any(p in homed for p in prefix_chain(handle_key(suffix)))
        return key in homed


def _batches(records: Iterable[HandleRecord], size: int) -> Iterator[list[HandleRecord]]:
    batch: list[HandleRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _same_values(a: Sequence[HandleValue], b: Sequence[HandleValue]) -> bool:
    if isinstance(a, EncodedValues) and isinstance(b, EncodedValues):
        return a.content() == b.content()
    return len(a) == len(b) and sorted(map(edits.content, a)) == sorted(map(edits.content, b))
