"""What the SNMS and IDHub front ends share: their envelopes, bearer tokens, bodies.

Both answer HTTP 200 with the outcome in the body, as their clients expect (the
SDKs' HTTP layers treat any other status as a transport failure): SNMS as
``{"message", "status", "data"}`` with status 1 for success, IDHub as ``{"code",
"message", "data"}`` with code 1. The codes for errors come from
:func:`idnode.errors.snms_status_of` and :func:`idnode.errors.idhub_code_of`, where
every error's codes are decided.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from idnode.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    BadRequestParameter,
    IdnodeError,
    InvalidCredential,
    InvalidValue,
    TooManyFailures,
    idhub_code_of,
    snms_status_of,
)
from idnode.service import Caller
from idnode.service.offloop import OffLoop

__all__ = [
    "MAX_BATCH",
    "MAX_BODY",
    "authenticating",
    "bearer_caller",
    "body",
    "guarded",
    "idhub_error",
    "idhub_ok",
    "origin_of",
    "snms_error",
    "snms_ok",
]

MAX_BODY = 8 * 1024 * 1024
#: The most records one SNMS batch request may hold (as SNMS documents).
MAX_BATCH = 2000

Handler = Callable[[OffLoop, Request], Awaitable[Response]]
_T = TypeVar("_T")


def _json(doc: dict[str, Any]) -> Response:
    return Response(json.dumps(doc, ensure_ascii=False), media_type="application/json")


def snms_ok(data: Any = True) -> Response:
    return _json({"message": "success", "status": 1, "data": data})


def snms_error(exc: IdnodeError) -> Response:
    return _json({"message": exc.message, "status": snms_status_of(exc), "data": None})


def idhub_ok(data: Any = None) -> Response:
    doc: dict[str, Any] = {"code": 1, "message": "成功"}
    if data is not None:
        doc["data"] = data
    return _json(doc)


def idhub_error(exc: IdnodeError) -> Response:
    return _json({"message": exc.message, "code": idhub_code_of(exc)})


def origin_of(request: Request) -> str:
    return f"http {request.client.host if request.client else 'unknown'}"


async def body(request: Request) -> Any:
    """The request's JSON (None when it has none); InvalidValue if it is not JSON."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidValue(f"request body over {MAX_BODY} bytes")
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequestParameter(f"request body is not JSON: {exc}") from exc


async def authenticating(
    request: Request,
    attempt: Callable[[], Awaitable[_T]],
    failures: tuple[type[IdnodeError], ...] = (AuthenticationFailed, InvalidCredential),
) -> _T:
    """``attempt()``, a login or a token check, counted against the address's allowance
    of failed authentications (the HTTP server's ``http_auth_failures``): an address
    that used it up is refused before anything is checked."""
    limiter = getattr(request.app.state, "auth_failures", None)
    address = request.client.host if request.client else "unknown"
    if limiter is not None and limiter.blocked(address, time.monotonic()):
        raise TooManyFailures("too many failed authentications from this address; try later")
    try:
        return await attempt()
    except failures:
        if limiter is not None:
            limiter.failed(address, time.monotonic())
        raise


async def bearer_caller(off: OffLoop, request: Request, *, required: bool = True) -> Caller:
    """The identity the ``Authorization: Bearer`` token stands for."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        if required:
            raise AuthenticationNeeded("log in first and send Authorization: Bearer <token>")
        return Caller(None, origin_of(request))
    sessions = off.service.sessions

    def check() -> Awaitable[Caller]:
        return off.read(sessions.token_caller, token.strip(), origin_of(request))

    # A token presented and not taken is a failed authentication too.
    return await authenticating(request, check, (AuthenticationNeeded,))


def guarded(
    handler: Handler, error: Callable[[IdnodeError], Response]
) -> Callable[[OffLoop, Request], Awaitable[Response]]:
    """``handler`` with every IdnodeError turned into its API's error envelope."""

    async def run(off: OffLoop, request: Request) -> Response:
        try:
            return await handler(off, request)
        except IdnodeError as exc:
            return error(exc)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run
