"""``idnode trace``: capture EPCIS documents, query events, follow genealogy, list a
recall, on the node's data directory as its operator (like ``import``).

Over HTTP the same is ``POST /epcis/capture``, ``GET /epcis/events``,
``GET /api/trace/{identifier}`` and ``GET /api/recall/{batch}`` (docs/traceability.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from idnode.cli.common import fail, local_node, out
from idnode.epcis.events import iso_time
from idnode.epcis.queries import parse_query
from idnode.errors import IdnodeError
from idnode.handle.values import ValueReference
from idnode.node import Node
from idnode.service import Caller

trace_app = typer.Typer(
    no_args_is_help=True, help="EPCIS events: capture, query, genealogy, recall."
)


def _operator(node: Node) -> Caller:
    config = node.config
    who = ValueReference(config.admin_handle, config.admin_index) if config.admin_handle else None
    return Caller(who, "cli")


@trace_app.command()
@local_node()
def capture(
    file: Annotated[Path, typer.Argument(help="An EPCIS 2.0 document: JSON, JSON-LD or XML.")],
    node: Node,
    prefix: Annotated[str, typer.Option(help="The enterprise the events belong to.")] = "",
    access: Annotated[
        str, typer.Option(help="Who else reads them: owner (nobody), partner or public.")
    ] = "owner",
    readers: Annotated[
        str, typer.Option(help="For partner events: the reader group, INDEX:HANDLE.")
    ] = "",
) -> None:
    """Capture the events of a document, all or none."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    kind = "application/xml" if file.suffix.lower() == ".xml" else ""
    try:
        job = node.service.trace.capture(
            _operator(node), data, kind, prefix=prefix, access=access, readers=readers
        )
    except IdnodeError as exc:
        for fault in getattr(exc, "faults", None) or [exc.message]:
            out.print(fault, highlight=False)
        fail(f"{file}: nothing captured")
    out.print(
        f"captured {job.events} event(s) for {job.owner}"
        + (f", {job.duplicates} already held" if job.duplicates else "")
        + f" (capture {job.capture_id})"
    )


@trace_app.command()
@local_node()
def events(
    node: Node,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A query parameter NAME=VALUE (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 30,
) -> None:
    """Events the standard's query parameters select, as JSON lines."""
    pairs = []
    for item in param or ():
        name, sep, value = item.partition("=")
        if not sep:
            fail(f"--param takes NAME=VALUE, not {item!r}")
        pairs.append((name, value))
    service = node.service.trace
    caller = _operator(node)
    try:
        query = parse_query([*pairs, ("perPage", str(limit))], service.audience(caller),
                            service.gs1_prefix)  # fmt: skip
        page = service.events(caller, query)
    except IdnodeError as exc:
        fail(exc.message)
    for event in page.events:
        out.print(json.dumps(event, ensure_ascii=False), highlight=False, soft_wrap=True)


@trace_app.command()
@local_node()
def show(
    identifier: Annotated[str, typer.Argument(help="An identifier, EPC URN or Digital Link.")],
    node: Node,
    up: Annotated[
        bool, typer.Option("--up", help="What it is made of (default: where it went).")
    ] = False,
    depth: Annotated[int, typer.Option(help="How many steps to follow.")] = 5,
) -> None:
    """Genealogy: what an identifier went into, or (--up) what it was made of."""
    try:
        found = node.service.trace.trace(_operator(node), identifier, "up" if up else "down", depth)
    except IdnodeError as exc:
        fail(exc.message)
    out.print(f"{found.identifier} ({'made of' if up else 'went into'}, {depth} steps)")
    for edge in found.edges:
        until = f" until {iso_time(edge.until)}" if edge.until is not None else ""
        out.print(f"  {edge.source} -> {edge.target}  {edge.kind} {iso_time(edge.at)}{until}",
                  highlight=False)  # fmt: skip
    if found.truncated:
        out.print("stopped early: too many identifiers")


@trace_app.command()
@local_node()
def recall(
    batch: Annotated[str, typer.Argument(help="The batch: an identifier, LGTIN or Digital Link.")],
    node: Node,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Every identifier downstream of a batch, with where it was last seen."""
    try:
        found = node.service.trace.recall(_operator(node), batch)
    except IdnodeError as exc:
        fail(exc.message)
    if not found:
        out.print(f"nothing downstream of {batch} in the events held here")
    for item in found:
        seen = item.last_seen
        where = ""
        if seen is not None:
            body = seen.body
            place = (body.get("bizLocation") or body.get("readPoint") or {}).get("id", "")
            where = f"{body.get('eventTime', '')} {body.get('bizStep', '')} {place}".strip()
        if as_json:
            line = {"identifier": item.identifier, "depth": item.depth, "record": item.record,
                    "lastSeen": where}  # fmt: skip
            out.print(json.dumps(line, ensure_ascii=False), highlight=False, soft_wrap=True)
        else:
            out.print(f"{item.identifier}\t{item.record or '-'}\t{where or 'not seen'}",
                      highlight=False)  # fmt: skip
