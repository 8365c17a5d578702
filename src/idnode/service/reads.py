"""Reads: resolving a handle (here, by referral, or through the upstream resolver),
GS1 keys, search, and what a node says about itself.

Every read is counted per prefix for the statistics; values are filtered by what the
caller may read before anything leaves this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from idnode.domain import HandleRecord, SearchQuery
from idnode.errors import (
    AuthenticationNeeded,
    HandleNotFound,
    InvalidHandle,
    NotResponsible,
    Referral,
    ValuesNotFound,
)
from idnode.gs1 import GS1Key
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, Permission
from idnode.handle.valuetypes import AdminPermission, ServiceHandle, SiteInfo
from idnode.names import NA_PREFIX, handle_key, prefix_chain, split_handle
from idnode.service.core import ANONYMOUS, Caller, ServiceCore, Upstream
from idnode.sites import SITE_TYPES

__all__ = ["Reads"]

# Values of a delegation (a prefix handle held by the parent) that say where to go.
_REFERRAL_TYPES = frozenset((*SITE_TYPES, ServiceHandle.TYPE))


class Reads:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

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
        core = self._core
        try:
            prefix_key = core.responsible_prefix(handle)
        except NotResponsible:
            if core.upstream is not None and (recursive or core.recursive):
                return self.resolve_upstream(handle, indexes, types)
            referral = self._referral(handle)
            if referral is None:
                raise
            raise referral from None
        record = core.storage.get(handle)
        if record is None:
            core.stats.not_found(prefix_key)
            raise self._referral(handle) or HandleNotFound(f"handle {handle} not found")
        return self._answer(handle, record, prefix_key, indexes, types, caller, public_only)

    def resolve_read(
        self, record: HandleRecord, *, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord:
        """:meth:`resolve` with ``public_only`` of a record read already (by an event
        loop, with :meth:`Storage.get_async <idnode.storage.base.Storage.get_async>`):
        its public values, filtered and counted; nothing more is read."""
        handle = record.handle
        prefix_key = self._core.responsible_prefix(handle)
        return self._answer(handle, record, prefix_key, indexes, types, ANONYMOUS, True)

    def _answer(
        self,
        handle: str,
        record: HandleRecord,
        prefix_key: str,
        indexes: Sequence[int],
        types: Sequence[str],
        caller: Caller,
        public_only: bool,
    ) -> HandleRecord:
        """The values of ``record`` (asked for as ``handle``) that the caller may read
        and asked for."""
        core = self._core
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
                granted = core.authorizer.permissions(caller.identity, core.governing(record))
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
            core.stats.not_found(prefix_key)
            raise ValuesNotFound(f"handle {handle} has no values matching the request")
        core.stats.resolved(prefix_key)
        return HandleRecord(record.handle, values)

    def upstream_resolves(self, handle: str, *, recursive: bool = False) -> bool:
        """Whether :meth:`resolve` would ask the upstream resolver for ``handle``
        (which waits on other servers): a recursive node, or a ``recursive`` request
        on a node that has a resolver, for a handle whose prefix is not homed here.
        False for handles that are not valid: resolving them fails at once."""
        core = self._core
        if core.upstream is None or not (recursive or core.recursive):
            return False
        try:
            split_handle(handle)
        except InvalidHandle:
            return False
        return not self.held_here(handle)

    def answer_basis(self, handle: str) -> tuple[str, str, bytes] | None:
        """What an anonymous resolution of ``handle`` held here is made from, read
        without decoding any value: (the responsible prefix's key, the handle as
        registered, its values in wire layout); None when it is not held here or not
        stored. The servers' answer cache compares it with what an answer was made
        from (call it only where the storage reads ``handle`` at once)."""
        core = self._core
        try:
            prefix_key = core.responsible_prefix(handle)
        except (NotResponsible, InvalidHandle):
            return None
        stored = core.storage.stored(handle)
        return None if stored is None else (prefix_key, stored[0], stored[1])

    def answered_again(self, prefix_key: str) -> None:
        """Count a resolution answered from the servers' answer cache, as
        :meth:`resolve` counts its own."""
        self._core.stats.resolved(prefix_key)

    def held_here(self, handle: str) -> bool:
        """Whether this node answers for ``handle`` itself: its prefix is homed here
        and it is in this server's share. Known in memory, without a read; False for
        a handle that is not valid."""
        try:
            prefix, suffix = split_handle(handle)
        except InvalidHandle:
            return False
        core = self._core
        return core.is_responsible(handle_key(prefix), suffix) and core.in_share(handle)

    def resolve_upstream(
        self, handle: str, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord:
        """:meth:`resolve` of a handle held elsewhere, through the upstream resolver
        (blocking while it asks other servers)."""
        with self._counted(handle):
            return self._upstream().resolve(handle, indexes, types)

    async def resolve_upstream_async(
        self, handle: str, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord:
        """:meth:`resolve_upstream` on an event loop, which goes on serving meanwhile."""
        with self._counted(handle):
            return await self._upstream().resolve_async(handle, indexes, types)

    def _upstream(self) -> Upstream:
        upstream = self._core.upstream
        if upstream is None:
            raise NotResponsible("this node resolves no handles held elsewhere (no root_servers)")
        return upstream

    @contextmanager
    def _counted(self, handle: str) -> Iterator[None]:
        """Count an upstream resolution of ``handle`` as found or not found."""
        prefix_key = handle_key(split_handle(handle)[0])
        try:
            yield
        except (HandleNotFound, ValuesNotFound):
            self._core.stats.not_found(prefix_key)
            raise
        self._core.stats.resolved(prefix_key)

    def _referral(self, handle: str) -> Referral | None:
        """The delegation this node holds for the handle's prefix, nearest first.

        None when the search reaches a prefix homed here (then this node is the
        authority and the handle does not exist) or finds nothing.
        """
        core = self._core
        prefix, suffix = split_handle(handle)
        # For 0.NA/88.100.1 the record itself was not found: look at its parents.
        chain = (
            prefix_chain(suffix)[1:] if handle_key(prefix) == NA_PREFIX else prefix_chain(prefix)
        )
        homed = core.homed_keys()
        for name in chain:
            if handle_key(name) in homed:
                return None
            delegation = core.storage.get(f"{NA_PREFIX}/{name}")
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

    def resolve_gs1(self, key: GS1Key, prefix: str) -> list[list[HandleValue]]:
        """The public values of each record under ``prefix`` for ``key`` and its less
        specific keys (a serial number's, its batch's, its product's), the most
        specific first, each in index order: what the entity inherits from the levels
        above it. HandleNotFound when none has a record."""
        found: list[list[HandleValue]] = []
        for candidate in key.candidates():
            handle = candidate.identifier(prefix)
            if self._core.storage.get(handle) is not None:
                found.append(sorted(self.resolve(handle).values, key=lambda v: v.index))
        if not found:
            self._core.stats.not_found(handle_key(prefix))
            raise HandleNotFound(f"nothing is known here about {key.path}")
        return found

    def search(self, query: SearchQuery) -> list[str]:
        """Handles whose public values match ``query`` (values that are not public are
        never indexed, so anyone may search)."""
        return self._core.storage.search(query)

    def exists(self, handle: str) -> bool:
        """Whether ``handle`` is stored here (a lookup, not a counted resolution)."""
        return self._core.storage.get(handle) is not None

    def site_info(self) -> SiteInfo:
        return self._core.site

    def homed_prefixes(self) -> list[str]:
        return self._core.storage.homed_prefixes()

    def count(self, prefix: str | None = None) -> int:
        return self._core.storage.count(prefix)

    def export_records(self, prefix: str | None = None) -> Iterator[HandleRecord]:
        return self._core.storage.iter_records(prefix)
