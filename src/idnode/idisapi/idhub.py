"""The enterprise node's standard API (IDHub, DOIP style): identities, objects,
metadata templates, grants.

An application identity (a handle with an HS_PUBKEY) asks for a nonce, signs it
(SHA256withRSA, or SM2 with SM3) and gets a bearer token; then

- ``/api/v1/doip?targetId=&operationId=0.DOIP/Op.*`` creates, updates, deletes and
  retrieves instances and metadata templates;
- ``/api/v1/open/meta/*`` manages metadata templates (our templates named
  ``<prefix>/META_<code>``: the same ones SNMS and ``/api/templates`` see);
- ``/api/v1/open/handle/page`` lists the instances of a template;
- ``/api/v1/single-handle/authorization`` grants identities reading or writing one
  instance, as HS_ADMIN values of that record, which the Handle protocol honours.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from idnode.domain import MAX_LIMIT, AuditQuery, SearchQuery
from idnode.errors import (
    AuthenticationNeeded,
    BadRequestParameter,
    IdnodeError,
    InvalidValue,
    NoSuchTemplate,
    OperationNotSupported,
)
from idnode.idisapi import shapes
from idnode.idisapi.common import authenticating, bearer_caller, body, idhub_ok, origin_of
from idnode.names import split_handle
from idnode.service import Caller
from idnode.service.offloop import OffLoop
from idnode.service.templates import GRANT_INFO
from idnode.templates import TEMPLATE_INDEX, TEMPLATE_TYPE, Template

__all__ = [
    "challenge",
    "classify_query",
    "doip",
    "handle_page",
    "meta_baseon_create",
    "meta_create",
    "meta_delete",
    "meta_grant",
    "meta_info",
    "meta_page",
    "meta_publish",
    "meta_update_basic",
    "meta_update_item",
    "single_handle_authorization",
    "verify_response",
]

META_TYPE = "0.TYPE/DO.DOIPMETA"
OPERATIONS = (
    "0.DOIP/Op.Hello",
    "0.DOIP/Op.ListOperations",
    "0.DOIP/Op.Create",
    "0.DOIP/Op.Retrieve",
    "0.DOIP/Op.Update",
    "0.DOIP.EXTEND/Op.Update.Non.Overlay",
    "0.DOIP/Op.Delete",
)


def _param(request: Request, name: str, *, required: bool = True) -> str:
    # The documentation's examples quote some values (metaHandle="88.1/META_x").
    value = request.query_params.get(name, "").strip().strip('"')
    if required and not value:
        raise BadRequestParameter(f"request parameter error: {name} is required")
    return value


def _page(request: Request) -> tuple[int, int]:
    try:
        page = int(request.query_params.get("page", "0") or 0)
        size = int(request.query_params.get("size", "10") or 10)
    except ValueError as exc:
        raise BadRequestParameter("page and size must be whole numbers") from exc
    if page < 0 or not 0 < size <= 1000:
        raise BadRequestParameter("page >= 0 and size 1 to 1000")
    return page, size


def _paged(content: list[Any], total: int, page: int, size: int) -> dict[str, Any]:
    return {
        "pageSize": size,
        "pageNumber": page + 1,
        "totalCount": total,
        "totalPage": (total + size - 1) // size,
        "content": content,
    }


def _object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidValue("the body must be a JSON object")
    return doc


def _prefix_of(caller: Caller) -> str:
    if caller.identity is None:
        raise AuthenticationNeeded("log in first")
    return split_handle(caller.identity.handle)[0]


# -- identities --------------------------------------------------------------------------


async def challenge(off: OffLoop, request: Request) -> Response:
    """``GET /api/v1/doip/public/challenge?handle=``: a nonce for the handle's key."""
    handle = _param(request, "handle")
    return idhub_ok(await off.write(off.service.sessions.idhub_challenge, handle))


async def verify_response(off: OffLoop, request: Request) -> Response:
    """``POST`` (and the SDK's ``GET`` with a body) ``/api/v1/doip/public/verify-response``."""
    doc = _object(await body(request))
    handle, signature = doc.get("handle"), doc.get("signature")
    if not isinstance(handle, str) or not isinstance(signature, str):
        raise BadRequestParameter("handle and signature are required")
    sessions = off.service.sessions

    def verify() -> Awaitable[Caller]:
        return off.write(sessions.idhub_verify, handle, signature, origin_of(request))

    caller = await authenticating(request, verify)
    issued, _ = await off.write(sessions.issue_token, caller)
    return idhub_ok({"token": issued})


# -- digital objects ---------------------------------------------------------------------


async def _template_named(off: OffLoop, name: str) -> Template | None:
    if "/" not in name:
        return None
    try:
        return await off.read(off.service.templates.template, name)
    except NoSuchTemplate:
        return None


async def _record_template(off: OffLoop, values: Any) -> Template | None:
    named = next((v for v in values if v.index == TEMPLATE_INDEX and v.type == TEMPLATE_TYPE), None)
    if named is None:
        return None
    try:
        return await off.read(off.service.templates.template, named.data.decode("utf-8"))
    except (NoSuchTemplate, UnicodeDecodeError):
        return None


async def doip(off: OffLoop, request: Request) -> Response:
    """``/api/v1/doip?targetId=&operationId=``: one DOIP operation on one object."""
    target = _param(request, "targetId", required=False)
    operation = _param(request, "operationId")
    if operation == "0.DOIP/Op.Hello":
        return idhub_ok(
            {
                "id": target,
                "type": "0.TYPE/DO.DOIPServiceInfo",
                "attributes": {"protocol": "DOIP", "server": "idnode"},
            }
        )
    if operation == "0.DOIP/Op.ListOperations":
        return idhub_ok(list(OPERATIONS))
    if operation not in OPERATIONS:
        raise OperationNotSupported(f"unsupported operation {operation!r}")
    if not target:
        raise BadRequestParameter("request parameter error: targetId is required")
    required = operation != "0.DOIP/Op.Retrieve"
    caller = await bearer_caller(off, request, required=required)
    if operation == "0.DOIP/Op.Retrieve":
        return await _retrieve(off, target, caller)
    doc = await body(request) if request.method == "POST" else None
    if operation == "0.DOIP/Op.Delete":
        return await _delete(off, target, caller)
    doc = _object(doc)
    kind = doc.get("type")
    attributes = doc.get("attributes") or {}
    if not isinstance(kind, str) or not kind or not isinstance(attributes, dict):
        raise BadRequestParameter('the body is {"type": ..., "attributes": {"content": {...}}}')
    content = attributes.get("content")
    if kind == META_TYPE:
        return await _write_meta(off, target, content, caller, operation)
    template = await off.read(off.service.templates.template, kind)
    fields = shapes.idhub_content_fields(template, content)
    writes = off.service.writes
    if operation == "0.DOIP/Op.Create":
        await off.write(writes.create_from_template, target, template.reference, fields, caller)
    else:
        merge = operation == "0.DOIP.EXTEND/Op.Update.Non.Overlay"
        await off.write(
            writes.update_fields, target, fields, caller, merge=merge, template=template.name
        )
    return idhub_ok({"type": template.name, "attributes": {"content": content}})


async def _retrieve(off: OffLoop, target: str, caller: Caller) -> Response:
    template = await _template_named(off, target)
    if template is not None and template.published:
        return idhub_ok(shapes.idhub_meta_object(template))
    record = await off.resolve(target, caller=caller, public_only=not caller.authenticated)
    made_from = await _record_template(off, record.values)
    meta = shapes.record_times(record.values)
    return idhub_ok(
        {
            "id": record.handle,
            "type": made_from.name if made_from is not None else "0.TYPE/DO",
            "attributes": {
                "attributes": {"metaData": meta},
                "elements": shapes.idhub_elements(made_from, record.values),
            },
        }
    )


async def _delete(off: OffLoop, target: str, caller: Caller) -> Response:
    template = await _template_named(off, target)
    if template is not None:
        if template.published:
            raise InvalidValue(f"{template.name} is published: withdraw it first")
        await off.write(off.service.templates.delete_template, template.name, caller)
    else:
        await off.write(off.service.writes.delete_handle, target, caller)
    return idhub_ok()


async def _write_meta(
    off: OffLoop, target: str, content: Any, caller: Caller, operation: str
) -> Response:
    doc = _object(content)
    templates = off.service.templates
    if operation == "0.DOIP/Op.Create":
        definition = shapes.idhub_definition(doc)
        await off.write(templates.define_template, target, definition, caller, new=True)
    else:
        items = doc.get("metaItemCreateDTOS") or doc.get("metaItemDTOS")
        await _redefine(off, caller, doc, target, items=items)
    return idhub_ok({"type": META_TYPE, "attributes": {"content": {"metaHandle": target}}})


# -- metadata templates ------------------------------------------------------------------


async def meta_create(off: OffLoop, request: Request) -> Response:
    caller = await bearer_caller(off, request)
    doc = _object(await body(request))
    name = doc.get("metaHandle") or f"{_prefix_of(caller)}/META_{secrets.token_hex(8)}"
    if not isinstance(name, str):
        raise BadRequestParameter("metaHandle must be <prefix>/META_<code>")
    definition = shapes.idhub_definition(doc)
    templates = off.service.templates
    made = await off.write(templates.define_template, name, definition, caller, new=True)
    return idhub_ok({"metaHandle": made.name, "metaId": made.version})


async def meta_info(off: OffLoop, request: Request) -> Response:
    """A template, to any identity with a token: our templates are not secret (they
    are listed at ``/api/templates``), only who may use them is restricted."""
    await bearer_caller(off, request)
    name = _param(request, "metaHandle")
    template = await off.read(off.service.templates.template, name)
    return idhub_ok(shapes.idhub_meta_info(template))


async def meta_update_basic(off: OffLoop, request: Request) -> Response:
    caller = await bearer_caller(off, request)
    doc = _object(await body(request))
    return await _redefine(off, caller, doc, doc.get("metaHandle"), items=None)


async def meta_update_item(off: OffLoop, request: Request) -> Response:
    caller = await bearer_caller(off, request)
    doc = _object(await body(request))
    name = doc.get("metaHandle") or doc.get("metaHanlde")  # the documentation's spelling
    items = doc.get("metaItemDTOS")
    if not isinstance(items, list):
        raise BadRequestParameter("metaItemDTOS, the template's items, is required")
    return await _redefine(off, caller, {}, name, items=items)


async def _redefine(off: OffLoop, caller: Caller, doc: Any, name: Any, *, items: Any) -> Response:
    if not isinstance(name, str) or not name:
        raise BadRequestParameter("metaHandle is required")
    templates = off.service.templates
    old = await off.read(templates.template, name)
    if old.info.get("isQuote") and items is not None:
        raise InvalidValue("the items of a copied template cannot be changed")
    definition = shapes.idhub_definition(doc, old=old, items=items)
    await off.write(templates.define_template, name, definition, caller)
    return idhub_ok()


async def meta_delete(off: OffLoop, request: Request) -> Response:
    caller = await bearer_caller(off, request)
    names = [n for v in request.query_params.getlist("metaHandleList") for n in v.split(",")]
    names = [n.strip().strip('"') for n in names if n.strip()]
    if not names:
        raise BadRequestParameter("metaHandleList is required")
    templates = off.service.templates
    for name in names:  # all checked before any is deleted
        try:
            template = await off.read(templates.template, name)
            if template.published:
                raise InvalidValue("it is published: withdraw it first")
        except IdnodeError as exc:
            return _failed(f"failed to delete metadata [{name}]: {exc.message}", 606)
    for name in names:
        try:
            await off.write(templates.delete_template, name, caller)
        except IdnodeError as exc:
            return _failed(f"failed to delete metadata [{name}]: {exc.message}", 606)
    return idhub_ok()


def _failed(message: str, code: int) -> Response:
    text = json.dumps({"message": message, "code": code}, ensure_ascii=False)
    return Response(text, media_type="application/json")


async def meta_grant(off: OffLoop, request: Request) -> Response:
    """Who may use a template for records: ``scope`` 1 anyone, 2 the identities
    listed (and the prefix's administrators)."""
    caller = await bearer_caller(off, request)
    doc = _object(await body(request))
    scope = doc.get("scope")
    if scope not in (1, 2):
        raise BadRequestParameter("scope must be 1 (public) or 2 (the identities listed)")
    name = doc.get("metaHandle")
    if not isinstance(name, str) or not name:
        raise BadRequestParameter("metaHandle is required")
    added = doc.get("handleUsers") or doc.get("handleList") or []
    removed = doc.get("removeHandleUsers") or []
    if not all(
        isinstance(given, list) and all(isinstance(h, str) for h in given)
        for given in (added, removed)
    ):
        raise BadRequestParameter("handleUsers and removeHandleUsers are lists of handles")
    templates = off.service.templates
    old = await off.read(templates.template, name)
    grant = old.info.get(GRANT_INFO, {})
    users = [u for u in grant.get("users", []) if u not in removed]
    users += [u for u in added if u not in users]
    definition = old.to_json() | {
        "info": {**old.info, GRANT_INFO: {"scope": scope, "users": users}}
    }
    await off.write(templates.define_template, name, definition, caller)
    return idhub_ok()


async def meta_publish(off: OffLoop, request: Request) -> Response:
    caller = await bearer_caller(off, request)
    doc = _object(await body(request))
    names, op = doc.get("metaHandleList"), doc.get("opType")
    if op not in ("publish", "withdraw"):
        raise BadRequestParameter("opType is publish or withdraw")
    if not isinstance(names, list) or not names:
        raise BadRequestParameter("metaHandleList is required")
    templates = off.service.templates
    results = []
    for name in names:
        try:
            if not isinstance(name, str):
                raise InvalidValue("a metaHandle is a string")
            old = await off.read(templates.template, name)
            if old.published != (op == "publish"):
                definition = old.to_json() | {"published": op == "publish"}
                await off.write(templates.define_template, name, definition, caller)
            results.append({"metaHandle": name, "state": "success", "reason": ""})
        except IdnodeError as exc:
            results.append({"metaHandle": name, "state": "failed", "reason": exc.message})
    return idhub_ok(results)


async def meta_page(off: OffLoop, request: Request) -> Response:
    """The caller's prefix's templates, by classification and state."""
    caller = await bearer_caller(off, request)
    prefix = _prefix_of(caller)
    page, size = _page(request)
    classify = _param(request, "classifyCode", required=False)
    only = _param(request, "metaHandle", required=False)
    state = _param(request, "metaState", required=False)
    found = []
    for template in await off.read(off.service.templates.templates):
        if template.owner.upper() != prefix.upper():
            continue
        info = shapes.idhub_meta_info(template)
        if classify and info.get("classifyCode") != classify:
            continue
        if only and template.name.upper() != only.upper():
            continue
        if state and str(info["metaState"]) != state:
            continue
        found.append(
            {
                "metaHandle": template.name,
                "metaCode": info["metaCode"],
                "metaName": info["metaName"],
                "metaState": info["metaState"],
                "isQuote": info["isQuote"],
                "id": template.version,
                "createdTime": "",
                "classifyName": info.get("classifyCode", ""),
            }
        )
    return idhub_ok(_paged(found[page * size : (page + 1) * size], len(found), page, size))


async def classify_query(off: OffLoop, request: Request) -> Response:
    """The classifications the node's templates use (idnode keeps no tree of its
    own: each code is a top-level class)."""
    await bearer_caller(off, request)
    codes = ["UN_CLASSIFIED"]
    for template in await off.read(off.service.templates.templates):
        code = template.info.get("idhub", {}).get("classifyCode")
        if isinstance(code, str) and code and code not in codes:
            codes.append(code)
    return idhub_ok(
        [
            {
                "id": n,
                "parentId": 0,
                "sort": n,
                "children": [],
                "classifyName": code,
                "classifyCode": code,
                "ancestors": "0",
                "level": 1,
            }
            for n, code in enumerate(codes, start=1)
        ]
    )


async def meta_baseon_create(off: OffLoop, request: Request) -> Response:
    """A copy of another template (public, or granted to the caller) for the caller's
    prefix; its items cannot be changed."""
    caller = await bearer_caller(off, request)
    doc = _object(await body(request))
    source, basic = doc.get("baseonHandle"), doc.get("baseInfo") or {}
    if not isinstance(source, str) or not isinstance(basic, dict) or not basic.get("metaCode"):
        raise BadRequestParameter("baseonHandle and baseInfo.metaCode are required")
    templates = off.service.templates
    original = await off.read(templates.for_new_record, source, caller)
    name = basic.get("metaHandle") or f"{_prefix_of(caller)}/META_{secrets.token_hex(5)}"
    idhub = {**original.info.get("idhub", {}), **{k: basic[k] for k in basic if k != "metaHandle"}}
    info = {k: v for k, v in original.info.items() if k != GRANT_INFO}
    definition = original.to_json() | {"info": {**info, "idhub": idhub, "isQuote": 1}}
    made = await off.write(templates.define_template, name, definition, caller, new=True)
    return idhub_ok({"metaHandle": made.name})


# -- instances ---------------------------------------------------------------------------


async def handle_page(off: OffLoop, request: Request) -> Response:
    """The records made from a template (those whose TEMPLATE value is public, as
    search finds)."""
    caller = await bearer_caller(off, request)
    name = _param(request, "metaHandle")
    only = _param(request, "handleName", required=False)
    page, size = _page(request)
    template = await off.read(off.service.templates.template, name)
    prefix = template.owner or None
    reads = off.service.reads
    every = await off.read(reads.search, SearchQuery(prefix, template.name, limit=MAX_LIMIT))
    if only:
        every = [h for h in every if h.upper() == only.upper()]
    content = []
    for handle in every[page * size : (page + 1) * size]:
        record = await off.resolve(handle, caller=caller, public_only=False)
        audit = await off.read(off.service.writes.audit_log, AuditQuery(handle=handle))
        created = [e for e in audit if e.operation == "create"]
        times = shapes.record_times(record.values)
        content.append(
            {
                "handleName": handle,
                "createTime": times["createTime"],
                "createdTime": times["createTime"],
                "updateTime": times["updateTime"],
                "createdBy": created[-1].actor if created else "",
            }
        )
    return idhub_ok(_paged(content, len(every), page, size))


async def single_handle_authorization(off: OffLoop, request: Request) -> Response:
    """Who may read and write one record: ``grantType`` 2 decides for this record
    (``readerScope`` 1: anyone reads it; 2: only the readers granted), 1 puts it back
    to its template's levels. Readers and writers listed are added or removed."""
    caller = await bearer_caller(off, request)
    doc = _object(await body(request))
    handle, kind, scope = doc.get("handle"), doc.get("grantType"), doc.get("readerScope")
    if not isinstance(handle, str) or not handle:
        raise BadRequestParameter("handle is required")
    if kind not in (1, 2):
        raise BadRequestParameter("grantType must be 1 (as its class) or 2 (this record)")
    if kind == 2 and scope not in (1, 2):
        raise BadRequestParameter("readerScope must be 1 (public) or 2 (those listed)")

    def names(key: str) -> list[str]:
        given = doc.get(key) or []
        if not isinstance(given, list) or not all(isinstance(h, str) for h in given):
            raise BadRequestParameter(f"{key} must be a list of identity handles")
        return given

    await off.write(
        off.service.writes.change_access,
        handle,
        caller,
        readers=(names("handleUserReaders"), names("delHandleUserReaders")),
        writers=(names("handleUserWriters"), names("delHandleUserWriters")),
        reading=("public" if scope == 1 else "restricted") if kind == 2 else "template",
    )
    return idhub_ok()
