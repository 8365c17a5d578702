"""The national APIs' JSON shapes, turned into ours and back: pure functions.

Both APIs describe the same things idnode's templates do, in their own words. An SNMS
template is a ``prefix`` and a ``version`` with ``items`` (``idType``, ``idIndex``,
``metadata.minLength``...); an IDHub metadata template is a ``metaHandle``
(``<prefix>/META_<code>``) with ``metaItemCreateDTOS`` (``englishName``,
``itemIndex``, ``itemSchemaCreateDTO.dataType``...). Each becomes one template of
ours, named by its identifier: the SNMS template ``(88.101.5, 1.0.0)`` is
``88.101.5/META_1.0.0``, so it is the same template whichever API made it. What our
templates have no use for (industry codes, classification, item codes) is kept in
the template's ``info`` and given back as it came.

Nothing here waits or touches the service; errors are :class:`InvalidValue` naming
the member at fault.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from idnode.errors import InvalidValue
from idnode.handle.values import HandleValue
from idnode.names import split_handle
from idnode.templates import RESERVED_INDEXES, TEMPLATE_INDEX, TEMPLATE_TYPE, Template
from idnode.templates import number_from_text as _number

__all__ = [
    "FIRST_ITEM_INDEX",
    "SNMS_TEMPLATE_INDEX",
    "idhub_content_fields",
    "idhub_definition",
    "idhub_elements",
    "idhub_meta_info",
    "idhub_meta_object",
    "snms_definition",
    "snms_fields",
    "snms_items",
    "snms_template",
    "snms_template_name",
    "template_version_of",
]

#: Where both APIs put a template's first item.
FIRST_ITEM_INDEX = 2000
#: The index SNMS shows a record's template at (ours is at index 1).
SNMS_TEMPLATE_INDEX = 1001
#: IDHub's data types and ours; 4 and 6-8 (files, audio, video, images) have none.
_IDHUB_TYPES = {1: "string", 2: "number", 3: "date", 5: "reference"}
_IDHUB_TYPE_NAMES = {"string": 1, "number": 2, "date": 3, "reference": 5, "url": 1, "enum": 1}
_ISO_DATES = frozenset({"YYYY-MM-DD", "yyyy-MM-dd"})
_RANGE = re.compile(r"^\s*\[\s*(-?[\d.]+)?\s*,\s*(-?[\d.]+)?\s*\]\s*$")


def _text(doc: Mapping[str, Any], name: str, *, required: bool = True, limit: int = 255) -> str:
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise InvalidValue(f"{name} is required")
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidValue(f"{name} must be text of at most {limit} characters")
    return value


def _whole(value: Any, name: str) -> int | None:
    """A whole number sent as a number or as its digits ("2000"), None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{name} must be a whole number, got {value!r}")
    return value


def _number_items(fields: Sequence[dict[str, Any]], old: Template | None = None) -> None:
    """Give each field without an index the next free one: from 2000 on, after every
    index the template used before (an index never changes its meaning)."""
    taken = {f["index"] for f in fields if f.get("index") is not None}
    used = [i for i, _ in old.indexed()] if old is not None else []
    following = max([FIRST_ITEM_INDEX - 1, *used]) + 1
    for spec in fields:
        if spec.get("index") is None:
            while following in taken or following in RESERVED_INDEXES:
                following += 1
            spec["index"] = following
            taken.add(following)


# -- SNMS ------------------------------------------------------------------------------


def snms_template_name(prefix: str, version: str) -> str:
    """Our name of the SNMS template ``version`` of ``prefix``."""
    return f"{prefix}/META_{version}"


def template_version_of(name: str, prefix: str) -> str:
    """What SNMS calls our template ``name`` in a record of ``prefix``: the version
    part of ``<prefix>/META_<version>``, else the name itself."""
    mark = f"{prefix}/META_"
    return name[len(mark) :] if name.upper().startswith(mark.upper()) else name


def snms_definition(doc: Any, *, with_indexes: bool, old: Template | None = None) -> dict[str, Any]:
    """Our template definition from an SNMS template body (v3 without ``idIndex``,
    v5 with). With ``old`` (v5 modify), items are matched to its fields by
    ``idIndex`` and ``idType``; items not sent are kept, new ones are added."""
    if not isinstance(doc, dict):
        raise InvalidValue("the body is a template object")
    items = doc.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise InvalidValue("items must be a non-empty list of objects")
    info = {
        k: doc[k]
        for k in (
            "industryCategory",
            "industrySpecific",
            "industryTrade",
            "industrySubclass",
            "type",
            "description",
        )
        if k in doc
    }
    fields: list[dict[str, Any]] = [f.to_json() for f in old.fields] if old is not None else []
    by_index = {f.get("index"): f for f in fields}
    given = [_whole(i.get("idIndex"), "idIndex") if with_indexes else None for i in items]
    for item, index in zip(items, given, strict=True):
        id_type = _text(item, "idType", limit=128)
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidValue(f"{id_type}: metadata must be an object")
        kind = metadata.get("type", "string")
        if kind != "string":
            raise InvalidValue(f"{id_type}: metadata.type must be 'string' (lower case)")
        field = by_index.get(index) if index is not None else None
        if old is not None and index is not None and field is None:
            raise InvalidValue(f"idIndex {index} is not an item of this template")
        if field is not None and field.get("valueType", field["name"]) != id_type:
            raise InvalidValue(f"idIndex {index} is {field.get('valueType')}, not {id_type}")
        spec: dict[str, Any] = (
            field if field is not None else {"index": index, "name": id_type, "type": "string"}
        )
        spec["valueType"] = id_type
        spec["label"] = _text(item, "name", required=False, limit=128) or spec.get("label", "")
        spec["required"] = bool(item.get("required", spec.get("required", False)))
        if spec["type"] == "string":  # an item made elsewhere keeps its type and checks
            for key in ("minLength", "maxLength"):
                if metadata.get(key) is not None:
                    spec[key] = _whole(metadata.get(key), f"metadata.{key}")
        state = _whole(item.get("state"), "state")
        if state is not None:
            spec["enabled"] = state != 0
        if field is None:
            fields.append(spec)
    _number_items(fields, old)
    old_info = dict(old.info) if old is not None else {}
    title = doc.get("description", old.title if old is not None else "")
    return {
        "title": str(title),
        "published": old.published if old is not None else True,
        "info": {**old_info, "snms": {**old_info.get("snms", {}), **info}},
        "fields": fields,
    }


def snms_template(template: Template, prefix: str, *, v5: bool) -> dict[str, Any]:
    """An SNMS template document for our template."""
    snms = template.info.get("snms", {})
    items = []
    for index, spec in template.indexed():
        metadata: dict[str, Any] = {"type": spec.type if spec.type != "url" else "string"}
        metadata["minLength"] = spec.min_length if spec.min_length is not None else 0
        metadata["maxLength"] = spec.max_length if spec.max_length is not None else 4096
        item: dict[str, Any] = {
            "name": spec.label,
            "idType": spec.type_name,
            "metadata": metadata,
            "required": spec.required,
        }
        if v5:
            item |= {"idIndex": index, "metadataId": index, "state": 1 if spec.enabled else 0}
        items.append(item)
    body: dict[str, Any] = {
        "id": zlib.crc32(template.name.encode()) & 0x7FFFFFFF,
        "prefix": prefix,
        "name": "",
        "version": template_version_of(template.name, prefix),
        "industryCategory": snms.get("industryCategory", ""),
        "industrySpecific": snms.get("industrySpecific", ""),
        "industryTrade": snms.get("industryTrade", ""),
        "industrySubclass": snms.get("industrySubclass", ""),
        "type": snms.get("type", 2),
        "description": snms.get("description", template.title),
        "items": items,
    }
    if v5:
        body["handle"] = template.name
    return body


def snms_fields(template: Template, items: Any) -> dict[str, Any]:
    """The fields an SNMS ``value`` list sets: each item at a template item's index
    and of its type. Index 1001 (the template) is SNMS's own and is skipped."""
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidValue("value must be a list of objects")
    fields = dict(template.indexed())
    given: dict[str, Any] = {}
    for item in items:
        index = _whole(item.get("index"), "index")
        if index is None:
            raise InvalidValue("every value needs its index")
        if index == SNMS_TEMPLATE_INDEX:
            continue
        spec = fields.get(index)
        if spec is None:
            raise InvalidValue(f"illegal operation: index {index} is not in the template")
        kind = str(item.get("type", ""))
        if kind.upper() != spec.type_name.upper():
            raise InvalidValue(f"index {index} is of type {spec.type_name}, not {kind!r}")
        data = item.get("data")
        if not isinstance(data, dict) or data.get("format", "string") != "string":
            raise InvalidValue(f'index {index}: data is {{"format": "string", "value": ...}}')
        value = data.get("value")
        if not isinstance(value, str):
            raise InvalidValue(f"index {index}: data.value must be a string")
        given[spec.name] = _number(value) if spec.type == "number" else value
    return given


def snms_items(values: Sequence[HandleValue], prefix: str) -> tuple[str, list[dict[str, Any]]]:
    """The template version a record names and its values as SNMS items (text values;
    HS_ values, which are not the record's data, are left out)."""
    version, items = "", []
    for value in values:
        if value.type.upper().startswith("HS_"):
            continue
        text = value.data.decode("utf-8", "replace")
        index = value.index
        if value.index == TEMPLATE_INDEX and value.type == TEMPLATE_TYPE:
            version = template_version_of(text.rpartition("@")[0] or text, prefix)
            text, index = version, SNMS_TEMPLATE_INDEX
        data = {"format": "string", "value": text}
        items.append({"index": index, "type": value.type, "data": data, "auth": ""})
    return version, items


# -- IDHub -----------------------------------------------------------------------------

_IDHUB_BASIC = (
    "classifyCode",
    "metaName",
    "metaCode",
    "standard",
    "metaDesc",
    "industryCategory",
    "industrySpecific",
    "industryTrade",
    "industrySubclass",
)


def idhub_definition(
    doc: Mapping[str, Any], *, old: Template | None = None, items: Any = None
) -> dict[str, Any]:
    """Our definition from an IDHub metadata-template body (``meta/create``) or, with
    ``old``, from its basic information (``update-basic-info``) or new ``items``
    (``update-item``)."""
    basic = dict(old.info.get("idhub", {})) if old is not None else {}
    for key in _IDHUB_BASIC:
        if key in doc:
            basic[key] = doc[key]
    if old is None:
        for key in ("metaName", "metaCode"):
            _text(basic, key, limit=100)
    if items is None and old is None:
        items = doc.get("metaItemCreateDTOS") or []
    if items is None:
        fields = [f.to_json() for f in old.fields] if old is not None else []
    else:
        fields = _idhub_fields(items, old)
    if not fields:
        raise InvalidValue("a metadata template needs at least one item")
    state = _whole(doc.get("metaState"), "metaState")
    published = old.published if old is not None else True
    if state is not None:
        published = state == 1
    info = {**(dict(old.info) if old is not None else {}), "idhub": basic}
    return {
        "title": str(basic.get("metaName", "")),
        "info": info,
        "published": published,
        "fields": fields,
    }


def _idhub_fields(items: Any, old: Template | None) -> list[dict[str, Any]]:
    """Our fields from IDHub items; an item named as one of ``old``'s keeps that
    field's index and access level."""
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidValue("the items must be a list of objects")
    fields = [_idhub_field(i) for i in items]
    if old is not None:
        before = {f.type_name.upper(): (i, f.access) for i, f in old.indexed()}
        for spec in fields:
            kept = before.get(spec["valueType"].upper())
            if kept is not None:
                spec.setdefault("index", kept[0])
                spec["access"] = kept[1]
    _number_items(fields, old)
    return fields


def _idhub_field(item: Mapping[str, Any]) -> dict[str, Any]:
    name = _text(item, "englishName", limit=50)
    schema = item.get("itemSchemaCreateDTO") or item.get("itemSchemaVO") or {}
    if not isinstance(schema, dict):
        raise InvalidValue(f"{name}: itemSchemaCreateDTO must be an object")
    data_type = _whole(schema.get("dataType", 1), f"{name}: dataType") or 1
    kind = _IDHUB_TYPES.get(data_type)
    if kind is None:
        raise InvalidValue(
            f"{name}: dataType {data_type} (files, audio, video, images) is not supported;"
            " use 1 string, 2 number, 3 date or 5 reference"
        )
    if kind == "date" and schema.get("dateFormat", "YYYY-MM-DD") not in _ISO_DATES:
        kind = "string"  # another date format: kept as text, its format in info
    if kind == "reference" and _whole(schema.get("referenceType"), "referenceType") == 2:
        raise InvalidValue(f"{name}: one-to-many references (referenceType 2) are not supported")
    state = _whole(item.get("itemState"), "itemState")
    spec: dict[str, Any] = {
        "name": name,
        "valueType": name,
        "type": kind,
        "label": _text(item, "chineseName", required=False, limit=50),
        "required": _whole(item.get("required"), "required") == 1,
        "enabled": state in (None, 0),
        "info": {
            k: v
            for k, v in {
                **{k: item.get(k) for k in ("itemCode", "definition", "comment")},
                **{k: item.get(k) for k in ("inputNecessary", "listItemNecessary", "uniqueField")},
                "itemState": state,
                "schema": schema,
                "reference": item.get("itemReferenceDTO") or None,
            }.items()
            if v is not None
        },
    }
    index = _whole(item.get("itemIndex"), "itemIndex")
    if index is not None:
        spec["index"] = index
    if kind == "string":
        for key in ("minLength", "maxLength"):
            if schema.get(key) is not None:
                spec[key] = _whole(schema.get(key), key)
    if kind == "number" and isinstance(schema.get("numberRange"), str):
        match = _RANGE.match(schema["numberRange"])
        if match is None:
            raise InvalidValue(f"{name}: numberRange is [low,high], got {schema['numberRange']!r}")
        low, high = (float(g) if g else None for g in match.groups())
        spec |= {k: v for k, v in (("minimum", low), ("maximum", high)) if v is not None}
    return spec


def _data_type(kind: str, info: Mapping[str, Any]) -> int:
    schema = info.get("schema")
    if isinstance(schema, dict):
        given = _whole(schema.get("dataType"), "dataType")
        if given is not None:
            return given
    return _IDHUB_TYPE_NAMES.get(kind, 1)


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S") if epoch else ""


def idhub_meta_info(template: Template) -> dict[str, Any]:
    """``meta/info``'s answer for a template."""
    basic = template.info.get("idhub", {})
    items = []
    for index, spec in template.indexed():
        schema = (
            dict(spec.info.get("schema", {})) if isinstance(spec.info.get("schema"), dict) else {}
        )
        schema["dataType"] = _data_type(spec.type, spec.info)
        if spec.min_length is not None:
            schema["minLength"] = spec.min_length
        if spec.max_length is not None:
            schema["maxLength"] = spec.max_length
        item = {
            "itemIndex": index,
            "itemCode": spec.info.get("itemCode", spec.name),
            "englishName": spec.type_name if spec.value_type else spec.name,
            "chineseName": spec.label,
            "itemState": 0 if spec.enabled else 1,
            "required": 1 if spec.required else 0,
            **{
                k: spec.info[k]
                for k in (
                    "definition",
                    "comment",
                    "inputNecessary",
                    "listItemNecessary",
                    "uniqueField",
                )
                if k in spec.info
            },
            "itemSchemaVO": schema,
        }
        if isinstance(spec.info.get("reference"), dict):
            item["itemReferenceVO"] = spec.info["reference"]
        items.append(item)
    prefix = split_handle(template.name)[0] if "/" in template.name else ""
    return {
        **{k: basic.get(k, "") for k in _IDHUB_BASIC},
        "metaName": basic.get("metaName", template.title),
        "metaCode": basic.get("metaCode", template.name),
        "classifyName": basic.get("classifyCode", ""),
        "metaHandle": template.name,
        "metaState": 1 if template.published else 0,
        "metaContributor": template.owner or prefix,
        "isQuote": template.info.get("isQuote", 0),
        "itemVOS": items,
    }


def idhub_meta_object(template: Template) -> dict[str, Any]:
    """A template as a digital object (``0.TYPE/DO.DOIPMETA``), Op.Retrieve's answer."""
    info = idhub_meta_info(template)
    basic = {
        k: info[k]
        for k in (
            "metaName",
            "metaCode",
            "industryCategory",
            "industrySpecific",
            "industryTrade",
            "industrySubclass",
            "metaState",
            "metaContributor",
            "standard",
            "metaDesc",
            "isQuote",
        )
    }
    items = [
        {
            "itemBasicInfo": {
                "itemIndex": item["itemIndex"],
                "itemCode": item["itemCode"],
                "enName": item["englishName"],
                "cnName": item["chineseName"],
                "state": item["itemState"],
            },
            "itemSchemaInfo": item["itemSchemaVO"],
        }
        for item in info["itemVOS"]
    ]
    names = [item["englishName"] for item in info["itemVOS"]]
    return {
        "id": template.name,
        "type": "0.TYPE/DO.DOIPMETA",
        "attributes": {
            "content": {
                "basicInfo": basic,
                "itemInfos": items,
                "required": [n for n, f in zip(names, template.fields, strict=True) if f.required],
                "uniqueness": [],
                "inputItem": names,
                "listItem": [],
            }
        },
    }


def idhub_content_fields(template: Template, content: Any) -> dict[str, Any]:
    """The fields an IDHub ``attributes.content`` sets (``englishName: value``); the
    numbers its examples send as text are read as numbers."""
    if not isinstance(content, dict):
        raise InvalidValue("attributes.content must be an object of englishName: value")
    by_name = {(f.type_name if f.value_type else f.name): f for f in template.fields}
    given: dict[str, Any] = {}
    for key, value in content.items():
        spec = by_name.get(key)
        if spec is None:
            raise InvalidValue(f"{key} is not an item of {template.name}")
        if isinstance(value, list):
            raise InvalidValue(f"{key}: lists (files, several references) are not supported")
        number = spec.type == "number" and isinstance(value, str)
        given[spec.name] = _number(value) if number else value
    return given


def idhub_elements(
    template: Template | None, values: Sequence[HandleValue]
) -> list[dict[str, Any]]:
    """A record's values as Op.Retrieve's ``elements``: the template's items, named and
    typed as it says; other data values (not HS_) as text."""
    fields = dict(template.indexed()) if template is not None else {}
    out = []
    for value in values:
        if value.type.upper().startswith("HS_") or value.index == TEMPLATE_INDEX:
            continue
        text = value.data.decode("utf-8", "replace")
        spec = fields.get(value.index)
        data: Any = text
        if spec is not None and spec.type == "number":
            data = _number(text)
        out.append(
            {
                "index": value.index,
                "type": value.type,
                "name": spec.label if spec is not None else value.type,
                "data": data,
                "dataType": _data_type(spec.type, spec.info) if spec is not None else 1,
            }
        )
    return out


def record_times(values: Sequence[HandleValue]) -> dict[str, str]:
    stamps = [v.timestamp for v in values if v.timestamp]
    return {
        "createTime": _time(min(stamps, default=0)),
        "updateTime": _time(max(stamps, default=0)),
    }
