"""A record's values as a person reads them: labels, links, who may read each.

Pure: values and the record's template in, rows to render out. A URL becomes a
link (only to schemes a browser may safely open), a reference to another identifier
a link to its page here, an HS_ADMIN value its administrator and permissions by name,
and a template field is labelled as its template labels it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from idnode.errors import RemoteProtocolError
from idnode.handle.values import HandleValue, Permission
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.templates import TEMPLATE_INDEX, TEMPLATE_TYPE, Field, Template

__all__ = [
    "PERMISSION_NAMES",
    "Shown",
    "admin_permissions",
    "record_link",
    "shown_values",
    "template_reference",
]

Access = Literal["public", "partner", "owner"]
Kind = Literal["text", "link", "record", "admin", "template"]

#: The twelve HS_ADMIN permissions, in Handle.Net's order (list handles first).
PERMISSION_NAMES: tuple[tuple[AdminPermission, str], ...] = (
    (AdminPermission.ADD_HANDLE, "Add handle"),
    (AdminPermission.DELETE_HANDLE, "Delete handle"),
    (AdminPermission.ADD_NA, "Add prefix"),
    (AdminPermission.DELETE_NA, "Delete prefix"),
    (AdminPermission.MODIFY_VALUE, "Modify value"),
    (AdminPermission.REMOVE_VALUE, "Remove value"),
    (AdminPermission.ADD_VALUE, "Add value"),
    (AdminPermission.MODIFY_ADMIN, "Modify admin"),
    (AdminPermission.REMOVE_ADMIN, "Remove admin"),
    (AdminPermission.ADD_ADMIN, "Add admin"),
    (AdminPermission.READ_VALUE, "Read value"),
    (AdminPermission.LIST_HANDLES, "List handles"),
)
#: A template field's access level, as the badge it shows.
_ACCESS: dict[str, Access] = {"public": "public", "partner": "partner", "owner": "owner"}
_SAFE_SCHEMES = frozenset({"http", "https", "ftp", "mailto"})
_REFERENCE_TYPES = frozenset({"HS_ALIAS", "HS_SERV", "HS_NAMESPACE_REF"})
_SECRET_TYPES = frozenset({"HS_SECKEY"})


@dataclass(frozen=True, slots=True)
class Shown:
    """One value, ready for a page."""

    index: int
    type: str
    label: str  #: the template field's label, else the value's type
    kind: Kind
    text: str
    href: str = ""  #: for links, identifier references and templates
    access: Access = "public"
    permissions: tuple[str, ...] = ()  #: an HS_ADMIN value's, by name


def record_link(handle: str) -> str:
    """The console page of an identifier."""
    return "/console/record/" + quote(handle, safe="/")


def template_reference(values: Sequence[HandleValue]) -> str | None:
    """``name@version`` of the template a record was made from, if any."""
    for value in values:
        if value.index == TEMPLATE_INDEX and value.type == TEMPLATE_TYPE:
            return value.data.decode("utf-8", "replace")
    return None


def admin_permissions(permissions: AdminPermission) -> tuple[str, ...]:
    """The permissions by name; all twelve are one name, as a page lists them."""
    if AdminPermission.ALL in permissions:
        return ("All permissions",)
    return tuple(name for bit, name in PERMISSION_NAMES if bit in permissions)


def _access(value: HandleValue, spec: Field | None) -> Access:
    if spec is not None and spec.access in _ACCESS:
        return _ACCESS[spec.access]
    if Permission.PUBLIC_READ in value.permissions:
        return "public"
    return "partner" if Permission.ADMIN_READ in value.permissions else "owner"


def _safe_url(text: str) -> str:
    return text if urlsplit(text.strip()).scheme.lower() in _SAFE_SCHEMES else ""


def shown_values(values: Sequence[HandleValue], template: Template | None) -> list[Shown]:
    """``values`` by index, each with its label, how to show it and who may read it."""
    fields = dict(template.indexed()) if template is not None else {}
    rows: list[Shown] = []
    for value in sorted(values, key=lambda v: v.index):
        if value.type.upper() in _SECRET_TYPES:
            continue  # a secret key is never shown, even to whoever may read it
        spec = fields.get(value.index)
        if spec is not None and spec.type_name.upper() != value.type.upper():
            spec = None
        label = (spec.label or spec.name) if spec is not None else value.type
        kind, text, href, permissions = _presented(value, spec)
        rows.append(
            Shown(
                value.index,
                value.type,
                label,
                kind,
                text,
                href,
                _access(value, spec),
                permissions,
            )
        )
    return rows


def _presented(value: HandleValue, spec: Field | None) -> tuple[Kind, str, str, tuple[str, ...]]:
    """How a value is shown: its kind, its text, where it links, its permissions."""
    text = value.data.decode("utf-8", "replace")
    if value.type == "HS_ADMIN":
        try:
            admin = AdminValue.from_bytes(value.data)
        except RemoteProtocolError:
            return "text", value.data.hex(), "", ()
        who = f"{admin.admin.index}:{admin.admin.handle}"
        return "admin", who, record_link(admin.admin.handle), admin_permissions(admin.permissions)
    if value.index == TEMPLATE_INDEX and value.type == TEMPLATE_TYPE:
        return "template", text, "/console/templates/" + quote(text.partition("@")[0], safe=""), ()
    if (spec is not None and spec.type == "reference") or value.type in _REFERENCE_TYPES:
        return "record", text, record_link(text), ()
    if (spec is not None and spec.type == "url") or value.type in ("URL", "EMAIL"):
        url = text if value.type != "EMAIL" or text.startswith("mailto:") else f"mailto:{text}"
        href = _safe_url(url)
        return ("link" if href else "text"), text, href, ()
    return "text", text, "", ()
