"""``GET /api/search``: identifiers by prefix, template, field values and words.

Parameters: ``prefix``, ``template`` (``serial-item`` or ``serial-item@1``), ``where``
(repeatable: ``status=in stock``, ``weight_kg>=2.5``, ``manufactured<2026-01-01``),
``q`` (words that must all occur), ``page`` (from 0) and ``pageSize`` (at most 1,000).
Only public values are searched.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode.domain import Condition, SearchQuery
from idnode.errors import BadRequestParameter, IdnodeError
from idnode.handle.codes import ResponseCode
from idnode.server import http_admin, http_auth
from idnode.service.offloop import OffLoop

__all__ = ["MAX_PAGE", "search"]

MAX_PAGE = 1000


async def search(off: OffLoop, request: Request) -> Response:
    params = request.query_params
    try:
        page = http_admin.query_number(params, "page", 0)
        size = http_admin.query_number(params, "pageSize", 100)
        if not 0 < size <= MAX_PAGE:
            raise BadRequestParameter(f"pageSize must be 1 to {MAX_PAGE}")
        if page > http_admin.MAX_PAGE_NUMBER:
            raise BadRequestParameter(f"page must be 0 to {http_admin.MAX_PAGE_NUMBER}")
        query = SearchQuery(
            prefix=params.get("prefix") or None,
            template=params.get("template") or None,
            conditions=tuple(Condition.parse(w) for w in params.getlist("where")),
            text=params.get("q") or None,
            offset=page * size,
            limit=size + 1,  # one more tells whether another page follows
        )
        found = await off.read(off.service.reads.search, query)
    except IdnodeError as exc:
        return await http_auth.error(off, exc, request=request)
    return JSONResponse(
        {
            "responseCode": int(ResponseCode.SUCCESS),
            "page": page,
            "pageSize": size,
            "handles": found[:size],
            "hasMore": len(found) > size,
        }
    )
