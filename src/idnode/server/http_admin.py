"""Writes and listings of the Handle.Net JSON API: PUT, DELETE, GET ?prefix=.

Every request here needs credentials (see :mod:`idnode.server.http_auth`); without
them the answer is 401 with ``WWW-Authenticate`` offering Basic and a fresh session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode.bodies import parse_json
from idnode.errors import BadRequestParameter, IdnodeError, InvalidValue
from idnode.handle.codes import ResponseCode
from idnode.handle.values import HandleValue
from idnode.jsonformat import value_from_json
from idnode.server.http_auth import caller_of, error
from idnode.service import Caller
from idnode.service.offloop import OffLoop
from idnode.templates import parse_readers

__all__ = ["delete_handle", "list_handles", "put_handle", "query_flag", "query_number"]

MAX_BODY = 4 * 1024 * 1024
MAX_PAGE_SIZE = 10_000
#: The last page number taken: far past any listing, and its offset still fits the
#: database's integers.
MAX_PAGE_NUMBER = 1_000_000_000


@overload
def query_number(params: Mapping[str, str], name: str) -> int | None: ...
@overload
def query_number(params: Mapping[str, str], name: str, default: int) -> int: ...
def query_number(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    """A non-negative whole number from the query string, ``default`` when absent."""
    text = params.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise BadRequestParameter(f"{name} must be a whole number, got {text!r}")
    return int(text)


def query_flag(params: Sequence[tuple[str, str]], name: str, default: bool) -> bool:
    for key, value in params:
        if key == name:
            return value.lower() not in ("false", "0", "no")
    return default


async def json_body(request: Request) -> Any:
    """The request's JSON document ({} when empty); InvalidValue if it is not JSON."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidValue(f"request body over {MAX_BODY} bytes")
    return parse_json(body or b"{}")


def _values(doc: Any) -> tuple[HandleValue, ...]:
    values = doc.get("values") if isinstance(doc, dict) else doc
    if not isinstance(values, list):
        raise InvalidValue("the body needs a 'values' list")
    return tuple(value_from_json(v) for v in values)


def _indexes(params: Sequence[tuple[str, str]]) -> tuple[int, ...] | None:
    """The ``index=`` parameters; None if absent, () for ``index=various``."""
    given = [v for k, v in params if k == "index"]
    if not given:
        return None
    if any(v.lower() == "various" for v in given):
        return ()
    try:
        return tuple(int(v) for v in given)
    except ValueError as exc:
        raise BadRequestParameter("index must be an integer or 'various'") from exc


def _ok(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), **body}, status_code=status)


async def put_handle(off: OffLoop, request: Request, handle: str) -> Response:
    params = list(request.query_params.multi_items())
    service = off.service
    try:
        caller = await caller_of(off, request)
        doc = await json_body(request)
        if isinstance(doc, dict) and "template" in doc:
            return await _put_from_template(off, handle, doc, params, caller)
        values = _values(doc)
        indexes = _indexes(params)
        if indexes is not None:
            if indexes:
                values = tuple(v for v in values if v.index in indexes)
            await off.write(service.writes.put_values, handle, values, caller)
            return _ok({"handle": handle})
        mint = query_flag(params, "mintNewSuffix", default=False)
        overwrite = query_flag(params, "overwrite", default=True)
        existed = not mint and await off.read(service.reads.exists, handle)
        made = await off.write(
            service.writes.create_handle,
            handle,
            values,
            caller,
            overwrite=overwrite,
            mint_suffix=mint,
        )
    except IdnodeError as exc:
        return await error(off, exc, handle, request=request)
    return _ok({"handle": made}, 200 if existed else 201)


async def _put_from_template(
    off: OffLoop,
    handle: str,
    doc: dict[str, Any],
    params: Sequence[tuple[str, str]],
    caller: Caller,
) -> Response:
    """``{"template": ..., "fields": {...}, "readers": "index:handle"}``: a record made
    from a template (see :mod:`idnode.templates`)."""
    template, fields, readers = doc.get("template"), doc.get("fields", {}), doc.get("readers")
    if not isinstance(template, str) or not isinstance(fields, dict):
        raise InvalidValue('a record from a template is {"template": name, "fields": {...}}')
    if readers is not None and not isinstance(readers, str):
        raise InvalidValue(
            "readers must be INDEX:HANDLE of the reader group, e.g. 200:88.100.1/PARTNERS"
        )
    group = parse_readers(readers) if readers else None
    overwrite = query_flag(params, "overwrite", default=True)
    service = off.service
    existed = await off.read(service.reads.exists, handle)
    made = await off.write(
        service.writes.create_from_template,
        handle,
        template,
        fields,
        caller,
        readers=group,
        overwrite=overwrite,
    )
    return _ok({"handle": made}, 200 if existed else 201)


async def delete_handle(off: OffLoop, request: Request, handle: str) -> Response:
    params = list(request.query_params.multi_items())
    writes = off.service.writes
    try:
        caller = await caller_of(off, request)
        indexes = _indexes(params)
        if indexes:
            await off.write(writes.remove_values, handle, indexes, caller)
        else:
            await off.write(writes.delete_handle, handle, caller)
    except IdnodeError as exc:
        return await error(off, exc, handle, request=request)
    return _ok({"handle": handle})


async def list_handles(off: OffLoop, request: Request) -> Response:
    prefix = request.query_params.get("prefix", "")
    try:
        if not prefix:
            raise BadRequestParameter("give the prefix to list: ?prefix=88.100.1")
        try:
            page = int(request.query_params.get("page", "0"))
            size = int(request.query_params.get("pageSize", "-1"))
        except ValueError as exc:
            raise BadRequestParameter("page and pageSize must be integers") from exc
        if not 0 <= page <= MAX_PAGE_NUMBER or size == 0 or size < -1 or size > MAX_PAGE_SIZE:
            raise BadRequestParameter(
                f"page 0..{MAX_PAGE_NUMBER} and pageSize 1..{MAX_PAGE_SIZE} (or -1: all)"
            )
        caller = await caller_of(off, request)
        limit = None if size == -1 else size
        handles, total = await off.read(
            off.service.writes.list_handles, prefix, caller, page * max(size, 0), limit
        )
    except IdnodeError as exc:
        return await error(off, exc, request=request)
    body: dict[str, Any] = {"prefix": prefix, "totalCount": str(total), "handles": handles}
    if size != -1:
        body |= {"page": page, "pageSize": size}
    return _ok(body)
