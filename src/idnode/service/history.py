"""History: a record's versions, derived from the audit log, and going back to one.

The audit entries are written by the storage in each write's own transaction, so the
history of a record is exactly its writes (see :mod:`idnode.history` for how versions
are derived from them).
"""

from __future__ import annotations

import dataclasses

from idnode import edits, history
from idnode.domain import AuditQuery, HandleRecord
from idnode.errors import HandleNotFound, InvalidValue, ValuesNotFound
from idnode.handle.values import Permission
from idnode.handle.valuetypes import AdminPermission
from idnode.history import Version
from idnode.names import split_handle, validate_handle
from idnode.service.core import Caller, ServiceCore

__all__ = ["History"]


_READ_BITS = Permission.PUBLIC_READ | Permission.ADMIN_READ


def _readable_by_readers(version: Version) -> Version:
    record = version.record
    if record is None:
        return version
    kept = tuple(v for v in record.values if v.permissions & _READ_BITS)
    return dataclasses.replace(version, record=HandleRecord(record.handle, kept))


class History:
    # Audit entries read back for one handle at most: a handle written more often
    # than this shows its first writes, then its current record (as "unrecorded").
    MAX_VERSIONS = 100_000

    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def history(self, handle: str, caller: Caller | None = None) -> list[Version]:
        """Every version of ``handle``, oldest first (see :mod:`idnode.history`).

        With a ``caller`` (the HTTP API), only an administrator may read it, one holding
        READ_VALUE on the record (or, once deleted, from its prefix's administrators):
        versions hold values that are not public, and who wrote them from where.
        None is the node's operator (the CLI on the data directory).
        """
        core = self._core
        validate_handle(handle)
        current = core.storage.get(handle)
        granted = AdminPermission.ALL
        if caller is not None:
            governing = (
                core.governing(current)
                if current is not None
                else core.prefix_admins(split_handle(handle)[0])
            )
            core.authorizer.require(
                caller.identity,
                AdminPermission.READ_VALUE,
                governing,
                f"read the history of {handle}",
            )
            assert caller.identity is not None  # require() raised otherwise
            granted = core.authorizer.permissions(caller.identity, governing)
        entries = core.storage.audit_log(AuditQuery(handle=handle, limit=self.MAX_VERSIONS))
        found = history.versions(entries, current)
        if not found:
            raise HandleNotFound(f"handle {handle} not found, and it has no history here")
        if not granted & AdminPermission.MODIFY_VALUE:
            # As a read shows them: without MODIFY_VALUE, no owner-only values (those
            # without the admin read bit), in any version.
            found = [_readable_by_readers(v) for v in found]
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
        core = self._core
        self.history(handle, caller)  # may the caller read it at all
        # The version itself, owner-only values included: restoring a reader's view of
        # it would drop them.
        target = self.version(handle, number).record
        if target is None:
            raise InvalidValue(
                f"version {number} of {handle} is its deletion; delete the handle instead"
            )
        core.writable_handle(handle)
        now = core.now()

        def change(current: HandleRecord | None) -> HandleRecord:
            assert target is not None
            if current is None:
                needed, governing = core.creation_rights(handle)
                core.authorizer.require(caller.identity, needed, governing, f"recreate {handle}")
                return HandleRecord(handle, edits.stamped(target.values, now))
            result, needed = edits.restore_values(current.values, target.values, now)
            edits.check_size(result, handle)
            core.require(caller, needed, current, f"restore {handle} to version {number}")
            return HandleRecord(current.handle, result)

        core.update(handle, change, caller, f"restore-version-{number}")
        return len(self.history(handle))
