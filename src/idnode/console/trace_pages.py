"""The console's traceability pages: an identifier's events on a timeline, its
genealogy drawn both ways, and a recall view for a batch (docs/traceability.md).

Every figure comes from the same service calls as ``/epcis/events`` and
``/api/trace``, as the signed-in identity: a visitor sees the public events only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from idnode.console.web import error_page, page_of, redirect, render
from idnode.epcis.events import iso_time
from idnode.epcis.identifiers import record_handle
from idnode.epcis.queries import parse_query
from idnode.epcis.vocabulary import bare
from idnode.errors import IdnodeError
from idnode.service.offloop import OffLoop
from idnode.service.trace import Trace

__all__ = ["recall_page", "trace_page"]

#: Events shown on an identifier's timeline (the newest ones).
TIMELINE = 200
#: How far the page's genealogy reaches each way.
DEPTH = 5


async def trace_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    identifier = request.path_params.get("identifier") or request.query_params.get("id", "")
    if not identifier:
        return render(page, "trace.html", identifier="", events=[], graph=None, edges=[])
    if "identifier" not in request.path_params:
        return redirect(f"/console/trace/{quote(identifier.strip(), safe='/:')}")
    service = off.service.trace
    try:
        audience = await off.read(service.audience, page.caller)
        query = parse_query(
            [("MATCH_anyEPC", identifier), ("orderBy", "eventTime"), ("orderDirection", "DESC"),
             ("perPage", str(TIMELINE))],
            audience, service.gs1_prefix,
        )  # fmt: skip
        found = await off.read(service.events, page.caller, query)
        down = await off.read(service.trace, page.caller, identifier, "down", DEPTH)
        up = await off.read(service.trace, page.caller, identifier, "up", DEPTH)
    except IdnodeError as exc:
        return error_page(page, exc)
    key = down.identifier
    record = record_handle(key, service.gs1_prefix)
    return render(
        page,
        "trace.html",
        identifier=identifier,
        key=key,
        record=record,
        events=[_row(e) for e in found.events],
        more=found.next_token is not None,
        graph=_graph(key, up, down, service.gs1_prefix),
        edges=[_edge(e, "up") for e in up.edges] + [_edge(e, "down") for e in down.edges],
        truncated=up.truncated or down.truncated,
        depth=DEPTH,
    )


async def recall_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    batch = request.path_params["batch"]
    try:
        found = await off.read(off.service.trace.recall, page.caller, batch)
    except IdnodeError as exc:
        return error_page(page, exc)
    rows = []
    for item in found:
        seen = item.last_seen.body if item.last_seen is not None else None
        rows.append({
            "identifier": item.identifier, "depth": item.depth, "record": item.record,
            "seen": None if seen is None else _row(seen),
        })  # fmt: skip
    return render(page, "recall.html", batch=batch, rows=rows)


def _row(event: dict[str, Any]) -> dict[str, str]:
    place = event.get("bizLocation") or event.get("readPoint") or {}
    return {
        "time": str(event.get("eventTime", "")),
        "type": str(event.get("type", "")),
        "action": str(event.get("action", "")),
        "step": bare(str(event.get("bizStep", "")), "BizStep"),
        "disposition": bare(str(event.get("disposition", "")), "Disp"),
        "where": str(place.get("id", "")) if isinstance(place, dict) else "",
        "id": str(event.get("eventID", "")),
    }


def _edge(edge: Any, direction: str) -> dict[str, str]:
    return {
        "source": edge.source,
        "target": edge.target,
        "kind": edge.kind,
        "at": iso_time(edge.at),
        "until": iso_time(edge.until) if edge.until is not None else "",
        "direction": direction,
    }


def _graph(key: str, up: Trace, down: Trace, gs1_prefix: str) -> dict[str, Any]:
    """Nodes placed in columns by how far up (left) or down (right) they are, for the
    page's script to draw; the same facts are in the table below it."""
    levels: dict[str, int] = {key: 0}
    for node, depth in up.nodes.items():
        levels.setdefault(node, -depth)
    for node, depth in down.nodes.items():
        levels.setdefault(node, depth)
    columns: dict[int, int] = {}
    nodes = []
    for node, level in sorted(levels.items(), key=lambda item: (item[1], item[0])):
        row = columns.get(level, 0)
        columns[level] = row + 1
        nodes.append({
            "name": node, "x": level * 220, "y": row * 56,
            "record": record_handle(node, gs1_prefix) or "", "start": node == key,
        })  # fmt: skip
    links = [{"source": e.source, "target": e.target, "kind": e.kind}
             for e in (*up.edges, *down.edges)]  # fmt: skip
    return {"nodes": nodes, "links": links}
