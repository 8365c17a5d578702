"""The web console: the node in a browser, for the people who run it.

Served by the node itself at ``/console/`` (Chinese and English, no CDN: every script
and style ships in ``static/``), over the same service calls as the APIs, as the
signed-in identity. Server-side pages (Jinja2) with htmx for the few requests a page
makes by itself (a field checked as it changes, figures loaded after the page), and
Apache ECharts for the dashboard's charts; docs/console.md says why.

A front end like ``server/``: it calls the service through
:class:`~idnode.service.offloop.OffLoop` and never imports storage.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from idnode.auth.throttle import FailureLimiter
from idnode.console import bulk_upload, node_pages, records, signin, trace_pages
from idnode.console.web import ENV, page_of, render
from idnode.errors import NoSuchResource
from idnode.service.offloop import OffLoop

__all__ = ["console_app"]

Handler = Callable[[OffLoop, Request], Awaitable[Response]]


def _when(at: float | None) -> str:
    """A time as the pages show it: UTC, to the minute."""
    if at is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


ENV.filters["when"] = _when


def console_app(
    off: OffLoop,
    *,
    idle_seconds: float = 1800.0,
    role: str = "enterprise",
    parent_url: str = "",
    auth_failures: FailureLimiter | None = None,
) -> Starlette:
    """The console, to be mounted at ``/console``. ``auth_failures``: the HTTP API's
    count of failed authentications per address, which failed sign-ins add to."""

    def bound(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(off, request)

        return endpoint

    async def not_found(request: Request, exc: Exception) -> Response:
        page = await page_of(off, request)
        return render(page, "error.html", status=404, error=NoSuchResource("no such page"))

    app = Starlette(
        routes=[
            Route("/", bound(node_pages.dashboard)),
            Route("/signin", bound(signin.sign_in), methods=["GET", "POST"]),
            Route("/signin/challenge", bound(signin.challenge), methods=["POST"]),
            Route("/signout", bound(signin.sign_out), methods=["POST"]),
            Route("/lang", bound(signin.choose_language)),
            Route("/ids", bound(records.search_page)),
            Route("/new", bound(records.new_record), methods=["GET", "POST"]),
            Route("/record/{handle:text}", bound(records.record_page)),
            Route("/edit/{handle:text}", bound(records.edit_record), methods=["GET", "POST"]),
            Route("/history/{handle:text}", bound(records.history_page)),
            Route("/restore/{handle:text}", bound(records.restore), methods=["POST"]),
            Route("/validate/{name:text}", bound(records.validate_field), methods=["POST"]),
            Route("/bulk", bound(bulk_upload.bulk_page)),
            Route("/bulk/upload", bound(bulk_upload.upload), methods=["POST"]),
            Route("/templates", bound(node_pages.templates_page)),
            Route(
                "/templates/{name:text}", bound(node_pages.template_page), methods=["GET", "POST"]
            ),
            Route("/prefixes", bound(node_pages.prefixes_page)),
            Route("/identities", bound(node_pages.identities_page)),
            Route("/identities/admin", bound(node_pages.save_admin), methods=["POST"]),
            Route("/audit", bound(node_pages.audit_page)),
            Route("/stats", bound(node_pages.stats_page)),
            Route("/trace", bound(trace_pages.trace_page)),
            Route("/trace/{identifier:path}", bound(trace_pages.trace_page)),
            Route("/recall/{batch:path}", bound(trace_pages.recall_page)),
            Route("/fragments/count", bound(node_pages.prefix_count)),
            Route("/fragments/parent", bound(node_pages.parent_health)),
            Mount("/static", app=StaticFiles(directory=Path(__file__).parent / "static")),
        ],
        exception_handlers={404: not_found},
    )
    app.state.idle_seconds = idle_seconds
    app.state.role = role
    app.state.parent_url = parent_url
    app.state.auth_failures = auth_failures or FailureLimiter(30.0)
    return app
