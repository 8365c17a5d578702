"""A record's history over HTTP: ``/api/history/{handle}``.

- ``GET``: the list of versions (number, time, who, from where, operation);
- ``GET ?version=N``: that version's values (``"deleted": true`` for a deletion);
- ``GET ?from=A&to=B``: what changed from version A to version B, value by value;
- ``POST ?restore=N``: make version N's values current again (a new version).

Reading needs READ_VALUE on the record, restoring the permissions of the changes it
makes (see :meth:`idnode.service.history.History.restore_version`).
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
from idnode.service.offloop import OffLoop

__all__ = ["history"]


async def history(off: OffLoop, request: Request) -> Response:
    handle = request.path_params["handle"]
    params = request.query_params
    versions_of = off.service.history
    try:
        caller = await http_auth.caller_of(off, request, required=True)
        if request.method == "POST":
            restore = _number(params, "restore")
            number = await off.write(versions_of.restore_version, handle, restore, caller)
            return _ok({"handle": handle, "version": number})
        if "from" in params or "to" in params:
            a = await off.read(versions_of.version, handle, _number(params, "from"), caller)
            b = await off.read(versions_of.version, handle, _number(params, "to"), caller)
            changes = [change_to_json(c) for c in diff(a.values, b.values)]
            return _ok({"handle": handle, "from": a.number, "to": b.number, "changes": changes})
        if "version" in params:
            number = _number(params, "version")
            version = await off.read(versions_of.version, handle, number, caller)
            return _ok({"handle": handle, **version_to_json(version, values=True)})
        versions = await off.read(versions_of.history, handle, caller)
        return _ok({"handle": handle, "versions": [version_to_json(v) for v in versions]})
    except IdnodeError as exc:
        return await http_auth.error(off, exc, handle, request=request)


def _number(params: Mapping[str, str], name: str) -> int:
    number = http_admin.query_number(params, name)
    if number is None:
        raise BadRequestParameter(f"{name} must be a version number")
    return number


def _ok(body: dict[str, Any]) -> Response:
    return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), **body})
