"""Writes and listings of the Handle.Net JSON API: PUT, DELETE, GET ?prefix=.

Clients written for the Handle.Net server (pyhandle's REST client, curl scripts)
authenticate with HTTP Basic: the user name is ``index:handle`` of a secret key value,
URL-encoded (``300%3A88.100.1/ADMIN``), the password is the secret. A write without
credentials gets 401 with ``WWW-Authenticate: Basic realm="handle"``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    BadRequestParameter,
    IdnodeError,
    InvalidValue,
    http_status_of,
)
from idnode.handle.codes import ResponseCode
from idnode.handle.values import HandleValue, ValueReference
from idnode.jsonformat import value_from_json
from idnode.server.problems import problem
from idnode.service import Caller, NodeService

__all__ = ["caller_of", "delete_handle", "list_handles", "put_handle"]

MAX_BODY = 4 * 1024 * 1024
MAX_PAGE_SIZE = 10_000
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="handle"'}


def error(exc: IdnodeError, handle: str | None = None) -> Response:
    response = problem(exc, handle)
    if http_status_of(exc) == 401:
        response.headers.update(_CHALLENGE)
    return response


def caller_of(service: NodeService, request: Request) -> Caller:
    """The authenticated caller of a request, or AuthenticationNeeded/Failed."""
    origin = f"http {request.client.host if request.client else 'unknown'}"
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if not header:
        raise AuthenticationNeeded("this operation needs HTTP Basic credentials")
    if scheme.lower() != "basic":
        raise AuthenticationNeeded(f"authentication scheme {scheme!r} is not supported; use Basic")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationFailed("malformed Basic credentials") from exc
    user, sep, password = decoded.partition(":")
    index_text, _, handle = unquote(user).partition(":")
    if not sep or not handle or not index_text.isdigit():
        raise AuthenticationFailed("the user name must be index:handle, e.g. 300%3A0.NA/88.100.1")
    identity = ValueReference(handle, int(index_text))
    return service.authenticate_password(identity, password.encode("utf-8"), origin)


def _flag(params: Sequence[tuple[str, str]], name: str, default: bool) -> bool:
    for key, value in params:
        if key == name:
            return value.lower() not in ("false", "0", "no")
    return default


async def _values(request: Request) -> tuple[HandleValue, ...]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidValue(f"request body over {MAX_BODY} bytes")
    try:
        doc: Any = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"request body is not JSON: {exc}") from exc
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


async def put_handle(service: NodeService, request: Request, handle: str) -> Response:
    params = list(request.query_params.multi_items())
    try:
        caller = caller_of(service, request)
        values = await _values(request)
        indexes = _indexes(params)
        if indexes is not None:
            if indexes:
                values = tuple(v for v in values if v.index in indexes)
            service.put_values(handle, values, caller)
            return _ok({"handle": handle})
        mint = _flag(params, "mintNewSuffix", default=False)
        overwrite = _flag(params, "overwrite", default=True)
        existed = not mint and service.exists(handle)
        made = service.create_handle(handle, values, caller, overwrite=overwrite, mint_suffix=mint)
    except IdnodeError as exc:
        return error(exc, handle)
    return _ok({"handle": made}, 200 if existed else 201)


async def delete_handle(service: NodeService, request: Request, handle: str) -> Response:
    params = list(request.query_params.multi_items())
    try:
        caller = caller_of(service, request)
        indexes = _indexes(params)
        if indexes:
            service.remove_values(handle, indexes, caller)
        else:
            service.delete_handle(handle, caller)
    except IdnodeError as exc:
        return error(exc, handle)
    return _ok({"handle": handle})


async def list_handles(service: NodeService, request: Request) -> Response:
    prefix = request.query_params.get("prefix", "")
    try:
        if not prefix:
            raise BadRequestParameter("give the prefix to list: ?prefix=88.100.1")
        try:
            page = int(request.query_params.get("page", "0"))
            size = int(request.query_params.get("pageSize", "-1"))
        except ValueError as exc:
            raise BadRequestParameter("page and pageSize must be integers") from exc
        if page < 0 or size == 0 or size < -1 or size > MAX_PAGE_SIZE:
            raise BadRequestParameter(f"page >= 0 and pageSize 1..{MAX_PAGE_SIZE} (or -1: all)")
        caller = caller_of(service, request)
        limit = None if size == -1 else size
        handles, total = service.list_handles(prefix, caller, page * max(size, 0), limit)
    except IdnodeError as exc:
        return error(exc)
    body: dict[str, Any] = {"prefix": prefix, "totalCount": str(total), "handles": handles}
    if size != -1:
        body |= {"page": page, "pageSize": size}
    return _ok(body)
