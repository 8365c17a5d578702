"""``idnode search``: the local node's identifiers by prefix, template, fields, words."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from idnode.cli.common import err, fail, local_node, out
from idnode.domain import Condition, SearchQuery
from idnode.errors import IdnodeError
from idnode.node import Node


@local_node()
def search(
    node: Node,
    prefix: Annotated[str | None, typer.Option(help="Only identifiers under this prefix.")] = None,
    template: Annotated[
        str | None, typer.Option(help="Only records made from this template (NAME[@VERSION]).")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="A field condition: NAME=VALUE, NAME>=VALUE, NAME<VALUE...; repeatable."),
    ] = None,
    text: Annotated[
        str | None, typer.Option(help="Words that must all occur in the record.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=10_000)] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many first.", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Identifiers whose public values match, in handle order."""
    try:
        query = SearchQuery(
            prefix, template, tuple(Condition.parse(w) for w in where or ()), text, offset, limit
        )
        found = node.service.reads.search(query)
    except IdnodeError as exc:
        fail(exc.message)
    if as_json:
        out.print(json.dumps(found), highlight=False, soft_wrap=True)
        return
    if not found:
        # Said on stderr: a script reading the handles from stdout still reads none.
        past = f" past the first {offset}" if offset else ""
        err.print(f"no identifier matches{past}", highlight=False)
        return
    for handle in found:
        out.print(handle, highlight=False, soft_wrap=True)
