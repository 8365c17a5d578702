"""HTTP front end: the Handle.Net JSON API for reads, proxy-style pages, health.

``GET /api/handles/{handle}`` answers in the Handle.Net server's JSON shape so existing
clients work unchanged. ``GET /{handle}`` behaves like the public Handle proxy: a 302
to the handle's first URL value, or with ``?noredirect`` a readable page of its values.
Errors in the API are RFC 9457 problem documents that also carry Handle.Net's
``responseCode``, ``handle`` and ``message`` members, which its clients parse.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from idnode import __version__
from idnode.auth.throttle import FailureLimiter
from idnode.console import console_app
from idnode.console.values import shown_values
from idnode.epcisapi import epcis_routes
from idnode.errors import (
    BadRequestParameter,
    IdnodeError,
    MethodNotAllowed,
    NoSuchResource,
    http_status_of,
)
from idnode.gs1 import PRIMARY_KEYS
from idnode.gs1compressed import COMPRESSED
from idnode.handle.codes import ResponseCode
from idnode.handle.values import HandleValue
from idnode.idisapi import routes as idis_routes
from idnode.jsonformat import value_to_json
from idnode.server import (
    http_admin,
    http_auth,
    http_bulk,
    http_gs1,
    http_history,
    http_search,
    http_stats,
    http_templates,
)
from idnode.server.answers import KeptAnswers
from idnode.server.measure import http_answered
from idnode.server.openapi import openapi_document
from idnode.server.pages import page
from idnode.server.problems import problem
from idnode.service import ANONYMOUS, Caller
from idnode.service.offloop import OffLoop

__all__ = ["FastResolution", "create_app", "resolve_response"]


class _Text(Convertor[str]):
    """A path parameter of any characters, slashes and line breaks included:
    Starlette's ``path`` stops at a line break, so such a handle found no route and
    got a bare 404 instead of the error its resource explains."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", _Text())

_SAFE_REDIRECT_SCHEMES = frozenset({"http", "https", "ftp"})
#: What the GS1 resolver endpoints answer (the standard asks for all three).
GS1_METHODS = ["GET", "HEAD", "OPTIONS"]


def _filters(params: Sequence[tuple[str, str]]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    try:
        indexes = tuple(int(v) for k, v in params if k == "index")
    except ValueError as exc:
        raise BadRequestParameter("index must be an integer") from exc
    if any(not 0 < i < 2**32 for i in indexes):
        raise BadRequestParameter("index must be between 1 and 4294967295")
    return indexes, tuple(v for k, v in params if k == "type")


def _pretty(params: Sequence[tuple[str, str]]) -> bool:
    return any(k == "pretty" and v.lower() not in ("false", "0", "no") for k, v in params)


def _json(body: dict[str, Any], params: Sequence[tuple[str, str]]) -> Response:
    text = json.dumps(body, indent=2 if _pretty(params) else None, ensure_ascii=False)
    return Response(text, media_type="application/json")


async def resolve_response(
    off: OffLoop,
    handle: str,
    params: Sequence[tuple[str, str]],
    caller: Caller = ANONYMOUS,
    request: Request | None = None,
) -> Response:
    """The answer to ``GET /api/handles/{handle}``: Handle.Net's JSON, or a problem.

    Non-public values are included for a caller with READ_VALUE unless the request
    says ``publicOnly=true``; an anonymous ``publicOnly=false`` for a handle that has
    such values gets 401 and a session to authenticate in.
    """
    try:
        indexes, types = _filters(params)
        public_only = http_admin.query_flag(params, "publicOnly", not caller.authenticated)
        record = await off.resolve(
            handle, indexes=indexes, types=types, caller=caller, public_only=public_only
        )
    except IdnodeError as exc:
        return await http_auth.error(off, exc, handle, request=request)
    return _json(
        {
            "responseCode": int(ResponseCode.SUCCESS),
            "handle": record.handle,
            "values": [value_to_json(v) for v in record.values],
        },
        params,
    )


class FastResolution:
    """Anonymous ``GET /api/handles/{handle}`` straight on ASGI, the rest to ``app``.

    Resolution is most of a node's HTTP traffic; skipping Starlette's middleware and
    routing for it took the HTTP benchmark from about 3,900 to 4,450 requests/s. The
    answer is built by the same :func:`resolve_response` the Starlette route uses, so
    both give identical results. Requests with credentials (an Authorization header
    or a TLS client certificate) or ``publicOnly`` take the Starlette route, which
    finds out who is asking.
    """

    PREFIX = "/api/handles/"
    ROUTE = "/api/handles/{handle:text}"

    def __init__(self, off: OffLoop, app: Starlette, *, answer_cache_bytes: int = 0) -> None:
        self._off = off
        self._app = app
        #: Answers kept to be sent again: (headers, body) of 200s, by path and query
        #: (see :mod:`idnode.server.answers`).
        self._kept: KeptAnswers[tuple[list[tuple[bytes, bytes]], bytes]] | None = (
            KeptAnswers(
                off.service.reads, max_bytes=answer_cache_bytes, reads_at_once=off.resolves_at_once
            )
            if answer_cache_bytes > 0
            else None
        )
        #: Each endpoint's route template, to measure requests by route, not by path;
        #: an endpoint serving several routes (the GS1 keys) is named by the first.
        self._routes: dict[object, str] = {}
        for route in app.routes:
            if isinstance(route, Route):
                self._routes.setdefault(route.endpoint, route.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # unless a response starts: the server fails the request

        async def measured(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope.get("path", "")
        route = self.ROUTE
        try:
            if (
                scope["method"] == "GET"
                and path.startswith(self.PREFIX)
                and len(path) > len(self.PREFIX)
                and not _may_carry_credentials(scope)
            ):
                await self._resolve(scope, receive, measured, path[len(self.PREFIX) :])
                return
            try:
                await self._app(scope, receive, measured)
            finally:
                # Starlette's router notes the endpoint it chose in the scope.
                route = self._routes.get(scope.get("endpoint"), "unmatched")
        finally:
            http_answered(scope["method"], route, path, status, began, scope.get("client"))

    async def _resolve(self, scope: Scope, receive: Receive, send: Send, handle: str) -> None:
        """An anonymous resolution: a kept answer if it is still true, else made (and
        kept if it is asked again; see :class:`~idnode.server.answers.KeptAnswers`)."""
        kept, key, basis = self._kept, b"", None
        if kept is not None:
            key = scope["path"].encode("utf-8", "surrogateescape") + b"?" + scope["query_string"]
            answer = kept.get(key)
            if answer is not None:
                headers, body = answer
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            basis = kept.basis(handle) if kept.admit(key) else None
        params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        response = await resolve_response(self._off, handle, params)
        if kept is not None and basis is not None and response.status_code == 200:
            headers = list(response.raw_headers)
            body = bytes(response.body)
            kept.keep(key, handle, basis, (headers, body), len(body))
        await response(scope, receive, send)


def _may_carry_credentials(scope: Scope) -> bool:
    if b"publicOnly" in scope["query_string"]:
        return True
    if scope.get("extensions", {}).get("tls"):
        return True
    return any(name == b"authorization" for name, _ in scope["headers"])


Handler = Callable[[OffLoop, Request], Awaitable[Response]]


def create_app(
    off: OffLoop,
    gs1_prefix: str = "",
    *,
    auth_failures_per_minute: float = 30.0,
    answer_cache_bytes: int = 0,
    console_idle_seconds: float = 1800.0,
    role: str = "enterprise",
    parent_url: str = "",
) -> FastResolution:
    """The HTTP front end over ``off``: every handler reaches the service through it,
    so nothing that waits runs on the event loop. ``auth_failures_per_minute``: failed
    authentications one address may make (see :mod:`idnode.auth.throttle`)."""

    def bound(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """The route endpoint calling ``handler`` with this app's service."""

        async def endpoint(request: Request) -> Response:
            return await handler(off, request)

        return endpoint

    async def api_handle(request: Request) -> Response:
        # GET arrives through FastResolution; this route answers HEAD and the writes.
        handle = request.path_params["handle"]
        if request.method == "PUT":
            return await http_admin.put_handle(off, request, handle)
        if request.method == "DELETE":
            return await http_admin.delete_handle(off, request, handle)
        params = list(request.query_params.multi_items())
        try:
            caller = await http_auth.caller_of(off, request, required=False)
        except IdnodeError as exc:
            return await http_auth.error(off, exc, handle, request=request)
        return await resolve_response(off, handle, params, caller, request)

    async def api_prefixes(request: Request) -> Response:
        prefixes = await off.read(off.service.reads.homed_prefixes)
        return _json(
            {"responseCode": int(ResponseCode.SUCCESS), "prefixes": prefixes},
            list(request.query_params.multi_items()),
        )

    async def describe(request: Request) -> Response:
        return http_gs1.description(request, gs1_prefix)

    async def resolve_link(request: Request) -> Response:
        return await http_gs1.digital_link(off, request, gs1_prefix)

    gs1_description = http_gs1.cors(describe)
    gs1_link = http_gs1.cors(resolve_link)

    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def index(request: Request) -> Response:
        homed = await off.read(off.service.reads.homed_prefixes)
        prefixes = "".join(f"<li>{html.escape(p)}</li>" for p in homed)
        return HTMLResponse(
            page(
                "idnode",
                f"<p>Identifier node. Prefixes served here:</p><ul>{prefixes}</ul>"
                "<form onsubmit=\"location.href='/'+this.h.value+'?noredirect';return false\">"
                '<input name="h" placeholder="88.100.1/PUMP-0001" size="40">'
                "<button>Resolve</button></form>",
            )
        )

    async def proxy(request: Request) -> Response:
        handle = request.path_params["handle"]
        if gs1_prefix and "/" not in handle and COMPRESSED.match(handle):
            return await gs1_link(request)  # no handle: a compressed GS1 Digital Link
        try:
            # The proxy pages answer for any handle: through the resolver, for handles
            # held elsewhere, when the node has one (root_servers is set).
            record = await off.resolve(handle, recursive=True)
        except IdnodeError as exc:
            status = http_status_of(exc)
            body = f"<p>{html.escape(exc.message)}</p>"
            return HTMLResponse(page(f"{handle} — error", body), status_code=status)
        if "noredirect" not in request.query_params:
            target = _redirect_target(record.values)
            if target is not None:
                return RedirectResponse(target, status_code=302)
        console = "/console/record/" + quote(record.handle, safe="/")
        return HTMLResponse(page(record.handle, _values_table(record.values), console_link=console))

    auth_failures = FailureLimiter(auth_failures_per_minute)
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", bound(http_stats.metrics)),
            Route(
                "/api/handles/{handle:text}",
                api_handle,
                methods=["GET", "HEAD", "PUT", "DELETE"],
            ),
            Route("/api/handles", bound(http_admin.list_handles)),
            Route("/api/sessions", bound(http_auth.sessions), methods=["POST"]),
            Route(
                "/api/sessions/this",
                bound(http_auth.this_session),
                methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
            ),
            Route("/api/prefixes", api_prefixes),
            Route(
                "/api/history/{handle:text}", bound(http_history.history), methods=["GET", "POST"]
            ),
            Route("/api/bulk", bound(http_bulk.register), methods=["POST"]),
            Route("/api/search", bound(http_search.search)),
            Route("/api/templates", bound(http_templates.templates_api)),
            Route(
                "/api/templates/{name:text}",
                bound(http_templates.template_api),
                methods=["GET", "HEAD", "PUT"],
            ),
            Route("/api/stats", bound(http_stats.stats)),
            Route("/api/stats/reports", bound(http_stats.receive_report), methods=["POST"]),
            # The national system's SNMS and IDHub APIs (before the /api/ catch-all).
            *idis_routes(off),
            *epcis_routes(off, partial(_caller, off)),
            Route("/api/openapi.json", openapi),
            Route("/api/{rest:text}", _api_not_found, methods=["GET", "HEAD"]),
            Route("/.well-known/gs1resolver", gs1_description, methods=GS1_METHODS),
            # GS1 Digital Link paths; a handle whose prefix is 01, 00 or 414 is
            # shadowed here (its proxy page stays at /api/handles/...).
            *(Route(f"/{ai}/{{rest:text}}", gs1_link, methods=GS1_METHODS) for ai in PRIMARY_KEYS),
            Mount(
                "/console",
                app=console_app(
                    off,
                    idle_seconds=console_idle_seconds,
                    role=role,
                    parent_url=parent_url,
                    auth_failures=auth_failures,
                ),
            ),
            Route("/console", _to_console),
            Route("/templates", bound(http_templates.templates_page)),
            Route("/templates/{name:text}", bound(http_templates.template_page)),
            Route("/", index),
            Route("/{handle:text}", proxy),
        ],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.auth_failures = auth_failures
    return FastResolution(off, app, answer_cache_bytes=answer_cache_bytes)


async def _caller(off: OffLoop, request: Request, required: bool) -> Caller:
    return await http_auth.caller_of(off, request, required=required)


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=308)


async def _api_not_found(request: Request) -> Response:
    return problem(NoSuchResource(f"no such API resource: {request.url.path}"))


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return await _api_not_found(request)
    return HTMLResponse(page("not found", "<p>Nothing here.</p>"), status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    response = problem(MethodNotAllowed(f"{request.method} is not supported on {request.url.path}"))
    # RFC 9110: a 405 names the methods the resource does support.
    allow = (getattr(exc, "headers", None) or {}).get("Allow")
    if allow:
        response.headers["Allow"] = allow
    return response


def _redirect_target(values: Sequence[HandleValue]) -> str | None:
    """The first URL value by index, if it is a URL a browser may safely be sent to."""
    for value in sorted(values, key=lambda v: v.index):
        if value.type.upper() != "URL":
            continue
        try:
            url = value.data.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        if urlsplit(url).scheme.lower() in _SAFE_REDIRECT_SCHEMES:
            return quote(url, safe=":/?#[]@!$&'()*+,;=%~")
    return None


def _values_table(values: Sequence[HandleValue]) -> str:
    """The values as the console shows them (links for URLs and identifiers), with the
    Handle proxy's columns."""
    stamps = {v.index: value_to_json(v)["timestamp"] for v in values}
    ttls = {v.index: v.ttl for v in values}
    rows = []
    for shown in shown_values(values, None):
        text = html.escape(shown.text)
        data = f'<a href="{html.escape(shown.href)}">{text}</a>' if shown.href else text
        rows.append(
            f"<tr><td>{shown.index}</td><td>{html.escape(shown.type)}</td>"
            f"<td>{html.escape(stamps[shown.index])}</td><td>{ttls[shown.index]}</td>"
            f"<td class='data'><code>{data}</code></td></tr>"
        )
    return (
        "<div class='table-wrap'><table><thead><tr><th scope='col'>Index</th>"
        "<th scope='col'>Type</th><th scope='col'>Timestamp</th><th scope='col'>TTL</th>"
        "<th scope='col'>Data</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )
