"""Templates: the node's metadata templates, built-in and defined here.

User templates are stored as records of the reserved prefix ``0.TPL`` (never homed,
so never resolvable from outside), one per name, a value per version; a version once
defined never changes, so records made from it stay valid.

A template owned by a prefix (made through the national system's APIs) is named by
its identifier, ``<prefix>/META_<code>``, and is defined, changed and deleted by that
prefix's administrators. Its latest published version is also written to that
identifier as an ordinary record, so it resolves like any other (over UDP, TCP and
HTTP); withdrawing or deleting the template removes it. The 0.TPL record stays the
one source: the identifier is written after it, in a transaction of its own.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from idnode.domain import HandleRecord
from idnode.errors import (
    HandleAlreadyExists,
    InsufficientPermissions,
    InvalidValue,
    NoSuchTemplate,
    TemplateExists,
    TemplateNotPublished,
)
from idnode.handle.values import HandleValue
from idnode.handle.valuetypes import AdminPermission
from idnode.names import handle_key, split_handle
from idnode.service.core import Caller, ServiceCore
from idnode.templates import BUILTIN, Template

__all__ = ["TEMPLATE_DEFINITION", "TEMPLATE_PREFIX", "Templates"]

TEMPLATE_PREFIX = "0.TPL"
TEMPLATE_DEFINITION = "TEMPLATE.DEFINITION"
#: A template's ``info`` member naming who may use it: ``{"scope": 2, "users":
#: [handles]}`` restricts it to those identities and its prefix's administrators.
GRANT_INFO = "grant"


class Templates:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def templates(self) -> list[Template]:
        """Every template's latest version, built-in ones first."""
        records = self._core.storage.iter_records(TEMPLATE_PREFIX)
        stored = [_stored_templates(r) for r in records]
        return list(BUILTIN.values()) + [versions[-1] for versions in stored if versions]

    def template(self, name: str, version: int | None = None) -> Template:
        """Template ``name`` (or ``name@version``), its latest version by default."""
        name, _, number = name.partition("@")
        if number.isdigit() and version is None:
            version = int(number)
        if name in BUILTIN and version in (None, 1):
            return BUILTIN[name]
        versions = self.versions(name)
        if version is None and versions:
            return versions[-1]
        for template in versions:
            if template.version == version:
                return template
        known = f" (versions 1 to {len(versions)})" if versions else ""
        raise NoSuchTemplate(f"no template {name}{f' version {version}' if version else ''}{known}")

    def versions(self, name: str) -> list[Template]:
        """Every version of a stored template, oldest first ([] if there is none)."""
        record = self._core.storage.get(f"{TEMPLATE_PREFIX}/{name}")
        return _stored_templates(record) if record is not None else []

    def for_new_record(self, name: str, caller: Caller) -> Template:
        """The template (``name`` or ``name@version``) a new record is made from:
        published, and usable by ``caller`` (a template restricted by a grant: its
        listed users and its prefix's administrators)."""
        template = self.template(name)
        # Whether it is published, and to whom, is the latest version's say (read
        # again only when an older version was named).
        latest = self.template(template.name) if "@" in name else template
        if not latest.published:
            raise TemplateNotPublished(f"template {template.name} is withdrawn; publish it first")
        grant = latest.info.get(GRANT_INFO)
        if isinstance(grant, dict) and grant.get("scope") == 2 and template.owner:
            users = {handle_key(u) for u in grant.get("users", ()) if isinstance(u, str)}
            identity = caller.identity
            if identity is None or (
                handle_key(identity.handle) not in users
                and not self._administers(caller, template.owner)
            ):
                raise InsufficientPermissions(f"template {template.name} is not granted to you")
        return template

    def define_template(
        self, name: str, definition: object, caller: Caller, *, new: bool = False
    ) -> Template:
        """Store a new version of template ``name`` (1 if it is new; with ``new``,
        TemplateExists if it is not).

        A node-wide template is defined by the node's administrators, as it applies to
        every prefix; one named ``<prefix>/META_<code>`` by that prefix's.
        """
        core = self._core
        if name in BUILTIN:
            raise InvalidValue(f"{name} is a built-in template; give yours another name")
        checked = Template.from_json(definition, name)
        owner = split_handle(name)[0] if "/" in name else ""
        if owner:
            core.writable_handle(name)  # its identifier must be served here
        checked = dataclasses.replace(checked, owner=owner)
        self._require_author(caller, owner, f"define template {name}")
        if owner:
            _check_identifier_free(core.storage.get(name))
        handle = f"{TEMPLATE_PREFIX}/{name}"
        result: list[Template] = []

        def change(current: HandleRecord | None) -> HandleRecord:
            if new and current is not None:
                raise TemplateExists(f"template {name} exists already")
            values = tuple(current.values) if current is not None else ()
            template = dataclasses.replace(checked, version=len(values) + 1)
            data = json.dumps(template.to_json(), ensure_ascii=False).encode("utf-8")
            result.append(template)
            added = HandleValue(template.version, TEMPLATE_DEFINITION, data, timestamp=core.now())
            return HandleRecord(handle, (*values, added))

        core.update(handle, change, caller, "define-template")
        self._serve_identifier(result[-1], caller)
        return result[-1]

    def delete_template(self, name: str, caller: Caller) -> None:
        """Forget template ``name``, every version. Records made from it keep their
        values; they are no longer checked against it."""
        core = self._core
        template = self.template(name)
        if template.name in BUILTIN:
            raise InvalidValue(f"{name} is a built-in template and cannot be deleted")
        self._require_author(caller, template.owner, f"delete template {name}")

        def change(current: HandleRecord | None) -> None:
            if current is None:
                raise NoSuchTemplate(f"no template {name}")

        core.update(f"{TEMPLATE_PREFIX}/{template.name}", change, caller, "delete-template")
        self._serve_identifier(None, caller, template.name)

    def _require_author(self, caller: Caller, owner: str, what: str) -> None:
        admins = self._core.prefix_admins(owner) if owner else []
        self._core.authorizer.require(caller.identity, AdminPermission.ADD_HANDLE, admins, what)

    def _administers(self, caller: Caller, prefix: str) -> bool:
        if caller.identity is None:
            return False
        granted = self._core.authorizer.permissions(
            caller.identity, self._core.prefix_admins(prefix)
        )
        return bool(granted & AdminPermission.ADD_HANDLE)

    def _serve_identifier(
        self, template: Template | None, caller: Caller, name: str | None = None
    ) -> None:
        """Write (or, for a withdrawn or deleted template, remove) the record at the
        identifier of a template owned by a prefix."""
        name = template.name if template is not None else name
        if name is None or "/" not in name:
            return
        core = self._core
        values: Sequence[HandleValue] = ()
        if template is not None and template.published:
            data = json.dumps(template.to_json(), ensure_ascii=False).encode("utf-8")
            values = (HandleValue(1, TEMPLATE_DEFINITION, data, timestamp=core.now()),)

        def change(current: HandleRecord | None) -> HandleRecord | None:
            _check_identifier_free(current)
            return HandleRecord(name, tuple(values)) if values else None

        core.update(name, change, caller, "serve-template")


def _check_identifier_free(record: HandleRecord | None) -> None:
    """A template's identifier may hold nothing but the template: an ordinary record
    there is never overwritten by one."""
    if record is not None and any(v.type != TEMPLATE_DEFINITION for v in record.values):
        raise HandleAlreadyExists(
            f"{record.handle} is a record, not a template's identifier: choose another code"
        )


def _stored_templates(record: HandleRecord) -> list[Template]:
    name = split_handle(record.handle)[1]
    found = []
    for value in sorted(record.values, key=lambda v: v.index):
        if value.type == TEMPLATE_DEFINITION:
            doc = json.loads(value.data)
            found.append(Template.from_json(doc, name, value.index))
    return found
