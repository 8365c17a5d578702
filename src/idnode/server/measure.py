"""Each answer the servers send, measured for ``/metrics`` and, at debug level,
logged: one place for UDP, TCP and HTTP, so that their figures mean the same thing
(the time from reading a request to handing its answer to the kernel).

What a line at debug holds: protocol, operation, outcome, milliseconds, the client's
address and the handle asked for (the Handle protocol) or the path (HTTP). Never a
value, a query string (an IDIS token may ride in one) or a header.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from idnode.handle.codec import decode_message, peek_codes
from idnode.handle.codes import OpCode, ResponseCode
from idnode.metrics import observe_request

__all__ = ["handle_answered", "http_answered"]

log = logging.getLogger("idnode.requests")

# Names for the labels; anything else a client sends is "other", so that no one can
# make up new series (each costs memory in every worker and in Prometheus).
_OPERATIONS = {int(op): op.name.lower() for op in OpCode}
_CODES = {int(code): code.name.lower() for code in ResponseCode}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Control characters would let a handle or a path forge lines of a text log.
_PRINTABLE = dict.fromkeys([*range(32), 127], "?")


def handle_answered(
    protocol: str, request: bytes, reply: bytes, began: float, peer: object
) -> None:
    """A Handle protocol ``reply`` to ``request``, read at ``began`` (perf_counter)."""
    seconds = time.perf_counter() - began
    codes = peek_codes(reply)
    if codes is None:  # sealed in an IDIS encrypted session: only its ends know
        operation = code = "sealed"
    else:
        operation = _OPERATIONS.get(codes[0], "other")
        code = _CODES.get(codes[1], "other")
    observe_request(protocol, operation, code, seconds)
    if log.isEnabledFor(logging.DEBUG):
        handle = _handle_of(request)
        client = _address(peer)
        log.debug(
            "%s %s %s %s %.3f ms from %s",
            protocol,
            operation,
            handle or "-",
            code,
            seconds * 1000,
            client,
            extra={
                "fields": {
                    "event": "request",
                    "protocol": protocol,
                    "operation": operation,
                    "handle": handle,
                    "code": code,
                    "ms": round(seconds * 1000, 3),
                    "client": client,
                }
            },
        )


def http_answered(
    method: str, route: str, path: str, status: int, began: float, client: Any
) -> None:
    """An HTTP answer with ``status`` to ``method`` on ``route`` (the route's
    template, ``/api/handles/{handle:text}``: one series per route, not per path;
    methods beyond the usual seven count as ``OTHER``, for the same reason)."""
    seconds = time.perf_counter() - began
    if method not in _METHODS:
        method = "OTHER"
    observe_request("http", f"{method} {route}", str(status), seconds)
    if log.isEnabledFor(logging.DEBUG):
        address = _address(client)
        path = path.translate(_PRINTABLE)
        log.debug(
            "http %s %s %d %.3f ms from %s",
            method,
            path,
            status,
            seconds * 1000,
            address,
            extra={
                "fields": {
                    "event": "request",
                    "protocol": "http",
                    "operation": f"{method} {route}",
                    "path": path,
                    "code": str(status),
                    "ms": round(seconds * 1000, 3),
                    "client": address,
                }
            },
        )


def _handle_of(request: bytes) -> str:
    try:
        handle = getattr(decode_message(request).body, "handle", "")
    except Exception:
        return ""
    return handle.translate(_PRINTABLE) if isinstance(handle, str) else ""


def _address(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unknown"
