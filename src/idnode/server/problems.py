"""One shape for every error of the HTTP API: problem+json with Handle.Net's members.

Handle.Net clients read ``responseCode`` (and ``handle``, ``message``); generic HTTP
clients read RFC 9457's ``type``, ``title``, ``status`` and ``detail``. Both are there.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import JSONResponse, Response

from idnode.errors import IdnodeError, http_status_of

__all__ = ["problem"]


class _ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem(
    exc: IdnodeError, handle: str | None = None, extra: dict[str, Any] | None = None
) -> Response:
    """One shape for every API error (see docs/http-api.md); ``extra`` members add
    what the error is about (a bulk registration's rejected rows)."""
    status = http_status_of(exc)
    body: dict[str, Any] = {"responseCode": int(exc.response_code)}
    if handle is not None:
        body["handle"] = handle
    body["message"] = exc.message
    fields = getattr(exc, "problems", None)  # TemplateViolation: what is wrong, by field
    if fields:
        body["fields"] = fields
    body |= extra or {}
    if status < 400:  # VALUES_NOT_FOUND is a 200 in Handle.Net; not a problem document
        return JSONResponse(body, status_code=status)
    body |= {
        "type": f"https://idnode.dev/problems/{_slug(type(exc).__name__)}",
        "title": exc.response_code.name.replace("_", " ").capitalize(),
        "status": status,
        "detail": exc.message,
    }
    return _ProblemResponse(body, status_code=status)


def _slug(class_name: str) -> str:
    """``HandleNotFound`` → ``handle-not-found``; an acronym stays one word
    (``InvalidGS1`` → ``invalid-gs1``)."""
    return _WORD_START.sub("-", class_name).lower()


# Where a word starts: a capital after a lower-case letter or digit, or the last
# capital of an acronym that a capitalised word follows (``HTTPError``).
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
