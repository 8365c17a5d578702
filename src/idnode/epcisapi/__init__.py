"""The traceability front end: the EPCIS 2.0 REST binding under ``/epcis`` (capture,
capture jobs, event queries and the per-resource query paths) and idnode's genealogy
API (``/api/trace/{identifier}``, ``/api/recall/{batch}``).

Handlers call the service's :class:`~idnode.service.trace.Traceability` through
``OffLoop`` as the authenticated caller; credentials are the HTTP API's own (the
server passes its ``caller_of``). Errors are problem documents whose ``type`` is the
standard's ``epcisException:<name>``; every answer carries the ``GS1-EPCIS-Version``
and ``GS1-CBV-Version`` headers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from idnode.bodies import read_at_most
from idnode.epcis.events import iso_time
from idnode.epcis.identifiers import record_handle
from idnode.epcis.queries import parse_query
from idnode.epcis.selection import CaptureJob
from idnode.errors import (
    IdnodeError,
    InvalidValue,
    NoSuchResource,
    epcis_exception_of,
    http_status_of,
)
from idnode.service import Caller
from idnode.service.offloop import OffLoop
from idnode.service.trace import Recalled, Trace, Traceability

__all__ = ["MAX_CAPTURE_BODY", "CallerOf", "epcis_routes"]

#: One capture's largest document (GS1-EPCIS-Capture-Limit counts events; this bytes).
MAX_CAPTURE_BODY = 32 * 1024 * 1024
CallerOf = Callable[[Request, bool], Awaitable[Caller]]
_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0",
            "GS1-EPCIS-Min": "2.0.0", "GS1-EPCIS-Max": "2.0.0"}  # fmt: skip
STANDARD_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
#: The per-resource query paths: path segment -> the query parameter it stands for.
_RESOURCES = {
    "eventTypes": "eventType",
    "epcs": "MATCH_anyEPC",
    "bizSteps": "EQ_bizStep",
    "bizLocations": "EQ_bizLocation",
    "readPoints": "EQ_readPoint",
    "dispositions": "EQ_disposition",
}


def epcis_routes(off: OffLoop, caller_of: CallerOf) -> list[Route]:
    api = _Api(off, caller_of)
    return [
        Route("/epcis/capture", api.capture, methods=["POST"]),
        Route("/epcis/capture", api.jobs, methods=["GET"]),
        Route("/epcis/capture/{capture_id}", api.job, methods=["GET"]),
        Route("/epcis/events", api.events, methods=["GET"]),
        Route("/epcis/{resource}/{value:path}/events", api.resource_events, methods=["GET"]),
        Route("/api/trace/{identifier:path}", api.trace, methods=["GET"]),
        Route("/api/recall/{batch:path}", api.recall, methods=["GET"]),
    ]


class _Api:
    def __init__(self, off: OffLoop, caller_of: CallerOf) -> None:
        self.off = off
        self.caller_of = caller_of

    @property
    def trace_service(self) -> Traceability:
        return self.off.service.trace

    async def capture(self, request: Request) -> Response:
        params = request.query_params
        try:
            caller = await self.caller_of(request, True)
            body = await read_at_most(
                request.stream(), MAX_CAPTURE_BODY, f"a capture is at most {MAX_CAPTURE_BODY} bytes"
            )
            job = await self.off.write(
                self.trace_service.capture,
                caller,
                body,
                request.headers.get("content-type", ""),
                prefix=params.get("prefix", ""),
                access=params.get("access", "owner"),
                readers=params.get("readers", ""),
            )
        except IdnodeError as exc:
            return _problem(exc, request)
        location = f"/epcis/capture/{job.capture_id}"
        return _json(_job(job), 202, Location=location)

    async def jobs(self, request: Request) -> Response:
        try:
            caller = await self.caller_of(request, True)
            jobs = await self.off.read(self.trace_service.jobs, caller)
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json([_job(j) for j in jobs])

    async def job(self, request: Request) -> Response:
        try:
            caller = await self.caller_of(request, True)
            job = await self.off.read(
                self.trace_service.job, caller, request.path_params["capture_id"]
            )
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json(_job(job))

    async def events(self, request: Request) -> Response:
        return await self._query(request, list(request.query_params.multi_items()))

    async def resource_events(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        name = _RESOURCES.get(resource)
        if name is None:
            return _problem(NoSuchResource(f"no query resource {resource!r}"), request)
        extra = [(name, request.path_params["value"])]
        return await self._query(request, [*request.query_params.multi_items(), *extra])

    async def _query(self, request: Request, params: list[tuple[str, str]]) -> Response:
        service = self.trace_service
        try:
            caller = await self.caller_of(request, False)
            audience = await self.off.read(service.audience, caller)
            query = parse_query(params, audience, service.gs1_prefix)
            page = await self.off.read(service.events, caller, query)
        except IdnodeError as exc:
            return _problem(exc, request)
        document = {
            "@context": [STANDARD_CONTEXT, *page.context],
            "type": "EPCISQueryDocument",
            "schemaVersion": "2.0",
            "creationDate": iso_time(int(time.time() * 1000)),
            "epcisBody": {
                "queryResults": {
                    "queryName": "SimpleEventQuery",
                    "resultsBody": {"eventList": page.events},
                }
            },
        }
        headers: dict[str, str] = {}
        if page.next_token is not None:
            kept = [(k, v) for k, v in request.query_params.multi_items() if k != "nextPageToken"]
            url = request.url.path + "?" + urlencode([*kept, ("nextPageToken", page.next_token)])
            headers["Link"] = f'<{url}>; rel="next"'
        return _json(document, 200, **headers)

    async def trace(self, request: Request) -> Response:
        params = request.query_params
        try:
            caller = await self.caller_of(request, False)
            direction = params.get("direction", "down")
            if direction not in ("up", "down"):
                raise InvalidValue("direction is up or down")
            depth = _depth(params.get("depth", "5"))
            found = await self.off.read(
                self.trace_service.trace, caller, request.path_params["identifier"],
                direction, depth,  # type: ignore[arg-type]
            )  # fmt: skip
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json(trace_json(found, self.trace_service.gs1_prefix))

    async def recall(self, request: Request) -> Response:
        try:
            caller = await self.caller_of(request, False)
            depth = _depth(request.query_params.get("depth", "20"))
            found = await self.off.read(
                self.trace_service.recall, caller, request.path_params["batch"], depth
            )
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json({"batch": request.path_params["batch"],
                      "identifiers": [recalled_json(r) for r in found]})  # fmt: skip


def _depth(text: str) -> int:
    if not text.isdigit():
        raise InvalidValue(f"depth is a whole number, not {text!r}")
    return int(text)


def trace_json(trace: Trace, gs1_prefix: str) -> dict[str, Any]:
    return {
        "identifier": trace.identifier,
        "direction": trace.direction,
        "depth": trace.depth,
        "truncated": trace.truncated,
        "nodes": [
            {"identifier": key, "depth": level, "record": record_handle(key, gs1_prefix)}
            for key, level in sorted(trace.nodes.items(), key=lambda i: (i[1], i[0]))
        ],
        "edges": [
            {
                "from": e.source,
                "to": e.target,
                "kind": e.kind,
                "eventID": e.event_id,
                "eventTime": iso_time(e.at),
                **({"until": iso_time(e.until)} if e.until is not None else {}),
            }
            for e in trace.edges
        ],
    }


def recalled_json(item: Recalled) -> dict[str, Any]:
    out: dict[str, Any] = {"identifier": item.identifier, "depth": item.depth,
                           "record": item.record}  # fmt: skip
    seen = item.last_seen
    if seen is not None:
        body = seen.body
        out["lastSeen"] = {
            "eventID": seen.event_id,
            "eventTime": body.get("eventTime"),
            "bizStep": body.get("bizStep"),
            "bizLocation": (body.get("bizLocation") or {}).get("id"),
            "readPoint": (body.get("readPoint") or {}).get("id"),
            "disposition": body.get("disposition"),
        }
    return out


def _job(job: CaptureJob) -> dict[str, Any]:
    out: dict[str, Any] = {
        "captureID": job.capture_id,
        "createdAt": iso_time(job.created),
        "running": job.running,
        "success": bool(job.success),
        "captureErrorBehaviour": "rollback",
        "errors": list(job.errors),
        "eventCount": job.events,
        "duplicateCount": job.duplicates,
        "enterprise": job.owner,
    }
    if job.finished is not None:
        out["finishedAt"] = iso_time(job.finished)
    return out


def _json(body: Any, status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**_HEADERS, **headers})


def _problem(exc: IdnodeError, request: Request) -> Response:
    status = http_status_of(exc)
    body: dict[str, Any] = {
        "type": f"epcisException:{epcis_exception_of(exc)}",
        "title": epcis_exception_of(exc),
        "status": status,
        "detail": exc.message,
        "instance": quote(request.url.path),
    }
    faults = getattr(exc, "faults", None)
    if faults:
        body["errors"] = list(faults)
    headers = dict(_HEADERS)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="handle"'
    return JSONResponse(body, status_code=status, headers=headers,
                        media_type="application/problem+json")  # fmt: skip
