"""Writes over the protocol and the HTTP APIs: authorised, audited, one record at a time.

Every write is a :meth:`Storage.update` whose change function checks the caller's
HS_ADMIN permissions against the record it is about to replace, then returns the new
record; the audit entry is written in the same transaction. The record edits
themselves are pure functions in :mod:`idnode.edits`, each returning the permission
it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from idnode import edits
from idnode.domain import ALL_WRITES, AuditEntry, AuditQuery, HandleRecord
from idnode.errors import HandleAlreadyExists, NoSuchResource, NotResponsible
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission
from idnode.names import NA_PREFIX, handle_key, split_handle, validate_prefix
from idnode.service.core import Caller, ServiceCore
from idnode.service.templates import Templates
from idnode.templates import TEMPLATE_INDEX, TEMPLATE_TYPE

__all__ = ["Writes"]


class Writes:
    def __init__(self, core: ServiceCore, templates: Templates) -> None:
        self._core = core
        self._templates = templates

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
        core = self._core
        if mint_suffix:  # what was given is the prefix, or prefix/ and a suffix start
            start = handle if "/" in handle else handle + "/"
            handle = start + str(uuid.uuid4())
            # On a server holding a share of its site, a suffix from its own share.
            while not core.in_share(handle):
                handle = start + str(uuid.uuid4())
        core.writable_handle(handle)
        edits.check_new_values(values)
        new_values = edits.stamped(values, core.now())

        def change(current: HandleRecord | None) -> HandleRecord:
            if current is not None:
                if not overwrite:
                    raise HandleAlreadyExists(f"handle {current.handle} already exists")
                core.require(caller, AdminPermission.DELETE_HANDLE, current, "replace it")
            needed, governing = core.creation_rights(handle)
            core.authorizer.require(caller.identity, needed, governing, f"create {handle}")
            return HandleRecord(handle, new_values)

        core.storage.update(handle, change, core.audit(caller, "create"))
        core.stats.registered(handle_key(split_handle(handle)[0]))
        return handle

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
        values = self._templates.template(template).values(fields, readers)
        return self.create_handle(handle, values, caller, overwrite=overwrite)

    def delete_handle(self, handle: str, caller: Caller) -> None:
        core = self._core
        core.writable_handle(handle)

        def change(current: HandleRecord | None) -> None:
            current = core.existing(current, handle)
            needed = (
                AdminPermission.DELETE_NA
                if handle_key(split_handle(handle)[0]) == NA_PREFIX
                else AdminPermission.DELETE_HANDLE
            )
            core.require(caller, needed, current, f"delete {handle}")

        core.storage.update(handle, change, core.audit(caller, "delete"))

    def add_values(self, handle: str, values: Sequence[HandleValue], caller: Caller) -> None:
        self._edit(handle, caller, "add-value", values, edits.add_values)

    def modify_values(self, handle: str, values: Sequence[HandleValue], caller: Caller) -> None:
        self._edit(handle, caller, "modify-value", values, edits.modify_values)

    def put_values(self, handle: str, values: Sequence[HandleValue], caller: Caller) -> None:
        """Add or replace the given values by index (HTTP PUT with ``index=``)."""
        self._edit(handle, caller, "put-values", values, edits.put_values)

    def remove_values(self, handle: str, indexes: Sequence[int], caller: Caller) -> None:
        core = self._core
        core.writable_handle(handle)

        def change(current: HandleRecord | None) -> HandleRecord:
            current = core.existing(current, handle)
            kept, needed = edits.remove_values(current.values, indexes)
            core.require(caller, needed, current, f"remove values of {handle}")
            self._check_template(kept)
            return HandleRecord(current.handle, kept)

        core.storage.update(handle, change, core.audit(caller, "remove-value"))

    def list_handles(
        self, prefix: str, caller: Caller, offset: int = 0, limit: int | None = None
    ) -> tuple[list[str], int]:
        """A page of the handles under ``prefix`` and their total (LIST_HANDLES needed)."""
        core = self._core
        validate_prefix(prefix)
        if not core.is_responsible(handle_key(prefix), ""):
            raise NotResponsible(f"prefix {prefix} is not homed at this node")
        core.authorizer.require(
            caller.identity,
            AdminPermission.LIST_HANDLES,
            core.prefix_admins(prefix),
            f"list {prefix}",
        )
        storage = core.storage
        return storage.list_handles(prefix, offset, limit), storage.count(prefix)

    def audit_log(self, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        return self._core.storage.audit_log(query)

    def _edit(
        self,
        handle: str,
        caller: Caller,
        operation: str,
        values: Sequence[HandleValue],
        edit: Callable[[Sequence[HandleValue], Sequence[HandleValue]], edits.Edit],
    ) -> None:
        core = self._core
        core.writable_handle(handle)
        edits.check_new_values(values)
        new_values = edits.stamped(values, core.now())

        def change(current: HandleRecord | None) -> HandleRecord:
            current = core.existing(current, handle)
            result, needed = edit(current.values, new_values)
            edits.check_size(result)
            core.require(caller, needed, current, f"{operation} on {handle}")
            self._check_template(result)
            return HandleRecord(current.handle, result)

        core.storage.update(handle, change, core.audit(caller, operation))

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
            template = self._templates.template(named.data.decode("utf-8"))
        except (UnicodeDecodeError, NoSuchResource):
            return
        template.check_values(values)
