"""What every console page shares: who is signed in, the language, CSRF, rendering.

A console session is a cookie holding a session id stored by the service
(:meth:`~idnode.service.sessions.Sessions.console_caller`), so it works whichever
worker process a request reaches, and it ends after ``console_idle_minutes`` without
a request. The cookie is HttpOnly and SameSite=Strict (Secure over TLS); every form
and script that changes something also sends a CSRF token derived from the session
id, which a page of another site can neither read nor compute.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from idnode import __version__
from idnode.bodies import read_at_most
from idnode.console.i18n import LANGUAGES, Translator, negotiate
from idnode.errors import AuthenticationNeeded, IdnodeError, InvalidValue, http_status_of
from idnode.service import ANONYMOUS, Caller
from idnode.service.offloop import OffLoop

__all__ = [
    "LANG_COOKIE",
    "SESSION_COOKIE",
    "Page",
    "check_csrf",
    "form_of",
    "page_of",
    "redirect",
    "render",
    "render_text",
]

SESSION_COOKIE = "idnode_console"
LANG_COOKIE = "idnode_lang"
#: Form bodies larger than this are refused (bulk uploads have their own limit).
MAX_FORM = 1024 * 1024

_HERE = Path(__file__).parent
ENV = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True, slots=True)
class Page:
    """One request as the console sees it."""

    request: Request
    off: OffLoop
    caller: Caller
    language: str
    session_id: str = ""
    #: The session ended (idle expiry): the page says so instead of "sign in".
    expired: bool = False

    @property
    def _(self) -> Translator:
        return Translator(self.language)

    @property
    def csrf(self) -> str:
        return csrf_token(self.session_id) if self.session_id else ""

    @property
    def signed_in(self) -> bool:
        return self.caller.authenticated


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"idnode console csrf", hashlib.sha256).hexdigest()


async def page_of(off: OffLoop, request: Request) -> Page:
    """The signed-in caller (from the cookie) and language of ``request``."""
    language = negotiate(
        request.headers.get("accept-language", ""), request.cookies.get(LANG_COOKIE)
    )
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if not session_id:
        return Page(request, off, ANONYMOUS, language)
    origin = f"console {request.client.host if request.client else 'unknown'}"
    idle = request.app.state.idle_seconds
    sessions = off.service.sessions
    try:
        caller, due = await off.read(sessions.console_caller, session_id, idle, origin)
    except AuthenticationNeeded:
        return Page(request, off, ANONYMOUS, language, expired=True)
    if due:
        await off.write(sessions.refresh_console_session, session_id, idle)
    return Page(request, off, caller, language, session_id)


async def form_of(request: Request) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body's fields, in order."""
    body = await read_at_most(request.stream(), MAX_FORM, f"the form is over {MAX_FORM} bytes")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise InvalidValue("the form is not UTF-8") from exc


def check_csrf(page: Page, form: Mapping[str, str] | None = None) -> None:
    """Refuse a change whose CSRF token (form field or header) is not this session's,
    or that comes from another site's page (Origin), signed in or not."""
    request = page.request
    origin = request.headers.get("origin")
    # A browser names the page a POST comes from; "null" is a sandboxed or opaque one,
    # which is no page of this console either. (No Origin: not a browser's form.)
    if origin is not None:
        host = request.headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc != host:
            raise AuthenticationNeeded("this request came from another site's page")
    if not page.session_id:
        return
    sent = request.headers.get("x-csrf-token") or (form or {}).get("csrf", "")
    if not hmac.compare_digest(sent, page.csrf):
        raise AuthenticationNeeded("the form has expired; load the page again")


def render_text(page: Page, view: str, /, **context: Any) -> str:
    """The template ``view`` rendered for ``page`` (its language, who is signed in)."""
    request = page.request
    return ENV.get_template(view).render(
        page=page,
        _=page._,
        lang=page.language,
        languages=LANGUAGES,
        version=__version__,
        path=request.url.path,
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    )


def render(page: Page, view: str, /, status: int = 200, **context: Any) -> HTMLResponse:
    """:func:`render_text` as a page, with the headers every console page carries."""
    response = HTMLResponse(render_text(page, view, **context), status_code=status)
    response.headers["Content-Language"] = page.language
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(page: Page, exc: IdnodeError) -> HTMLResponse:
    """A service error as a page: its HTTP status, its message, a way on."""
    return render(page, "error.html", status=http_status_of(exc), error=exc)


def redirect(to: str) -> Response:
    """See other: after a POST, the browser GETs ``to`` (a path of this console)."""
    return RedirectResponse(to, status_code=303)
