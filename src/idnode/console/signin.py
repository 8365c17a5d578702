"""Signing in and out of the console, and choosing its language.

Three ways to prove an identity, all checked by the same service calls as the APIs:
a password account (``idnode account add``), an identity's secret key (HS_SECKEY, as
HTTP Basic), or a key pair (HS_PUBKEY): the browser signs the nonce of an HTTP API
session with a key file it reads itself, the answer ``Authorization: Handle`` would
carry, so the private key never leaves the browser. Failures count against the
address like the APIs' do (``http_auth_failures``).
"""

from __future__ import annotations

import base64
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode.auth.handle_header import HandleAuthorization, parse_identity
from idnode.console.i18n import LANGUAGES
from idnode.console.web import (
    LANG_COOKIE,
    SESSION_COOKIE,
    Page,
    check_csrf,
    error_page,
    form_of,
    page_of,
    redirect,
    render,
)
from idnode.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    IdnodeError,
    InvalidCredential,
    TooManyFailures,
)
from idnode.service import Caller
from idnode.service.offloop import OffLoop

__all__ = ["challenge", "choose_language", "safe_next", "sign_in", "sign_out"]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this console, nothing else."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console/"


async def sign_in(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    if request.method == "GET":
        return render(page, "signin.html", next=safe_next(request.query_params.get("next")))
    try:
        form = dict(await form_of(request))
        check_csrf(page, form)
    except IdnodeError as exc:
        return error_page(page, exc)
    target = safe_next(form.get("next"))
    limiter = request.app.state.auth_failures
    address = request.client.host if request.client else "unknown"
    _ = page._
    if limiter.blocked(address, time.monotonic()):
        failed = _("Too many failed sign-ins from this address; try again in a minute.")
        return render(page, "signin.html", status=429, next=target, failed=failed)
    try:
        caller = await _proven(off, page, form)
    except (AuthenticationFailed, AuthenticationNeeded, InvalidCredential, TooManyFailures):
        limiter.failed(address, time.monotonic())
        failed = _("Sign-in failed: the name or the key is not right.")
        return render(page, "signin.html", status=401, next=target, failed=failed)
    except IdnodeError as exc:
        return render(page, "signin.html", status=400, next=target, failed=exc.message)
    idle = request.app.state.idle_seconds
    account = form.get("name", "") if form.get("method") == "account" else ""
    session_id = await off.write(off.service.sessions.open_console_session, caller, idle, account)
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response


async def _proven(off: OffLoop, page: Page, form: dict[str, str]) -> Caller:
    service = off.service
    origin = f"console {page.request.client.host if page.request.client else 'unknown'}"
    method = form.get("method")
    if method == "account":
        return await off.read(
            service.accounts.log_in, form.get("name", ""), form.get("password", ""), origin
        )
    identity = parse_identity(form.get("identity", "").strip())
    if method == "secret":
        secret = form.get("secret", "").encode("utf-8")
        return await off.read(service.auth.authenticate_password, identity, secret, origin)
    if method == "key":
        # The fields Authorization: Handle would carry, checked the same way; built
        # field by field, so nothing typed into one can set another.
        auth = HandleAuthorization(
            {
                "sessionid": form.get("session", ""),
                "id": f"{identity.index}:{identity.handle}",
                "type": "HS_PUBKEY",
                "cnonce": form.get("cnonce", ""),
                "alg": "SHA256",
                "signature": form.get("signature", ""),
            }
        )
        session_id = auth.session_id or ""
        try:
            return await off.write(
                service.sessions.authenticate_session,
                session_id,
                identity,
                "HS_PUBKEY",
                auth.protocol_answer(),
                auth.client_nonce(),
                origin,
            )
        finally:
            await off.write(service.sessions.close_session, session_id)
    raise AuthenticationFailed("choose how to sign in")


async def challenge(off: OffLoop, request: Request) -> Response:
    """``POST /console/signin/challenge``: a nonce for the browser to sign with a key."""
    session = await off.write(off.service.sessions.open_session)
    return JSONResponse(
        {"session": session.session_id, "nonce": base64.b64encode(session.nonce).decode()}
    )


async def sign_out(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    try:
        check_csrf(page, dict(await form_of(request)))
    except IdnodeError as exc:
        return error_page(page, exc)
    if page.session_id:
        await off.write(off.service.sessions.close_console_session, page.session_id)
    response = redirect("/console/")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


async def choose_language(off: OffLoop, request: Request) -> Response:
    """``GET /console/lang?to=en&back=...``: remember the choice for a year."""
    chosen = request.query_params.get("to", "")
    back = request.query_params.get("back", "")
    response = redirect(back if back.startswith("/") and not back.startswith("//") else "/console/")
    if chosen in LANGUAGES:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, samesite="lax", path="/")
    return response
