"""A record's history over HTTP: ``/api/history/{handle}``.

- ``GET``: the list of versions (number, time, who, from where, operation);
- ``GET ?version=N``: that version's values (``"deleted": true`` for a deletion);
- ``GET ?from=A&to=B``: what changed from version A to version B, value by value;
- ``POST ?restore=N``: make version N's values current again (a new version).

Reading needs READ_VALUE on the record, restoring the permissions of the changes it
makes (see :meth:`NodeService.restore_version`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idnode.errors import BadRequestParameter, IdnodeError
from idnode.handle.codes import ResponseCode
from idnode.history import diff
from idnode.jsonformat import change_to_json, version_to_json
from idnode.server import http_admin, http_auth
from idnode.service import NodeService

__all__ = ["history"]


async def history(service: NodeService, request: Request) -> Response:
    handle = request.path_params["handle"]
    params = request.query_params
    try:
        caller = http_auth.caller_of(service, request, required=True)
        if request.method == "POST":
            number = service.history.restore_version(handle, _number(params, "restore"), caller)
            return _ok({"handle": handle, "version": number})
        if "from" in params or "to" in params:
            a = service.history.version(handle, _number(params, "from"), caller)
            b = service.history.version(handle, _number(params, "to"), caller)
            changes = [change_to_json(c) for c in diff(a.values, b.values)]
            return _ok({"handle": handle, "from": a.number, "to": b.number, "changes": changes})
        if "version" in params:
            version = service.history.version(handle, _number(params, "version"), caller)
            return _ok({"handle": handle, **version_to_json(version, values=True)})
        versions = service.history.history(handle, caller)
        return _ok({"handle": handle, "versions": [version_to_json(v) for v in versions]})
    except IdnodeError as exc:
        return http_auth.error(service, exc, handle)


def _number(params: Mapping[str, str], name: str) -> int:
    number = http_admin.query_number(params, name)
    if number is None:
        raise BadRequestParameter(f"{name} must be a version number")
    return number


def _ok(body: dict[str, Any]) -> Response:
    return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), **body})
