"""The secondary node's management API (SNMS): logins, records, templates.

An enterprise's business system logs in with an account (``idnode account add``),
gets a bearer token, and registers identifiers from its templates:

- ``POST /identity/token`` (password in clear) and ``/identity/token/v1`` (the
  password as ``sha256(sha256(password) + date)``, for accounts made with
  ``--date-digest``);
- ``GET /identityv2/data/detail?handle=``, ``POST|PUT|DELETE /identityv2/data`` and
  the batches ``batchCreate``, ``batchUpdate``, ``batchDelete`` (at most 2,000);
- ``/snms/api/v3/template`` and ``/snms/api/v5/template`` (GET by ``prefix`` and
  ``version``, POST, v5 PUT, DELETE).

A record's ``templateVersion`` names a template of its prefix (``<prefix>/META_<
version>``) or one of the node's (``serial-item``). Every operation is the service's
own: permissions, template checks and the audit log are those of every other API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from idnode.errors import BadRequestParameter, IdnodeError, InvalidValue, NoSuchTemplate
from idnode.idisapi import shapes
from idnode.idisapi.common import (
    MAX_BATCH,
    authenticating,
    bearer_caller,
    body,
    origin_of,
    snms_ok,
)
from idnode.names import split_handle
from idnode.service import Caller
from idnode.service.offloop import OffLoop
from idnode.templates import Template

__all__ = [
    "batch_create",
    "batch_delete",
    "batch_update",
    "data",
    "detail",
    "template_v3",
    "template_v5",
    "token",
    "token_v1",
]


def _object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidValue("the body must be a JSON object")
    return doc


def _login(doc: Any) -> tuple[str, str]:
    doc = _object(doc)
    name, password = doc.get("username"), doc.get("password")
    if not isinstance(name, str) or not name or not isinstance(password, str) or not password:
        raise InvalidValue("username and password are required")
    return name, password


async def _issue(off: OffLoop, caller: Caller, account: str) -> Response:
    issued, _ = await off.write(off.service.sessions.issue_token, caller, account)
    return snms_ok({"token": issued})


async def token(off: OffLoop, request: Request) -> Response:
    """``POST /identity/token``: the account's password in clear."""
    return await _log_in(off, request, off.service.accounts.log_in)


async def token_v1(off: OffLoop, request: Request) -> Response:
    """``POST /identity/token/v1``: the password as today's digest."""
    return await _log_in(off, request, off.service.accounts.log_in_with_date_digest)


async def _log_in(
    off: OffLoop, request: Request, check: Callable[[str, str, str], Caller]
) -> Response:
    """A token for the account ``check`` finds the body's user name and password
    (or digest) right for, counted against the address's failed authentications."""
    name, password = _login(await body(request))

    def log_in() -> Awaitable[Caller]:
        return off.read(check, name, password, origin_of(request))

    return await _issue(off, await authenticating(request, log_in), name)


# -- records ---------------------------------------------------------------------------


async def _template_for(off: OffLoop, handle: str, version: Any) -> Template:
    """The template ``templateVersion`` names for a record ``handle``: its prefix's
    ``META_<version>``, else the node's template of that name."""
    if not isinstance(version, str) or not version:
        raise InvalidValue("templateVersion is required")
    return await _named(off, split_handle(handle)[0], version)


async def _named(off: OffLoop, prefix: str, version: str) -> Template:
    """The template SNMS calls ``version`` of ``prefix``: the prefix's own
    ``META_<version>``, else the node's template of that name."""
    templates = off.service.templates
    try:
        return await off.read(templates.template, shapes.snms_template_name(prefix, version))
    except NoSuchTemplate:
        return await off.read(templates.template, version)


def _record_doc(doc: Any) -> tuple[str, Any, Any]:
    doc = _object(doc)
    handle = doc.get("handle")
    if not isinstance(handle, str) or not handle or len(handle) > 255:
        raise InvalidValue("handle is required (at most 255 characters)")
    return handle, doc.get("templateVersion"), doc.get("value")


async def _create(off: OffLoop, doc: Any, caller: Caller) -> str:
    handle, version, items = _record_doc(doc)
    template = await _template_for(off, handle, version)
    fields = shapes.snms_fields(template, items)
    writes = off.service.writes
    return await off.write(writes.create_from_template, handle, template.reference, fields, caller)


async def _update(off: OffLoop, doc: Any, caller: Caller) -> str:
    handle, version, items = _record_doc(doc)
    template = await _template_for(off, handle, version)
    fields = shapes.snms_fields(template, items)
    writes = off.service.writes
    await off.write(writes.update_fields, handle, fields, caller, template=template.name)
    return handle


async def detail(off: OffLoop, request: Request) -> Response:
    """``GET /identityv2/data/detail?handle=``: what the caller may read of a record."""
    caller = await bearer_caller(off, request)
    handle = request.query_params.get("handle", "")
    if not handle:
        raise BadRequestParameter("missing the required request parameter: handle")
    record = await off.resolve(handle, caller=caller, public_only=False)
    prefix = split_handle(record.handle)[0]
    version, items = shapes.snms_items(record.values, prefix)
    return snms_ok(
        {"prefix": prefix, "handle": record.handle, "templateVersion": version, "value": items}
    )


async def data(off: OffLoop, request: Request) -> Response:
    """``POST`` (register), ``PUT`` (update the values given), ``DELETE`` a record."""
    caller = await bearer_caller(off, request)
    doc = await body(request)
    if request.method == "POST":
        await _create(off, doc, caller)
    elif request.method == "PUT":
        await _update(off, doc, caller)
    else:
        handle, _, _ = _record_doc(doc)
        await off.write(off.service.writes.delete_handle, handle, caller)
    return snms_ok(True)


def _batch(doc: Any, key: str) -> list[Any]:
    if isinstance(doc, dict) and isinstance(doc.get(key), list):
        doc = doc[key]
    if not isinstance(doc, list) or not doc:
        raise InvalidValue("the body must be a non-empty JSON array")
    if len(doc) > MAX_BATCH:
        raise InvalidValue(f"at most {MAX_BATCH} records per batch, got {len(doc)}")
    return doc


def _name_of(item: Any) -> str:
    if isinstance(item, dict) and isinstance(item.get("handle"), str):
        return str(item["handle"])
    return item if isinstance(item, str) else ""


async def batch_create(off: OffLoop, request: Request) -> Response:
    return await _batch_of(off, request, _create)


async def batch_update(off: OffLoop, request: Request) -> Response:
    return await _batch_of(off, request, _update)


async def _batch_of(off: OffLoop, request: Request, write: Any) -> Response:
    """Each record written on its own: one that fails is named with the reason, the
    others are written (SNMS's batch answers per record, status 1 overall)."""
    caller = await bearer_caller(off, request)
    results = []
    for item in _batch(await body(request), "records"):
        try:
            await write(off, item, caller)
            message = "success"
        except IdnodeError as exc:
            message = exc.message
        results.append({"handle": _name_of(item), "msg": message})
    return snms_ok(results)


async def batch_delete(off: OffLoop, request: Request) -> Response:
    caller = await bearer_caller(off, request)
    results = []
    for item in _batch(await body(request), "handles"):
        try:
            if not isinstance(item, str):
                raise InvalidValue("each entry is a handle, as a string")
            await off.write(off.service.writes.delete_handle, item, caller)
            results.append({"handle": item, "code": 1, "msg": "success"})
        except IdnodeError as exc:
            results.append({"handle": _name_of(item), "code": -2, "msg": exc.message})
    return snms_ok(results)


# -- templates -------------------------------------------------------------------------


def _prefix_version(doc: Any) -> tuple[str, str]:
    if not isinstance(doc, dict):
        raise InvalidValue("give prefix and version")
    prefix, version = doc.get("prefix"), doc.get("version")
    if not isinstance(prefix, str) or not prefix or len(prefix) > 64:
        raise InvalidValue("prefix is required (at most 64 characters)")
    if not isinstance(version, str) or not version or len(version) > 128:
        raise InvalidValue("version is required (at most 128 characters)")
    return prefix, version


async def template_v3(off: OffLoop, request: Request) -> Response:
    return await _template(off, request, v5=False)


async def template_v5(off: OffLoop, request: Request) -> Response:
    return await _template(off, request, v5=True)


async def _template(off: OffLoop, request: Request, *, v5: bool) -> Response:
    caller = await bearer_caller(off, request)
    templates = off.service.templates
    if request.method == "GET":
        prefix, version = _prefix_version(dict(request.query_params))
        template = await _named(off, prefix, version)
        return snms_ok(shapes.snms_template(template, prefix, v5=v5))
    doc = await body(request)
    prefix, version = _prefix_version(doc)
    name = shapes.snms_template_name(prefix, version)
    if request.method == "DELETE":
        await off.write(templates.delete_template, name, caller)
    elif request.method == "POST":
        definition = shapes.snms_definition(doc, with_indexes=v5)
        await off.write(templates.define_template, name, definition, caller, new=True)
    else:  # PUT, v5 only
        old = await off.read(templates.template, name)
        definition = shapes.snms_definition(doc, with_indexes=True, old=old)
        await off.write(templates.define_template, name, definition, caller)
    return snms_ok(True)
