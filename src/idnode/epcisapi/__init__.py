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

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from idnode.bodies import parse_json, read_at_most
from idnode.epcis.documents import query_document
from idnode.epcis.events import iso_time
from idnode.epcis.identifiers import record_handle
from idnode.epcis.queries import QueryParameterError, parse_query
from idnode.epcis.selection import CaptureJob, NamedQuery, Subscription
from idnode.epcisapi.push import stream_to_websocket
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
from idnode.service.trace_subscriptions import TraceSubscriptions

__all__ = ["MAX_CAPTURE_BODY", "CallerOf", "epcis_routes"]

#: One capture's largest document (GS1-EPCIS-Capture-Limit counts events; this bytes).
MAX_CAPTURE_BODY = 32 * 1024 * 1024
CallerOf = Callable[[Request, bool], Awaitable[Caller]]
_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0",
            "GS1-EPCIS-Min": "2.0.0", "GS1-EPCIS-Max": "2.0.0"}  # fmt: skip
#: The per-resource query paths: path segment -> the query parameter it stands for.
_RESOURCES = {
    "eventTypes": "eventType",
    "epcs": "MATCH_anyEPC",
    "bizSteps": "EQ_bizStep",
    "bizLocations": "EQ_bizLocation",
    "readPoints": "EQ_readPoint",
    "dispositions": "EQ_disposition",
}


def epcis_routes(off: OffLoop, caller_of: CallerOf) -> list[BaseRoute]:
    api = _Api(off, caller_of)
    return [
        Route("/epcis/capture", api.capture, methods=["POST"]),
        Route("/epcis/capture", api.jobs, methods=["GET"]),
        Route("/epcis/capture/{capture_id}", api.job, methods=["GET"]),
        Route("/epcis/events", api.events, methods=["GET"]),
        Route("/epcis/events/{event_id:path}", api.event, methods=["GET"]),
        Route("/epcis/queries", api.define_query, methods=["POST"]),
        Route("/epcis/queries", api.list_queries, methods=["GET"]),
        Route("/epcis/queries/{name}/events", api.query_events, methods=["GET"]),
        WebSocketRoute("/epcis/queries/{name}/events", api.query_stream),
        Route("/epcis/queries/{name}/subscriptions", api.subscribe, methods=["POST"]),
        Route("/epcis/queries/{name}/subscriptions", api.subscriptions, methods=["GET"]),
        Route(
            "/epcis/queries/{name}/subscriptions/{sid}", api.subscription, methods=["GET", "DELETE"]
        ),
        Route("/epcis/queries/{name}", api.named_query, methods=["GET", "DELETE"]),
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

    @property
    def subs(self) -> TraceSubscriptions:
        return self.off.service.trace_subscriptions

    async def capture(self, request: Request) -> Response:
        params = request.query_params
        try:
            caller = await self.caller_of(request, True)
            body = await read_at_most(
                request.stream(), MAX_CAPTURE_BODY, f"a capture is at most {MAX_CAPTURE_BODY} bytes"
            )
            prepared = await self.off.read(
                self.trace_service.prepare,
                caller,
                body,
                request.headers.get("content-type", ""),
                prefix=params.get("prefix", ""),
                access=params.get("access", "owner"),
                readers=params.get("readers", ""),
            )
            job = await self.off.write(self.trace_service.store, prepared)
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
        given = list(request.query_params.multi_items())
        if any(key == name for key, _ in given):
            refusal = QueryParameterError(f"{name} is given by the path; it cannot be given again")
            return _problem(refusal, request)
        return await self._query(request, [*given, (name, request.path_params["value"])])

    async def _query(
        self, request: Request, params: list[tuple[str, str]], name: str | None = None
    ) -> Response:
        service = self.trace_service
        try:
            caller = await self.caller_of(request, False)
            if name is None:
                audience = await self.off.read(service.audience, caller)
                query = parse_query(params, audience, service.gs1_prefix)
            else:
                query = await self.off.read(self.subs.run, caller, name, params)
            page = await self.off.read(service.events, caller, query)
        except IdnodeError as exc:
            return _problem(exc, request)
        document = query_document(page.events, page.context, name or "SimpleEventQuery")
        headers: dict[str, str] = {}
        if page.next_token is not None:
            kept = [(k, v) for k, v in request.query_params.multi_items() if k != "nextPageToken"]
            url = request.url.path + "?" + urlencode([*kept, ("nextPageToken", page.next_token)])
            headers["Link"] = f'<{url}>; rel="next"'
        return _json(document, 200, **headers)

    async def event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        response = await self._query(request, [("EQ_eventID", event_id)])
        if response.status_code == 200 and b'"eventList":[]' in bytes(response.body):
            return _problem(NoSuchResource(f"no event {event_id}"), request)
        return response

    # -- named queries and subscriptions ---------------------------------------------

    async def define_query(self, request: Request) -> Response:
        try:
            caller = await self.caller_of(request, True)
            body = await _json_body(request)
            name = body.get("name")
            if not isinstance(name, str):
                raise InvalidValue("a named query has a name")
            named = await self.off.write(self.subs.define, caller, name, body.get("query", {}))
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json(_named(named), 201, Location=f"/epcis/queries/{named.name}")

    async def list_queries(self, request: Request) -> Response:
        try:
            caller = await self.caller_of(request, True)
            found = await self.off.read(self.subs.queries, caller)
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json([_named(q) for q in found])

    async def named_query(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            caller = await self.caller_of(request, True)
            if request.method == "DELETE":
                await self.off.write(self.subs.delete, caller, name)
                return Response(status_code=204, headers=_HEADERS)
            named = await self.off.read(self.subs.query, caller, name)
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json(_named(named))

    async def query_events(self, request: Request) -> Response:
        return await self._query(request, list(request.query_params.multi_items()),
                                 request.path_params["name"])  # fmt: skip

    async def query_stream(self, websocket: WebSocket) -> None:
        """``GET /epcis/queries/{name}/events`` upgraded to a WebSocket: the query's
        new events as they come (``stream=true``) or on a schedule."""
        try:
            caller = await self.caller_of(websocket, True)  # type: ignore[arg-type]
            named = await self.off.read(self.subs.query, caller, websocket.path_params["name"])
            params = dict(websocket.query_params)
            if params.get("stream", "").lower() != "true" and not (
                set(params) & {"second", "minute", "hour", "dayOfMonth", "month", "dayOfWeek"}
            ):
                raise InvalidValue("a subscription has either stream=true or a schedule")
        except IdnodeError as exc:
            await websocket.close(code=1008, reason=exc.message[:120])
            return
        await stream_to_websocket(self.off, websocket, caller, named, params)

    async def subscribe(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            caller = await self.caller_of(request, True)
            body = await _json_body(request)
            made = await self.off.write(self.subs.subscribe, caller, name, body)
        except IdnodeError as exc:
            return _problem(exc, request)
        location = f"/epcis/queries/{name}/subscriptions/{made.subscription_id}"
        return _json(_subscription(made), 201, Location=location)

    async def subscriptions(self, request: Request) -> Response:
        try:
            caller = await self.caller_of(request, True)
            found = await self.off.read(self.subs.subscriptions, caller,
                                        request.path_params["name"])  # fmt: skip
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json([_subscription(s) for s in found])

    async def subscription(self, request: Request) -> Response:
        name, sid = request.path_params["name"], request.path_params["sid"]
        try:
            caller = await self.caller_of(request, True)
            if request.method == "DELETE":
                await self.off.write(self.subs.unsubscribe, caller, name, sid)
                return Response(status_code=204, headers=_HEADERS)
            found = await self.off.read(self.subs.subscription, caller, name, sid)
        except IdnodeError as exc:
            return _problem(exc, request)
        return _json(_subscription(found))

    # -- genealogy -----------------------------------------------------------------

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
                "enterprise": e.owner,
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
            "enterprise": seen.owner,
            "bizStep": body.get("bizStep"),
            "bizLocation": (body.get("bizLocation") or {}).get("id"),
            "readPoint": (body.get("readPoint") or {}).get("id"),
            "disposition": body.get("disposition"),
        }
    return out


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await read_at_most(request.stream(), 1024 * 1024, "the body is over 1 MiB")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidValue("the body is a JSON object")
    return body


def _named(named: NamedQuery) -> dict[str, Any]:
    query = {k: (v.split("|") if "|" in v else v) for k, v in named.params}
    return {"name": named.name, "query": query, "createdAt": iso_time(named.created)}


def _subscription(sub: Subscription) -> dict[str, Any]:
    out: dict[str, Any] = {
        "subscriptionID": sub.subscription_id,
        "queryName": sub.query_name,
        "dest": sub.dest,
        "createdAt": iso_time(sub.created),
        "initialRecordTime": iso_time(sub.initial_record_time),
        "reportIfEmpty": sub.report_if_empty,
        "deliveredEventCount": sub.delivered,
    }
    if sub.schedule:
        out["schedule"] = sub.schedule
    else:
        out["stream"] = True
    if sub.last_error:
        out["lastError"] = sub.last_error
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
