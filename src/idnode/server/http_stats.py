"""Statistics over HTTP: ``/metrics`` for Prometheus, ``/api/stats`` as JSON, and
``POST /api/stats/reports``, where child nodes send their totals (see
:mod:`idnode.reporting`)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode.errors import BadRequestParameter, IdnodeError
from idnode.handle.codes import ResponseCode
from idnode.metrics import CONTENT_TYPE, exposition
from idnode.server import http_admin, http_auth
from idnode.service.offloop import OffLoop
from idnode.stats import prometheus_text, report_from_json, report_to_json, row_to_json

__all__ = ["metrics", "receive_report", "stats"]

#: The latest ``since`` taken (the year 9999): a larger one is no time, and would not
#: fit the database's integers.
MAX_TIME = 253_402_300_799


async def metrics(off: OffLoop, request: Request) -> Response:
    """The node's per-prefix counts (from the database, every process's) and the
    process metrics of every worker (:mod:`idnode.metrics`)."""
    statistics = off.service.statistics
    text = prometheus_text(await off.read(statistics.totals), await off.read(statistics.reported))
    # Reading every worker's files: off the loop too.
    process = await asyncio.to_thread(exposition)
    return Response(text.encode() + process, media_type=CONTENT_TYPE)


async def stats(off: OffLoop, request: Request) -> Response:
    """``GET /api/stats?since=<unix time>``: this node's rows and the reported ones."""
    text = request.query_params.get("since", "0")
    since = int(text) if text.isdigit() and len(text) <= 15 else -1
    if not 0 <= since <= MAX_TIME:
        problem = BadRequestParameter(f"since must be a Unix time, 0 to {MAX_TIME}")
        return await http_auth.error(off, problem, request=request)
    statistics = off.service.statistics
    totals = await off.read(statistics.totals, since=since)
    reported = await off.read(statistics.reported, since)
    return JSONResponse(
        {
            "responseCode": int(ResponseCode.SUCCESS),
            "rows": [row_to_json(row) for row in totals],
            "reported": report_to_json(reported)["rows"],
        }
    )


async def receive_report(off: OffLoop, request: Request) -> Response:
    """``POST /api/stats/reports``: a child node's totals, from an identity allowed to
    report them (:meth:`idnode.service.statistics.Statistics.accept_report`)."""
    try:
        caller = await http_auth.caller_of(off, request, required=True)
        rows = report_from_json(await http_admin.json_body(request))
        stored = await off.write(off.service.statistics.accept_report, rows, caller)
    except IdnodeError as exc:
        return await http_auth.error(off, exc, request=request)
    return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), "stored": stored})
