"""Statistics over HTTP: ``/metrics`` for Prometheus, ``/api/stats`` as JSON, and
``POST /api/stats/reports``, where child nodes send their totals (see
:mod:`idnode.reporting`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from idnode.errors import BadRequestParameter, IdnodeError
from idnode.handle.codes import ResponseCode
from idnode.server import http_admin, http_auth
from idnode.service import NodeService
from idnode.stats import prometheus_text, report_from_json, report_to_json, row_to_json

__all__ = ["metrics", "receive_report", "stats"]


async def metrics(service: NodeService, request: Request) -> Response:
    text = prometheus_text(service.statistics.totals(), service.statistics.reported())
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


async def stats(service: NodeService, request: Request) -> Response:
    """``GET /api/stats?since=<unix time>``: this node's rows and the reported ones."""
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        return http_auth.error(service, BadRequestParameter("since must be a Unix time"))
    return JSONResponse(
        {
            "responseCode": int(ResponseCode.SUCCESS),
            "rows": [row_to_json(row) for row in service.statistics.totals(since=since)],
            "reported": report_to_json(service.statistics.reported(since))["rows"],
        }
    )


async def receive_report(service: NodeService, request: Request) -> Response:
    """``POST /api/stats/reports``: a child node's totals, from an identity allowed to
    report them (:meth:`NodeService.accept_stats_report`)."""
    try:
        caller = http_auth.caller_of(service, request, required=True)
        rows = report_from_json(await http_admin.json_body(request))
        stored = service.statistics.accept_report(rows, caller)
    except IdnodeError as exc:
        return http_auth.error(service, exc)
    return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), "stored": stored})
