"""Templates: the node's metadata templates, built-in and defined here.

User templates are stored as records of the reserved prefix ``0.TPL`` (never homed,
so never resolvable from outside), one per name, a value per version; a version once
defined never changes, so records made from it stay valid.
"""

from __future__ import annotations

import dataclasses
import json

from idnode.domain import HandleRecord
from idnode.errors import InvalidValue, NoSuchResource
from idnode.handle.values import HandleValue
from idnode.handle.valuetypes import AdminPermission
from idnode.names import split_handle
from idnode.service.core import Caller, ServiceCore
from idnode.templates import BUILTIN, Template

__all__ = ["TEMPLATE_DEFINITION", "TEMPLATE_PREFIX", "Templates"]

TEMPLATE_PREFIX = "0.TPL"
TEMPLATE_DEFINITION = "TEMPLATE.DEFINITION"


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
        record = self._core.storage.get(f"{TEMPLATE_PREFIX}/{name}") if "/" not in name else None
        versions = _stored_templates(record) if record is not None else []
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
        core = self._core
        if name in BUILTIN:
            raise InvalidValue(f"{name} is a built-in template; give yours another name")
        core.authorizer.require(
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
            new = HandleValue(template.version, TEMPLATE_DEFINITION, data, timestamp=core.now())
            return HandleRecord(handle, (*values, new))

        core.storage.update(handle, change, core.audit(caller, "define-template"))
        return result[-1]


def _stored_templates(record: HandleRecord) -> list[Template]:
    name = split_handle(record.handle)[1]
    found = []
    for value in sorted(record.values, key=lambda v: v.index):
        if value.type == TEMPLATE_DEFINITION:
            doc = json.loads(value.data)
            found.append(Template.from_json(doc, name, value.index))
    return found
