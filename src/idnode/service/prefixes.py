"""Prefixes: the ones this node serves (homes), and the ones it delegates to others.

These are the node operator's writes (the CLI on the data directory): they are not
authorised against HS_ADMIN values, since whoever runs the node decides what it serves.
"""

from __future__ import annotations

from collections.abc import Sequence

from idnode.domain import HandleRecord
from idnode.errors import InvalidValue, NotResponsible
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, ServiceHandle, SiteInfo
from idnode.names import NA_PREFIX, handle_key, prefix_chain, split_handle, validate_prefix
from idnode.service.core import Caller, ServiceCore
from idnode.sites import SITE_TYPES

__all__ = ["ADMIN_VALUE_INDEX", "Prefixes"]

#: Where a prefix handle's HS_ADMIN value goes (Handle.Net's convention).
ADMIN_VALUE_INDEX = 100
# Values of a delegation that say where to go.
_REFERRAL_TYPES = frozenset((*SITE_TYPES, ServiceHandle.TYPE))


class Prefixes:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def home_prefix(self, prefix: str) -> None:
        validate_prefix(prefix)
        self._core.storage.home_prefix(prefix)
        self._core.forget_homed()

    def unhome_prefix(self, prefix: str) -> bool:
        """Stop serving ``prefix`` (its records stay); False if it was not homed."""
        validate_prefix(prefix)
        removed = self._core.storage.unhome_prefix(prefix)
        self._core.forget_homed()
        return removed

    def home_prefix_as(self, prefix: str, caller: Caller) -> None:
        """Home ``prefix`` for a caller over the wire (opcode 300): as the CLI's
        ``prefix register`` does for the node's operator, so only the node's
        administrators may."""
        self._core.authorizer.require(
            caller.identity, AdminPermission.ADD_NA, [], f"home prefix {prefix}"
        )
        self.home_prefix(prefix)

    def unhome_prefix_as(self, prefix: str, caller: Caller) -> None:
        """Stop homing ``prefix`` for a node administrator over the wire (opcode 301);
        NotResponsible if it was not homed here."""
        self._core.authorizer.require(
            caller.identity, AdminPermission.DELETE_NA, [], f"unhome prefix {prefix}"
        )
        if not self.unhome_prefix(prefix):
            raise NotResponsible(f"prefix {prefix} is not homed at this node")

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
        core = self._core
        validate_prefix(prefix)
        key = handle_key(prefix)
        homed = core.homed_keys(fresh=True)
        if key in homed:
            raise InvalidValue(f"{prefix} is homed at this node; unhome it before delegating it")
        if NA_PREFIX not in homed and not any(p in homed for p in prefix_chain(key)[1:]):
            raise NotResponsible(
                f"{prefix} is not below a prefix homed here; delegate it from its parent's node"
            )
        if not sites:
            raise InvalidValue("a delegation needs at least one site")
        handle = f"{NA_PREFIX}/{prefix}"
        now = core.now()
        current = core.storage.get(handle)
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
        core.storage.put(record)
        core.stats.registered(NA_PREFIX)
        return record

    def delegations(self) -> list[HandleRecord]:
        """The prefix handles held here that point elsewhere: prefixes delegated to
        other nodes (those homed here are not among them)."""
        homed = self._core.homed_keys(fresh=True)
        return [
            record
            for record in self._core.storage.iter_records(NA_PREFIX)
            if handle_key(split_handle(record.handle)[1]) not in homed
            and any(v.type in _REFERRAL_TYPES for v in record.values)
        ]

    def put_record(self, record: HandleRecord) -> None:
        """Store a record as the node's operator (init, the demo): no permission check,
        no audit entry."""
        prefix, _ = split_handle(record.handle)
        self._core.storage.put(record)
        self._core.stats.registered(handle_key(prefix))
