"""Writes over the protocol and the HTTP APIs: authorised, audited, one record at a time.

Every write is a :meth:`Storage.update` whose change function checks the caller's
HS_ADMIN permissions against the record it is about to replace, then returns the new
record; the audit entry is written in the same transaction. The record edits
themselves are pure functions in :mod:`idnode.edits`, each returning the permission
it needs.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from idnode import edits
from idnode.domain import ALL_WRITES, AuditEntry, AuditQuery, HandleRecord
from idnode.errors import (
    AuthenticationNeeded,
    HandleAlreadyExists,
    InvalidValue,
    NoSuchResource,
    NotResponsible,
    RemoteProtocolError,
)
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.names import NA_PREFIX, handle_key, split_handle, validate_prefix
from idnode.service.core import Caller, ServiceCore
from idnode.service.templates import Templates
from idnode.templates import ACCESS_LEVELS, TEMPLATE_INDEX, TEMPLATE_TYPE, Template

__all__ = ["Reading", "Writes"]

#: Who may read a record's template fields (see :meth:`Writes.change_access`).
Reading = Literal["public", "restricted", "template"]


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
        edits.check_new_values(values, handle)
        new_values = edits.stamped(values, core.now())

        def change(current: HandleRecord | None) -> HandleRecord:
            if current is not None:
                if not overwrite:
                    raise HandleAlreadyExists(f"handle {current.handle} already exists")
                core.require(caller, AdminPermission.DELETE_HANDLE, current, "replace it")
            needed, governing = core.creation_rights(handle)
            core.authorizer.require(caller.identity, needed, governing, f"create {handle}")
            return HandleRecord(handle, new_values)

        core.update(handle, change, caller, "create")
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
        values = self._templates.for_new_record(template, caller).values(fields, readers)
        return self.create_handle(handle, values, caller, overwrite=overwrite)

    def update_fields(
        self,
        handle: str,
        fields: Mapping[str, object],
        caller: Caller,
        *,
        merge: bool = True,
        template: str | None = None,
    ) -> None:
        """Set fields of a record made from a template (checked against the version it
        was made with; with ``template``, that must be the template's name); with
        ``merge`` the fields not given keep their values, without it they are dropped.

        Who may read the fields stays as it was: a field that had a value keeps that
        value's permissions, a new one gets what :meth:`change_access` last decided
        for the record (or its template's level). Values that are not the template's
        (grants, HS_ADMIN) stay as they are."""
        core = self._core
        core.writable_handle(handle)

        def change(current: HandleRecord | None) -> HandleRecord:
            current = core.existing(current, handle)
            made_from = self._template_of(current)
            if template is not None and made_from.name != template:
                raise InvalidValue(f"{handle} was made from {made_from.name}, not {template}")
            old = made_from.given_of(current.values)
            given = {**old, **fields} if merge else dict(fields)
            now = core.now()
            reading = _reading_of(current.values, made_from)
            fresh = _readable(list(made_from.values(given, timestamp=now)), made_from, reading)
            before = {v.index: v for v in current.values}
            made = [
                dataclasses.replace(v, permissions=before[v.index].permissions)
                if v.index in before
                else v
                for v in fresh
            ]
            owned = {TEMPLATE_INDEX} | {i for i, f in made_from.indexed() if f.enabled}
            target = (*(v for v in current.values if v.index not in owned), *made)
            result, needed = edits.restore_values(current.values, target, now)
            edits.check_size(result, handle)
            core.require(caller, needed, current, f"update {handle}")
            return HandleRecord(current.handle, result)

        core.update(handle, change, caller, "update-fields")

    def change_access(
        self,
        handle: str,
        caller: Caller,
        *,
        readers: tuple[Sequence[str], Sequence[str]] = ((), ()),
        writers: tuple[Sequence[str], Sequence[str]] = ((), ()),
        reading: Reading | None = None,
    ) -> None:
        """Grant or revoke, on one record, reading (READ_VALUE) and writing (the value
        permissions) to identity handles (any of their keys: index 0), as HS_ADMIN
        values of the record. ``readers`` and ``writers`` are (add, remove).

        ``reading`` sets who may read the fields of the record's template: "public"
        anyone; "restricted" only those granted (and the record's administrators),
        as partner-level fields are; "template" each at its template's level."""
        core = self._core
        core.writable_handle(handle)
        read = AdminPermission.READ_VALUE
        write = read | AdminPermission.ADD_VALUE | AdminPermission.MODIFY_VALUE
        write |= AdminPermission.REMOVE_VALUE
        for name in (*readers[0], *readers[1], *writers[0], *writers[1]):
            if "/" not in name:
                raise InvalidValue(f"{name!r} is not an identity handle (prefix/suffix)")

        def change(current: HandleRecord | None) -> HandleRecord:
            current = core.existing(current, handle)
            values = list(current.values)
            for permission, (add, remove) in ((read, readers), (write, writers)):
                values = _granted(values, permission, add, remove)
            if reading is not None:
                values = _readable(values, self._template_of(current), reading)
            result, needed = edits.restore_values(current.values, values, core.now())
            edits.check_size(result, handle)
            core.require(caller, needed, current, f"grant access to {handle}")
            return HandleRecord(current.handle, result)

        core.update(handle, change, caller, "change-access")

    def _template_of(self, record: HandleRecord) -> Template:
        named = next(
            (v for v in record.values if v.index == TEMPLATE_INDEX and v.type == TEMPLATE_TYPE),
            None,
        )
        if named is None:
            raise InvalidValue(f"{record.handle} was not made from a template")
        return self._templates.template(named.data.decode("utf-8", "replace"))

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

        core.update(handle, change, caller, "delete")

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

        core.update(handle, change, caller, "remove-value")

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

    def granted(self, handle: str, caller: Caller) -> AdminPermission:
        """What ``caller`` may do to ``handle`` (to create it, if it does not exist):
        what a front end offers, before the write itself checks again."""
        core = self._core
        if caller.identity is None:
            return AdminPermission.NONE
        record = core.storage.get(handle)
        governing = (
            core.governing(record) if record is not None else core.creation_rights(handle)[1]
        )
        return core.authorizer.permissions(caller.identity, governing)

    def audit_visible(self, caller: Caller, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        """The audit entries ``caller`` may see, newest first, without their records:
        those of identifiers whose history it may read (READ_VALUE from the record's
        administrators, or its prefix's once deleted: as :meth:`History.history`).
        A record's values are read through its history, which filters them."""
        core = self._core
        identity = caller.identity
        if identity is None:
            raise AuthenticationNeeded("the audit log needs an authenticated identity")
        allowed: dict[str, bool] = {}

        def visible(handle: str) -> bool:
            if handle not in allowed:
                current = core.storage.get(handle)
                governing = (
                    core.governing(current)
                    if current is not None
                    else core.prefix_admins(split_handle(handle)[0])
                )
                granted = core.authorizer.permissions(identity, governing)
                allowed[handle] = AdminPermission.READ_VALUE in granted
            return allowed[handle]

        newest = dataclasses.replace(query, newest_first=True)
        return [
            dataclasses.replace(e, before=None, after=None)
            for e in core.storage.audit_log(newest)
            if visible(e.handle)
        ]

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
        edits.check_new_values(values, handle)
        new_values = edits.stamped(values, core.now())

        def change(current: HandleRecord | None) -> HandleRecord:
            current = core.existing(current, handle)
            result, needed = edit(current.values, new_values)
            edits.check_size(result, handle)
            core.require(caller, needed, current, f"{operation} on {handle}")
            self._check_template(result)
            return HandleRecord(current.handle, result)

        core.update(handle, change, caller, operation)

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


#: Where grants to single identities go: after the reader group's index (200).
_FIRST_GRANT_INDEX = 201


def _granted(
    values: list[HandleValue],
    permission: AdminPermission,
    add: Sequence[str],
    remove: Sequence[str],
) -> list[HandleValue]:
    """``values`` with HS_ADMIN grants of exactly ``permission`` to the identities
    ``add`` (if not there yet) and without those to ``remove``."""

    def grant_of(value: HandleValue) -> str | None:
        if value.type.upper() != "HS_ADMIN":
            return None
        try:
            admin = AdminValue.from_bytes(value.data)
        except RemoteProtocolError:  # a malformed HS_ADMIN grants nothing
            return None
        if admin.permissions != permission or admin.admin.index != 0:
            return None
        return handle_key(admin.admin.handle)

    dropped = {handle_key(h) for h in remove}
    kept = [v for v in values if grant_of(v) not in dropped]
    present = {grant_of(v) for v in kept}
    taken = {v.index for v in kept}
    index = _FIRST_GRANT_INDEX
    for name in add:
        if handle_key(name) in present:
            continue
        while index in taken:
            index += 1
        grant = AdminValue(permission, ValueReference(name, 0))
        kept.append(HandleValue(index, "HS_ADMIN", grant.to_bytes()))
        taken.add(index)
        present.add(handle_key(name))
    return kept


def _reading_of(values: Sequence[HandleValue], template: Template) -> Reading:
    """What :func:`_readable` made of a record's fields: "public" if one that its
    template does not make public is, "restricted" if one that it does make public is
    not, else "template"."""
    fields = dict(template.indexed())
    public = Permission.PUBLIC_READ
    for value in values:
        spec = fields.get(value.index)
        if spec is None or value.index == TEMPLATE_INDEX:
            continue
        meant = bool(ACCESS_LEVELS[spec.access] & public)
        if bool(value.permissions & public) != meant:
            return "restricted" if meant else "public"
    return "template"


def _readable(values: list[HandleValue], template: Template, reading: Reading) -> list[HandleValue]:
    fields = dict(template.indexed())
    out = []
    for value in values:
        spec = fields.get(value.index)
        if spec is None:
            out.append(value)
            continue
        level = ACCESS_LEVELS[spec.access]
        if reading == "public":
            level |= Permission.PUBLIC_READ
        elif reading == "restricted":
            level &= ~Permission.PUBLIC_READ
        permissions = level
        out.append(dataclasses.replace(value, permissions=permissions))
    return out
