"""``idnode history`` and ``audit``: a record's versions (one of them, a diff, or going
back to one), and the node's audit log of writes.

They run on the node's data directory as its operator, like ``import``; over HTTP the
same is at ``/api/history/{handle}`` for the record's administrators.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from idnode.cli.common import fail, local_node, out
from idnode.domain import AuditQuery
from idnode.errors import IdnodeError
from idnode.handle.values import HandleValue, ValueReference
from idnode.history import Change, Version, diff
from idnode.jsonformat import change_to_json, record_to_json, value_to_json, version_to_json
from idnode.node import Node
from idnode.service import Caller


@local_node()
def history(
    handle: Annotated[str, typer.Argument(help="The handle, e.g. 88.100.1/PUMP-0001.")],
    node: Node,
    version: Annotated[int | None, typer.Option(help="Show the values of version N.")] = None,
    from_: Annotated[
        int | None, typer.Option("--from", help="Show what changed from version A...")
    ] = None,
    to: Annotated[int | None, typer.Option(help="...to version B (default: the latest).")] = None,
    restore: Annotated[
        int | None, typer.Option(help="Make version N's values current again.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The versions of a record: who changed it, when, from where and how."""
    try:
        if restore is not None:
            config = node.config
            who = ValueReference(config.admin_handle, config.admin_index)
            number = node.service.history.restore_version(
                handle, restore, Caller(who if config.admin_handle else None, "cli")
            )
            out.print(f"{handle} is back to version {restore}'s values, as version {number}")
            return
        versions = node.service.history.history(handle)
        if from_ is not None or to is not None:
            a = _pick(versions, from_ if from_ is not None else len(versions) - 1)
            b = _pick(versions, to if to is not None else len(versions))
            _show_diff(a, b, diff(a.values, b.values), as_json)
        elif version is not None:
            _show_version(_pick(versions, version), as_json)
        else:
            _show_versions(versions, as_json)
    except IdnodeError as exc:
        fail(exc.message)


def _pick(versions: list[Version], number: int) -> Version:
    if not 1 <= number <= len(versions):
        fail(f"there are versions 1 to {len(versions)}, not {number}")
    return versions[number - 1]


def _when(version: Version) -> str:
    if version.at is None:
        return "(not recorded)"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(version.at))


def _show_versions(versions: list[Version], as_json: bool) -> None:
    if as_json:
        for v in versions:
            out.print(json.dumps(version_to_json(v)), highlight=False, soft_wrap=True)
        return
    # Two short lines a version rather than a table: at 80 columns a table's six
    # columns cut or fold the identity and the address, which are what one looks for.
    for v in versions:
        count = len(v.values) if v.values is not None else 0
        held = "deleted" if v.values is None else f"{count} value{'' if count == 1 else 's'}"
        out.print(f"{v.number:>4}  {_when(v)}  {v.operation}  ({held})", highlight=False)
        if v.actor or v.origin:
            out.print(f"      by {v.actor or '?'} from {v.origin or '?'}", highlight=False)


def _show_version(version: Version, as_json: bool) -> None:
    if as_json:
        out.print(json.dumps(version_to_json(version, values=True)), soft_wrap=True)
        return
    out.print(f"version {version.number}, {_when(version)}, {version.operation}", highlight=False)
    if version.values is None:
        out.print("(the handle was deleted)")
    for value in version.values or ():
        out.print(f"  {value.index:>5}  {value.type}  {_text(value)}", highlight=False)


def _show_diff(a: Version, b: Version, changes: list[Change], as_json: bool) -> None:
    if as_json:
        for c in changes:
            out.print(json.dumps(change_to_json(c)), highlight=False, soft_wrap=True)
        return
    out.print(f"version {a.number} -> {b.number}: {len(changes)} change(s)", highlight=False)
    # A line per value, before then after, as text: long values fold at the terminal's
    # edge instead of running off it.
    for c in changes:
        shown = c.after or c.before
        assert shown is not None
        out.print(f"  {c.kind} {c.index} {shown.type}", highlight=False)
        typed = c.before is not None and c.after is not None and c.before.type != c.after.type
        for sign, value in (("-", c.before), ("+", c.after)):
            if value is not None:
                kind = f"{value.type}: " if typed else ""
                out.print(f"      {sign} {kind}{_text(value)}", highlight=False)


def _text(value: HandleValue) -> str:
    """A value's data as a person reads it: its text, or the JSON of its structure
    (an HS_ADMIN's permissions and identity), or base64 for bytes that are neither."""
    data = value_to_json(value)["data"]
    if data["format"] == "string":
        return str(data["value"])
    if isinstance(data["value"], str):
        return f"({data['format']}) {data['value']}"
    return json.dumps(data["value"], ensure_ascii=False)


@local_node()
def audit(
    node: Node,
    handle: Annotated[str | None, typer.Option(help="Only writes to this handle.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only writes by INDEX:HANDLE.")] = None,
    hours: Annotated[int, typer.Option(help="How many hours back, 0 for all.")] = 24,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Show the node's audit log: who wrote what, from where, before and after."""
    since = time.time() - hours * 3600 if hours else 0.0
    entries = node.service.writes.audit_log(AuditQuery(handle, actor, since, limit))
    for e in entries:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at))
        if as_json:
            line = {
                "at": when,
                "actor": e.actor,
                "origin": e.origin,
                "operation": e.operation,
                "handle": e.handle,
                "before": None if e.before is None else record_to_json(e.before)["values"],
                "after": None if e.after is None else record_to_json(e.after)["values"],
            }
            out.print(json.dumps(line, ensure_ascii=False), highlight=False, soft_wrap=True)
        else:
            out.print(f"{when}  {e.actor}  {e.origin}  {e.operation}  {e.handle}", highlight=False)
