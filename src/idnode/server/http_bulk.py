"""``POST /api/bulk``: bulk registration over HTTP, as ``idnode import`` does it.

The body is CSV (``Content-Type: text/csv``) or JSONL (anything else); the query
string carries the import's options: ``template``, ``prefix``, ``mint``, ``readers``,
``replace``, ``skipInvalid``. Every row is checked before any is written: with a
rejected row and no ``skipInvalid`` the answer is 400 listing the rejections, and
nothing changed. The caller needs ADD_HANDLE on each prefix written (DELETE_HANDLE too
with ``replace``), and each write is audited. The registration runs on the writer, so
the worker goes on answering other requests meanwhile.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode import bulk
from idnode.bodies import read_at_most
from idnode.errors import IdnodeError, InvalidValue
from idnode.handle.codes import ResponseCode
from idnode.server import http_auth
from idnode.server.http_admin import query_flag
from idnode.server.problems import problem
from idnode.service.offloop import OffLoop
from idnode.templates import parse_readers

__all__ = ["MAX_BULK_BODY", "register"]

#: Larger files: split them, or use ``idnode import`` on the node.
MAX_BULK_BODY = 64 * 1024 * 1024


async def register(off: OffLoop, request: Request) -> Response:
    params = request.query_params
    flags = list(params.multi_items())
    try:
        caller = await http_auth.caller_of(off, request, required=True)
        readers = params.get("readers")
        options = bulk.BulkOptions(
            params.get("prefix"),
            params.get("template"),
            params.get("mint"),
            parse_readers(readers) if readers else None,
        )
        text = await _body(request)
        fmt: bulk.Format = "csv" if "csv" in request.headers.get("content-type", "") else "jsonl"

        @contextmanager
        def source() -> Iterator[io.StringIO]:
            yield io.StringIO(text, newline="")

        report = await off.write(
            bulk.register,
            off.service,
            source,
            fmt,
            options,
            replace=query_flag(flags, "replace", default=False),
            caller=caller,
            skip_invalid=query_flag(flags, "skipInvalid", default=False),
        )
    except IdnodeError as exc:
        return await http_auth.error(off, exc, request=request)
    body = _summary(report)
    if not report.written:
        refusal = InvalidValue(f"nothing written: {report.rejected_count} row(s) rejected")
        return problem(refusal, extra=body)
    return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), **body})


async def _body(request: Request) -> str:
    too_large = f"the body is over {MAX_BULK_BODY} bytes; split the file"
    body = await read_at_most(request.stream(), MAX_BULK_BODY, too_large)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValue(f"the body is not UTF-8: {exc}") from exc


def _summary(report: bulk.BulkReport) -> dict[str, Any]:
    r = report.result
    return {
        "created": r.created,
        "updated": r.updated,
        "unchanged": r.unchanged,
        "skipped": r.skipped,
        "elsewhere": r.elsewhere,
        "rejectedCount": report.rejected_count,
        "rejected": [{"line": x.line, "reason": x.reason} for x in report.rejected],
        "written": report.written,
    }
