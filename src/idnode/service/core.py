"""What every concern of the service layer asks: who is responsible for a handle, who
administers it, what a caller may do there.

One :class:`ServiceCore` per node holds the storage and the node's settings; each
concern (:mod:`~idnode.service.reads`, :mod:`~idnode.service.writes`, ...) is built on
it. The rules here are the ones every operation must apply the same way, so they are
written once: a write and a read must agree on which prefixes are homed, and every
write checks permissions against the same HS_ADMIN values.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from idnode.auth.permissions import Authorizer, admin_values
from idnode.domain import AuditContext, HandleRecord
from idnode.errors import HandleNotFound, IdnodeError, NotResponsible
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, SiteInfo
from idnode.metrics import record_write
from idnode.names import NA_PREFIX, handle_key, prefix_chain, split_handle, validate_handle
from idnode.sites import HASH_OPTIONS, Share
from idnode.stats import StatsRecorder
from idnode.storage.base import RecordChange, Storage

__all__ = ["ANONYMOUS", "Caller", "ServiceCore", "Upstream"]

_HASH_NAMES = {option: name for name, option in HASH_OPTIONS.items()}

log = logging.getLogger("idnode.writes")
#: ``restore-version-12`` counts as ``restore-version``: one series per kind of write.
_NUMBERED = re.compile(r"-\d+$")


class Upstream(Protocol):
    """Resolves handles this node does not hold (a :class:`idnode.resolver.Resolver`):
    blocking, for callers that may wait (the CLI, a thread), or on an event loop."""

    def resolve(
        self, handle: str, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord: ...

    async def resolve_async(
        self, handle: str, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord: ...

    def verify_challenge(
        self, identity: ValueReference, nonce: bytes, digest: bytes, answer: bytes
    ) -> bool:
        """Ask the home of ``identity``'s secret key (opcode 201) about ``answer``."""

    async def verify_challenge_async(
        self, identity: ValueReference, nonce: bytes, digest: bytes, answer: bytes
    ) -> bool: ...


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


class ServiceCore:
    """The storage, the node's settings, and the rules every operation shares.

    ``clock`` returns monotonic seconds, ``wall_clock`` Unix time; tests pass their own
    to step time. ``share`` is this server's part of a site whose servers divide the
    handles; None: all.
    """

    # How long the set of homed prefixes is trusted before it is read again, so that a
    # prefix homed by another process (another worker, the CLI) is served without a
    # restart.
    HOMED_REFRESH_SECONDS = 5.0

    def __init__(
        self,
        storage: Storage,
        site: SiteInfo,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        stats: StatsRecorder | None = None,
        admins: Sequence[ValueReference] = (),
        upstream: Upstream | None = None,
        recursive: bool = False,
        share: Share | None = None,
    ) -> None:
        self.storage = storage
        self.site = site
        self.clock = clock
        self.wall_clock = wall_clock
        self.stats = stats or StatsRecorder()
        self.authorizer = Authorizer(self.values_of, admins)
        self.upstream = upstream
        #: Resolves every handle it does not hold through ``upstream``.
        self.recursive = recursive and upstream is not None
        self.share = share
        self._homed: frozenset[str] = frozenset()
        self._homed_read_at = float("-inf")

    # -- responsibility ------------------------------------------------------------

    def homed_keys(self, *, fresh: bool = False) -> frozenset[str]:
        """The homed prefixes' keys, read again when stale or when ``fresh`` asks."""
        now = self.clock()
        if fresh or now - self._homed_read_at > self.HOMED_REFRESH_SECONDS:
            self._homed = frozenset(handle_key(p) for p in self.storage.homed_prefixes())
            self._homed_read_at = now
        return self._homed

    def forget_homed(self) -> None:
        """The homed prefixes changed here: read them again at the next question."""
        self._homed_read_at = float("-inf")

    def is_responsible(self, key: str, suffix: str) -> bool:
        homed = self.homed_keys()
        if key == NA_PREFIX:
            # A prefix handle is served where its prefix, or a parent of it, is homed.
            return key in homed or any(p in homed for p in prefix_chain(handle_key(suffix)))
        return key in homed

    def responsible_prefix(self, handle: str) -> str:
        """The handle's prefix key; NotResponsible unless this node homes the prefix."""
        prefix, suffix = split_handle(handle)
        prefix_key = handle_key(prefix)
        if not self.is_responsible(prefix_key, suffix):
            if prefix_key == NA_PREFIX:
                raise NotResponsible(
                    f"neither prefix {suffix} nor a prefix above it is homed at this node",
                    prefix=suffix,
                )
            raise NotResponsible(f"prefix {prefix} is not homed at this node", prefix=prefix)
        if not self.in_share(handle):
            assert self.share is not None
            raise NotResponsible(
                f"{handle} is held by another server of this site (this one holds share "
                f"{self.share} by {_HASH_NAMES[self.share.hash_option]})"
            )
        return prefix_key

    def in_share(self, handle: str) -> bool:
        return self.share is None or self.share.holds(handle)

    def writable_handle(self, handle: str) -> None:
        validate_handle(handle)
        self.responsible_prefix(handle)

    # -- administrators ----------------------------------------------------------------

    def values_of(self, handle: str) -> Sequence[HandleValue] | None:
        record = self.storage.get(handle)
        return None if record is None else record.values

    def prefix_admins(self, prefix: str) -> list[AdminValue]:
        """The HS_ADMIN values of the prefix handle ``0.NA/<prefix>``, if it is here."""
        return admin_values(self.values_of(f"{NA_PREFIX}/{prefix}") or ())

    def delegation_admins(self, prefix: str) -> list[AdminValue]:
        """The HS_ADMIN values of the nearest prefix handle held here for ``prefix``."""
        for name in prefix_chain(handle_key(prefix)):
            values = self.values_of(f"{NA_PREFIX}/{name}")
            if values is not None:
                return admin_values(values)
        return []

    def governing(self, record: HandleRecord) -> list[AdminValue]:
        """The HS_ADMIN values over a record: its own, then its prefix handle's."""
        governing = admin_values(record.values)
        prefix, _ = split_handle(record.handle)
        if handle_key(prefix) != NA_PREFIX:
            governing += self.prefix_admins(prefix)
        return governing

    def creation_rights(self, handle: str) -> tuple[AdminPermission, list[AdminValue]]:
        """What creating ``handle`` needs, and from whom."""
        prefix, suffix = split_handle(handle)
        if handle_key(prefix) != NA_PREFIX:
            return AdminPermission.ADD_HANDLE, self.prefix_admins(prefix)
        # A prefix handle is created by the administrators of its parent prefix.
        parent = suffix.rpartition(".")[0]
        return AdminPermission.ADD_NA, self.prefix_admins(parent) if parent else []

    def require(
        self, caller: Caller, needed: AdminPermission, record: HandleRecord, what: str
    ) -> None:
        """InsufficientPermissions (or AuthenticationNeeded) unless the administrators
        of ``record`` grant ``caller`` every bit of ``needed``."""
        if needed:
            self.authorizer.require(caller.identity, needed, self.governing(record), what)

    # -- writes -------------------------------------------------------------------------

    def existing(self, current: HandleRecord | None, handle: str) -> HandleRecord:
        if current is None:
            raise HandleNotFound(f"handle {handle} not found")
        return current

    def audit(self, caller: Caller, operation: str) -> AuditContext:
        return AuditContext(caller.actor, caller.origin, operation)

    def update(
        self, handle: str, change: RecordChange, caller: Caller, operation: str
    ) -> HandleRecord | None:
        """One audited write of one record (see :meth:`Storage.update`), counted and
        logged: a line at info per write, refused ones included, naming the handle,
        the identity, where it came from and the value indexes written; never a
        value (a secret key is a value)."""
        kind = _NUMBERED.sub("", operation)
        try:
            written = self.storage.update(handle, change, self.audit(caller, operation))
        except IdnodeError as exc:
            outcome = exc.response_code.name.lower()
            record_write(kind, outcome)
            log.info(
                "write %s %s by %s refused: %s",
                operation,
                handle,
                caller.actor,
                outcome,
                extra={"fields": _write_fields(operation, handle, caller, outcome)},
            )
            raise
        record_write(kind, "ok")
        fields = _write_fields(operation, handle, caller, "ok")
        fields["indexes"] = [] if written is None else [v.index for v in written.values]
        log.info("write %s %s by %s", operation, handle, caller.actor, extra={"fields": fields})
        return written

    def now(self) -> int:
        return int(self.wall_clock())


def _write_fields(operation: str, handle: str, caller: Caller, outcome: str) -> dict[str, object]:
    return {
        "event": "write",
        "operation": operation,
        "handle": handle,
        "actor": caller.actor,
        "origin": caller.origin,
        "outcome": outcome,
    }
