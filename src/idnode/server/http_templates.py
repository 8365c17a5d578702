"""Templates over HTTP: ``/api/templates`` as JSON, ``/templates`` as readable pages.

``PUT /api/templates/{name}`` defines a new version (node administrators only). Records
are made from a template through the ordinary write, ``PUT /api/handles/{handle}`` with
``{"template": "serial-item", "fields": {...}, "readers": "200:88.100.1/PARTNERS"}``.
"""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from idnode.errors import IdnodeError, http_status_of
from idnode.handle.codes import ResponseCode
from idnode.server import http_admin, http_auth
from idnode.server.pages import page
from idnode.service.offloop import OffLoop
from idnode.templates import Template

__all__ = ["template_api", "template_page", "templates_api", "templates_page"]


async def templates_api(off: OffLoop, request: Request) -> Response:
    templates = await off.read(off.service.templates.templates)
    return JSONResponse(
        {
            "responseCode": int(ResponseCode.SUCCESS),
            "templates": [t.to_json() for t in templates],
        }
    )


async def template_api(off: OffLoop, request: Request) -> Response:
    name = request.path_params["name"]
    templates = off.service.templates
    try:
        if request.method == "PUT":
            caller = await http_auth.caller_of(off, request, required=True)
            definition = await http_admin.json_body(request)
            defined = await off.write(templates.define_template, name, definition, caller)
            body: dict[str, Any] = defined.to_json()
            return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), **body}, 201)
        version = http_admin.query_number(request.query_params, "version")
        template = await off.read(templates.template, name, version)
    except IdnodeError as exc:
        return await http_auth.error(off, exc, request=request)
    return JSONResponse({"responseCode": int(ResponseCode.SUCCESS), **template.to_json()})


async def templates_page(off: OffLoop, request: Request) -> Response:
    items = "".join(
        f'<li><a href="/templates/{html.escape(t.name)}">{html.escape(t.name)}</a> '
        f"(version {t.version}): {html.escape(t.title)}</li>"
        for t in await off.read(off.service.templates.templates)
    )
    return HTMLResponse(page("Templates", f"<ul>{items}</ul>"))


async def template_page(off: OffLoop, request: Request) -> Response:
    try:
        version = http_admin.query_number(request.query_params, "version")
        template = await off.read(
            off.service.templates.template, request.path_params["name"], version
        )
    except IdnodeError as exc:
        body = f"<p>{html.escape(exc.message)}</p>"
        return HTMLResponse(page("Template not found", body), status_code=http_status_of(exc))
    return HTMLResponse(page(f"{template.name} (version {template.version})", _table(template)))


def _table(template: Template) -> str:
    rows = []
    for f in template.fields:
        detail = ", ".join(f.values) if f.values else ""
        if f.minimum is not None or f.maximum is not None:
            low = "" if f.minimum is None else f"{f.minimum:g}"
            high = "" if f.maximum is None else f"{f.maximum:g}"
            detail = f"{low} … {high}"
        cells = (f.name, f.label, f.type, "yes" if f.required else "", f.access, detail)
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>" for h in ("Field", "Label", "Type", "Required", "Readable by", "Values")
    )
    return (
        f"<p>{html.escape(template.title)}</p><table><tr>{head}</tr>{''.join(rows)}</table>"
        "<p>Readable by: public = anyone; partner = the record's reader group and its "
        "administrators; owner = those who may modify the record.</p>"
    )
