"""Who is calling the HTTP API: Basic, Handle sessions, TLS client certificates.

Handle.Net's JSON API accepts three kinds of credentials, and so do we:

- ``Authorization: Basic`` with user ``index:handle`` (URL-encoded) and the secret key
  of that HS_SECKEY value as password;
- a session: ``POST /api/sessions`` gives a session id and a nonce, the client proves
  an identity with ``Authorization: Handle sessionId=..., id=..., type=..., cnonce=...,
  alg=..., signature=...`` (in ``PUT /api/sessions/this`` or any request), then sends
  ``Authorization: Handle sessionId=...`` alone;
- a TLS client certificate whose subject UID (else CN) is ``index:handle`` and whose
  key is that identity's HS_PUBKEY (when the server runs with TLS and a client CA).

Sessions live in the database (see :mod:`idnode.service.sessions`), so they work
whichever worker process a request reaches. Checking credentials reads the database
(and proving an identity in a session writes it), off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode.auth.handle_header import parse_handle_authorization, parse_identity
from idnode.auth.throttle import FailureLimiter
from idnode.domain import StoredSession
from idnode.errors import (
    AuthenticationError,
    AuthenticationFailed,
    AuthenticationNeeded,
    IdnodeError,
    InvalidCredential,
    TooManyFailures,
    http_status_of,
)
from idnode.handle.codes import ResponseCode
from idnode.handle.values import ValueReference
from idnode.server.problems import problem
from idnode.service import Caller
from idnode.service.offloop import OffLoop

__all__ = ["caller_of", "error", "sessions", "this_session"]


def origin_of(request: Request) -> str:
    return f"http {request.client.host if request.client else 'unknown'}"


def _throttle(request: Request) -> tuple[FailureLimiter | None, str]:
    limiter = getattr(request.app.state, "auth_failures", None)
    return limiter, request.client.host if request.client else "unknown"


async def caller_of(off: OffLoop, request: Request, *, required: bool = True) -> Caller:
    """The caller the request's credentials prove; anonymous only if not ``required``.

    Credentials that are present but wrong always raise, never fall back to anonymous.
    Credentials from an address that failed too often (``http_auth_failures`` a
    minute) get TooManyFailures before they are checked.
    """
    limiter, address = _throttle(request)
    presented = "authorization" in request.headers or client_certificate(request) is not None
    if presented and limiter is not None and limiter.blocked(address, time.monotonic()):
        raise TooManyFailures("too many failed authentications from this address; try later")
    try:
        return await _caller_of(off, request, required=required)
    except (AuthenticationFailed, InvalidCredential, AuthenticationError):
        if limiter is not None:
            limiter.failed(address, time.monotonic())
        raise


async def _caller_of(off: OffLoop, request: Request, *, required: bool) -> Caller:
    service = off.service
    origin = origin_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        identity, password = _basic(credentials)
        return await off.read(service.auth.authenticate_password, identity, password, origin)
    if scheme == "handle":
        auth = parse_handle_authorization(credentials)
        if auth.authenticating:
            if auth.session_id is None:
                raise AuthenticationFailed(
                    "Handle authorization needs sessionId=; open one with POST /api/sessions"
                )
            return await off.write(
                service.sessions.authenticate_session,
                auth.session_id,
                auth.identity(),
                auth.auth_type(),
                auth.protocol_answer(),
                auth.client_nonce(),
                origin,
            )
        if auth.session_id is not None and not auth.client_cert:
            return await off.read(service.sessions.session_caller, auth.session_id, origin)
    elif header:
        raise AuthenticationNeeded(
            f"authentication scheme {scheme!r} is not supported; use Basic or Handle"
        )
    certificate = client_certificate(request)
    if certificate is not None:
        identity, key = _certificate_identity(certificate)
        return await off.read(service.auth.authenticate_certificate, identity, key, origin)
    if required:
        raise AuthenticationNeeded(
            "this operation needs credentials: HTTP Basic, a Handle session or a client certificate"
        )
    return Caller(None, origin)


def client_certificate(request: Request) -> x509.Certificate | None:
    """The verified TLS client certificate, from the ASGI ``tls`` extension."""
    tls: dict[str, Any] = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0].encode("ascii"))


def _certificate_identity(
    certificate: x509.Certificate,
) -> tuple[ValueReference, rsa.RSAPublicKey | dsa.DSAPublicKey]:
    subject = certificate.subject
    for oid in (NameOID.USER_ID, NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        names = subject.get_attributes_for_oid(oid)
        if names:
            text = names[0].value
            identity = parse_identity(text if isinstance(text, str) else text.decode())
            break
    else:
        raise AuthenticationFailed("the client certificate's subject names no UID or CN")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        raise AuthenticationFailed("client certificates must hold an RSA or DSA key")
    return identity, key


def _basic(credentials: str) -> tuple[ValueReference, bytes]:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationFailed("malformed Basic credentials") from exc
    user, sep, password = decoded.partition(":")
    index_text, _, handle = unquote(user).partition(":")
    if not sep or not handle or not index_text.isdigit():
        raise AuthenticationFailed("the user name must be index:handle, e.g. 300%3A0.NA/88.100.1")
    return ValueReference(handle, int(index_text)), password.encode("utf-8")


async def error(
    off: OffLoop, exc: IdnodeError, handle: str | None = None, *, request: Request | None = None
) -> Response:
    """A problem response; a 401 also offers Basic and a fresh session to answer with.

    Each session so offered is written to the database and counts, for ``request``'s
    address, as a failed authentication: a client asking again and again without
    authenticating is refused sessions, not given one per request.
    """
    response = problem(exc, handle)
    if http_status_of(exc) == 401:
        response.headers.append("WWW-Authenticate", 'Basic realm="handle"')
        limiter, address = _throttle(request) if request is not None else (None, "")
        if limiter is not None:
            if limiter.blocked(address, time.monotonic()):
                return response
            limiter.failed(address, time.monotonic())
        try:
            session = await off.write(off.service.sessions.open_session)
        except IdnodeError:
            return response  # Basic still works; the database is having trouble
        nonce = base64.b64encode(session.nonce).decode()
        response.headers.append(
            "WWW-Authenticate", f'Handle sessionId="{session.session_id}", nonce="{nonce}"'
        )
    return response


def _session_body(session: StoredSession) -> dict[str, Any]:
    body: dict[str, Any] = {
        "responseCode": int(ResponseCode.SUCCESS),
        "sessionId": session.session_id,
        "nonce": base64.b64encode(session.nonce).decode(),
        "authenticated": session.identity is not None,
    }
    if session.identity is not None:
        body["id"] = f"{session.identity.index}:{session.identity.handle}"
    return body


async def sessions(off: OffLoop, request: Request) -> Response:
    """``POST /api/sessions``: a new session, authenticated at once if credentials came."""
    try:
        caller = await caller_of(off, request, required=False)
        session = await off.write(off.service.sessions.open_session, caller)
    except IdnodeError as exc:
        return await error(off, exc, request=request)
    return JSONResponse(_session_body(session), status_code=201)


async def this_session(off: OffLoop, request: Request) -> Response:
    """``GET|PUT|POST|DELETE /api/sessions/this``: the session the header names."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    try:
        if scheme.lower() != "handle":
            raise AuthenticationNeeded('name the session: Authorization: Handle sessionId="..."')
        session_id = parse_handle_authorization(credentials).session_id
        if session_id is None:
            raise AuthenticationNeeded('name the session: Authorization: Handle sessionId="..."')
        sessions = off.service.sessions
        if request.method == "DELETE":
            await off.write(sessions.close_session, session_id)
            return Response(status_code=204)
        await off.read(sessions.session, session_id)  # unknown or expired: 401 first
        if request.method in ("PUT", "POST"):
            caller = await caller_of(off, request, required=True)
            session = await off.write(sessions.bind_session, session_id, caller)
        else:
            await caller_of(off, request, required=False)  # a full header authenticates
            session = await off.read(sessions.session, session_id)
    except IdnodeError as exc:
        return await error(off, exc, request=request)
    return JSONResponse(_session_body(session))
