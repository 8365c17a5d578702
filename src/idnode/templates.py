"""Metadata templates: what a kind of record holds, and who may read each part.

A template names its fields, each with a type (string, number, date, URL, enum, or a
reference to another identifier), whether it is required, and an access level that
becomes the permissions of the value it turns into:

- ``public``: anyone may read it (``1110``);
- ``partner``: identities the record's reader group holds, given READ_VALUE by an
  HS_ADMIN value of the record, and its administrators (``1100``);
- ``owner``: only those who may also modify the record's values (``0100``: no read
  bit; :meth:`NodeService.resolve` shows such values to holders of MODIFY_VALUE).

A record made from a template holds a ``TEMPLATE`` value (index 1, ``name@version``),
then one value per field given, at index 1 + the field's position, typed with the
field's name in capitals (a field ``url`` becomes a ``URL`` value, which proxies
redirect to). Templates are versioned: a record keeps the version it was made with.

Templates made through the national system's APIs (SNMS, IDHub) say more, and keep it:
a field may name its own ``index`` (their items live at 2000 and up) and ``valueType``
(their type names keep their case: ``en1``, ``productName``), bound a string's length,
be disabled (``enabled: false``: kept for old records, refused in new writes), and the
template may belong to one prefix (``owner``: defined by that prefix's administrators,
named by its identifier ``<prefix>/META_<code>``) and carry their descriptive
attributes (``info``: industry codes, classification, ...), which idnode keeps and
returns but does not interpret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from idnode.errors import IdnodeError, InvalidValue
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, Permission, ValueReference, ValueShape
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.names import validate_handle

__all__ = [
    "ACCESS_LEVELS",
    "BUILTIN",
    "FIELD_TYPES",
    "TEMPLATE_INDEX",
    "TEMPLATE_TYPE",
    "Field",
    "Template",
    "TemplateViolation",
    "number_from_text",
    "parse_readers",
]

FIELD_TYPES = ("string", "number", "date", "url", "enum", "reference")
ACCESS_LEVELS = {
    "public": Permission.PUBLIC_READ | Permission.ADMIN_READ | Permission.ADMIN_WRITE,
    "partner": Permission.ADMIN_READ | Permission.ADMIN_WRITE,
    "owner": Permission.ADMIN_WRITE,
}
TEMPLATE_TYPE = "TEMPLATE"
TEMPLATE_INDEX = 1
#: Where a record's reader group is granted READ_VALUE.
READERS_INDEX = 200
MAX_STRING = 4096
_READERS = ValueShape(READERS_INDEX, "HS_ADMIN")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Indexes a field may not name: the TEMPLATE value's, HS_ADMIN's usual one, the reader
#: group's, and those the national system's templates reserve.
RESERVED_INDEXES = frozenset({TEMPLATE_INDEX, 100, READERS_INDEX, 1000, 1001, 1999})
MAX_INDEX = 2**31 - 1


class _Misfit(Exception):
    """Why one field (or field declaration) is not acceptable; collected per field."""


class TemplateViolation(InvalidValue):
    """What is wrong with a record (or a template), field by field."""

    def __init__(self, what: str, problems: Mapping[str, str]) -> None:
        listed = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        super().__init__(f"{what}: {listed}")
        self.problems = dict(problems)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    required: bool = False
    access: str = "public"
    label: str = ""
    values: tuple[str, ...] = ()  #: an enum's choices
    minimum: float | None = None  #: a number's bounds
    maximum: float | None = None
    index: int | None = None  #: where its value goes; None: 1 + its position
    value_type: str = ""  #: its value's type; "": the name in capitals
    min_length: int | None = None  #: a string's length bounds
    max_length: int | None = None
    enabled: bool = True
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def type_name(self) -> str:
        """The type of the value this field becomes."""
        return self.value_type or self.name.upper()

    def check(self, given: Any) -> str:
        """The value's data as text; _Misfit with the reason if it does not fit."""
        if not self.enabled:
            raise _Misfit("is disabled in this template: new values are refused")
        if self.type == "number":
            return self._number(given)
        return self._text(given)

    def _number(self, given: Any) -> str:
        if isinstance(given, bool) or not isinstance(given, int | float):
            raise _Misfit(f"must be a number, got {given!r}")
        if not math.isfinite(given):
            raise _Misfit("must be a finite number")
        if self.minimum is not None and given < self.minimum:
            raise _Misfit(f"must be at least {self.minimum:g}")
        if self.maximum is not None and given > self.maximum:
            raise _Misfit(f"must be at most {self.maximum:g}")
        return repr(given)

    def _text(self, given: Any) -> str:
        if not isinstance(given, str):
            raise _Misfit(f"must be text, got {given!r}")
        if not given.strip() or len(given) > MAX_STRING:
            raise _Misfit(f"must be 1 to {MAX_STRING} characters")
        if self.min_length is not None and len(given) < self.min_length:
            raise _Misfit(f"must be at least {self.min_length} characters")
        if self.max_length is not None and len(given) > self.max_length:
            raise _Misfit(f"must be at most {self.max_length} characters")
        if self.type == "date":
            try:
                return date.fromisoformat(given).isoformat()
            except ValueError:  # fromisoformat's own
                raise _Misfit(f"must be a date, YYYY-MM-DD, got {given!r}") from None
        if self.type == "url":
            parts = urlsplit(given)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _Misfit(f"must be an http(s) URL, got {given!r}")
        elif self.type == "enum" and given not in self.values:
            raise _Misfit(f"must be one of {', '.join(self.values)}, got {given!r}")
        elif self.type == "reference":
            try:
                validate_handle(given)
            except IdnodeError as exc:
                raise _Misfit(f"must be an identifier, prefix/suffix: {exc.message}") from None
            if "/" not in given:
                raise _Misfit(f"must be an identifier, prefix/suffix, got {given!r}")
        return given

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required,
                               "access": self.access}  # fmt: skip
        if self.label:
            out["label"] = self.label
        if self.values:
            out["values"] = list(self.values)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.index is not None:
            out["index"] = self.index
        if self.value_type:
            out["valueType"] = self.value_type
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if not self.enabled:
            out["enabled"] = False
        if self.info:
            out["info"] = dict(self.info)
        return out


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    version: int
    title: str = ""
    fields: tuple[Field, ...] = field(default=())
    owner: str = ""  #: the prefix whose administrators define it; "": the node's
    published: bool = True  #: unpublished: no new records, its identifier not served
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: The TEMPLATE value's shape, then each field's by position: for encoded().
    _shapes: tuple[ValueShape, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shapes = (
            ValueShape(TEMPLATE_INDEX, TEMPLATE_TYPE),
            *(
                ValueShape(index, spec.type_name, ACCESS_LEVELS[spec.access])
                for index, spec in self.indexed()
            ),
        )
        object.__setattr__(self, "_shapes", shapes)

    def indexed(self) -> list[tuple[int, Field]]:
        """Each field with the index its value takes."""
        return [
            (TEMPLATE_INDEX + position if spec.index is None else spec.index, spec)
            for position, spec in enumerate(self.fields, start=1)
        ]

    def given_of(self, values: Sequence[HandleValue]) -> dict[str, Any]:
        """The enabled fields a record's values hold (numbers as numbers): what
        :meth:`values` would be given to make them again."""
        by_index = {v.index: v for v in values}
        given: dict[str, Any] = {}
        for index, spec in self.indexed():
            value = by_index.get(index)
            if value is None or not spec.enabled or value.type.upper() != spec.type_name.upper():
                continue  # a disabled field's old value is the record's, not a field's
            try:
                text = value.data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            given[spec.name] = number_from_text(text) if spec.type == "number" else text
        return given

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.version}"

    def values(
        self,
        given: Mapping[str, Any],
        readers: ValueReference | None = None,
        timestamp: int = 0,
    ) -> tuple[HandleValue, ...]:
        """The values of a record with the fields ``given``; TemplateViolation listing
        every field that is missing, unknown or does not fit."""
        return tuple(self.encoded(given, readers, timestamp))

    def encoded(
        self,
        given: Mapping[str, Any],
        readers: ValueReference | None = None,
        timestamp: int = 0,
    ) -> EncodedValues:
        """:meth:`values` in wire layout, made without a HandleValue per field: the
        form bulk registration stores, a million records at a time, and the one place
        a template's record takes its shape."""
        shapes = self._shapes
        parts = [(shapes[0], shapes[0].wire(self.reference.encode(), timestamp))]
        for position, _, data in self._checked(given):
            shape = shapes[position]
            parts.append((shape, shape.wire(data.encode("utf-8"), timestamp)))
        if readers is not None:
            grant = AdminValue(AdminPermission.READ_VALUE, readers)
            parts.append((_READERS, _READERS.wire(grant.to_bytes(), timestamp)))
        return EncodedValues.joined(parts)

    def check_values(self, values: Sequence[HandleValue]) -> None:
        """TemplateViolation, field by field, if ``values`` (a record made from this
        template and edited since, value by value) no longer fit it: each field's value
        at its index, of its type, passing the checks made when the record was made."""
        by_index = {v.index: v for v in values}
        given: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for index, spec in self.indexed():
            value = by_index.get(index)
            if value is None:
                continue
            if value.type.upper() != spec.type_name.upper():
                problems[spec.name] = (
                    f"index {value.index} holds {spec.type_name} in {self.reference},"
                    f" not {value.type}"
                )
                continue
            if not spec.enabled:
                continue  # kept from before the field was disabled
            try:
                text = value.data.decode("utf-8")
            except UnicodeDecodeError:
                problems[spec.name] = "must be UTF-8 text"
                continue
            given[spec.name] = number_from_text(text) if spec.type == "number" else text
        try:
            self._checked(given)
        except TemplateViolation as exc:
            problems |= {k: v for k, v in exc.problems.items() if k not in problems}
        if problems:
            raise TemplateViolation(f"the record would no longer fit {self.reference}", problems)

    def _checked(self, given: Mapping[str, Any]) -> list[tuple[int, Field, str]]:
        """(position, field, data as text) of each field given; TemplateViolation."""
        problems: dict[str, str] = {}
        known = {f.name for f in self.fields}
        for name in given:
            if name not in known:
                problems[name] = f"not a field of {self.reference}"
        found = []
        for position, spec in enumerate(self.fields, start=1):
            if given.get(spec.name) is None:
                if spec.required and spec.enabled:
                    problems[spec.name] = "is required"
                continue
            try:
                found.append((position, spec, spec.check(given[spec.name])))
            except _Misfit as exc:
                problems[spec.name] = str(exc)
        if problems:
            raise TemplateViolation(f"the record does not fit {self.reference}", problems)
        return found

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "title": self.title,
               "fields": [f.to_json() for f in self.fields]}  # fmt: skip
        if self.owner:
            out["owner"] = self.owner
        if not self.published:
            out["published"] = False
        if self.info:
            out["info"] = dict(self.info)
        return out

    @classmethod
    def from_json(cls, doc: Any, name: str | None = None, version: int = 1) -> Template:
        """A template from its JSON definition; TemplateViolation naming what is wrong."""
        if not isinstance(doc, dict):
            raise InvalidValue('a template is {"title": ..., "fields": [...]}')
        name = name or doc.get("name")
        if not isinstance(name, str) or not _template_name_ok(name):
            raise InvalidValue(
                f"template name {name!r}: letters, digits, '.', '_' and '-', or the"
                " template's identifier PREFIX/META_CODE"
            )
        raw = doc.get("fields")
        if not isinstance(raw, list) or not raw:
            raise InvalidValue("a template needs a non-empty list of fields")
        problems: dict[str, str] = {}
        fields = []
        for n, item in enumerate(raw):
            try:
                fields.append(_field(item))
            except _Misfit as exc:
                label = item.get("name") if isinstance(item, dict) else None
                problems[str(label or f"fields[{n}]")] = str(exc)
        names = [f.type_name.upper() for f in fields]
        for spec in fields:
            if names.count(spec.type_name.upper()) > 1:
                problems[spec.name] = "is declared twice"
        made = cls(name, version, "", tuple(fields))
        indexes = [index for index, _ in made.indexed()]
        for index, spec in made.indexed():
            if indexes.count(index) > 1:
                problems[spec.name] = f"index {index} is taken by another field"
        if problems:
            raise TemplateViolation(f"template {name}", problems)
        title, owner, info = doc.get("title", ""), doc.get("owner", ""), doc.get("info", {})
        if not isinstance(owner, str) or not isinstance(info, dict):
            raise InvalidValue("a template's owner is a prefix and its info an object")
        return cls(
            name,
            version,
            title if isinstance(title, str) else "",
            tuple(fields),
            owner,
            doc.get("published", True) is not False,
            info,
        )


def _template_name_ok(name: str) -> bool:
    _, slash, suffix = name.partition("/")
    if not slash:
        return bool(_TEMPLATE_NAME.match(name))
    try:
        validate_handle(name)
    except IdnodeError:
        return False
    return suffix.startswith("META_") and len(suffix) > len("META_")


def _field(item: Any) -> Field:
    if not isinstance(item, dict):
        raise _Misfit("a field is an object with name and type")
    name, kind = item.get("name"), item.get("type", "string")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _Misfit("name: letters, digits, '.', '_' and '-', up to 64")
    if kind not in FIELD_TYPES:
        raise _Misfit(f"type must be one of {', '.join(FIELD_TYPES)}")
    access = item.get("access", "public")
    if access not in ACCESS_LEVELS:
        raise _Misfit(f"access must be one of {', '.join(ACCESS_LEVELS)}")
    values = item.get("values", [])
    if kind == "enum" and (not values or not all(isinstance(v, str) for v in values)):
        raise _Misfit("an enum needs its values, a list of strings")
    bounds = [item.get("minimum"), item.get("maximum")]
    if any(
        b is not None and (isinstance(b, bool) or not isinstance(b, int | float)) for b in bounds
    ):
        raise _Misfit("minimum and maximum must be numbers")
    index = item.get("index")
    if index is not None and (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not 1 < index <= MAX_INDEX
        or index in RESERVED_INDEXES
    ):
        reserved = ", ".join(str(i) for i in sorted(RESERVED_INDEXES))
        raise _Misfit(f"index must be a whole number above 1 and not one of {reserved}")
    value_type = item.get("valueType", "")
    if not isinstance(value_type, str) or (value_type and not _NAME.match(value_type)):
        raise _Misfit("valueType: letters, digits, '.', '_' and '-'")
    lengths = [item.get("minLength"), item.get("maxLength")]
    if any(n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0)
           for n in lengths):  # fmt: skip
        raise _Misfit("minLength and maxLength must be whole numbers, 0 or more")
    if lengths[0] is not None and lengths[1] is not None and lengths[0] > lengths[1]:
        raise _Misfit("minLength is above maxLength")
    info = item.get("info", {})
    if not isinstance(info, dict):
        raise _Misfit("info must be an object")
    return Field(
        name,
        kind,
        bool(item.get("required", False)),
        access,
        str(item.get("label", "")),
        tuple(values),
        bounds[0],
        bounds[1],
        index,
        value_type,
        lengths[0],
        lengths[1],
        item.get("enabled", True) is not False,
        info,
    )


def number_from_text(text: str) -> int | float | str:
    """A number field's text as a number (``12``, ``12.5``, ``1e3``), or the text
    unchanged if it is none, for the field's check to name."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def parse_readers(text: str) -> ValueReference:
    """A reader group as ``INDEX:HANDLE`` (the HS_VLIST value, or one identity)."""
    index, sep, handle = text.partition(":")
    if not sep or not index.isdigit() or "/" not in handle:
        raise InvalidValue(
            f"readers must be INDEX:HANDLE, e.g. 200:88.100.1/PARTNERS, not {text!r}"
        )
    return ValueReference(handle, int(index))


def _builtin(name: str, title: str, *fields: Field) -> Template:
    return Template(name, 1, title, fields)


_URL = Field("url", "url", label="Web page")
_DESC = Field("description", "string", label="Description")
BUILTIN: dict[str, Template] = {
    t.name: t
    for t in (
        _builtin("product-model", "A product model", Field("name", "string", True, label="Name"),
                 Field("gtin", "string", label="GTIN"), _URL, _DESC,
                 Field("price", "number", access="partner", minimum=0, label="List price")),
        _builtin("serial-item", "One serial-numbered item", Field("serial", "string", True),
                 Field("model", "reference", True, label="Product model"), _URL,
                 Field("manufactured", "date", label="Date of manufacture"),
                 Field("batch", "reference", access="partner"),
                 Field("status", "enum", values=("in stock", "in service", "returned",
                                                 "scrapped")),
                 Field("customer", "string", access="owner")),
        _builtin("part", "A part or component", Field("name", "string", True),
                 Field("material", "string"), Field("supplier", "string", access="partner"),
                 Field("weight_kg", "number", minimum=0), _URL),
        _builtin("batch", "A production batch", Field("produced", "date", True),
                 Field("model", "reference", True), Field("quantity", "number", minimum=0),
                 Field("line", "string", access="partner"),
                 Field("quality_report", "url", access="partner")),
        _builtin("machine", "A machine on the shop floor", Field("name", "string", True),
                 Field("location", "string"), Field("commissioned", "date"),
                 Field("maintenance_interval_days", "number", minimum=1, access="partner"),
                 Field("controller_address", "string", access="owner"), _URL),
    )
}  # fmt: skip
