"""``idnode prefix``: the prefixes a node serves and the ones it delegates to others.

These act on the local node's data directory (like ``init`` and ``import``); a running
server sees the change within seconds (it rereads the homed prefixes every few
seconds, and delegations are ordinary records).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from idnode.cli.common import fail, local_node, out
from idnode.cli.help import HELP_MARKUP, Commands
from idnode.errors import ConfigError, IdnodeError
from idnode.handle.values import DEFAULT_TTL
from idnode.handle.valuetypes import SiteInfo
from idnode.keys import load_public_key
from idnode.node import Node
from idnode.sites import (
    HASH_OPTIONS,
    addresses,
    parse_endpoints,
    site_of,
    sites_in,
)

prefix_app = typer.Typer(
    help="Prefixes: home them here, delegate them to other nodes, list, unhome.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    cls=Commands,
)


@prefix_app.command("register")
@local_node()
def register(
    prefix: Annotated[str, typer.Argument(help="Prefix to serve here, e.g. 88.100.2.")],
    node: Node,
) -> None:
    """Home a prefix at this node: it answers for the prefix's handles from now on."""
    try:
        node.service.prefixes.home_prefix(prefix)
    except IdnodeError as exc:
        fail(exc.message)
    out.print(f"{prefix} is homed at {node.config.data_dir}")


@prefix_app.command("delegate")
@local_node()
def delegate(
    prefix: Annotated[str, typer.Argument(help="Child prefix, e.g. 88.100 under 88.")],
    site: Annotated[
        str, typer.Option(help="The child's primary site: address:port[,address:port...].")
    ],
    mirror: Annotated[
        list[str] | None,
        typer.Option(help="A mirror site of the child, address:port[,...]; repeatable."),
    ] = None,
    hash_by: Annotated[
        str,
        typer.Option(
            "--hash",
            help="How a site with several servers spreads handles: prefix, suffix, handle.",
        ),
    ] = "handle",
    ttl: Annotated[
        int, typer.Option(help="Seconds resolvers may cache the delegation.", min=0)
    ] = DEFAULT_TTL,
    admin_key: Annotated[
        Path | None,
        typer.Option(help="The child's admin_pub.pem: its administrator, here, for the prefix."),
    ] = None,
    admin_index: Annotated[
        int, typer.Option(help="Index of that key's HS_PUBKEY value.", min=1)
    ] = 300,
    *,
    node: Node,
) -> None:
    """Point 0.NA/<prefix> at the servers of the node that serves the prefix.

    Run it on the parent's node. Delegating again replaces the sites: that is how a
    prefix moves to new servers (resolvers follow within --ttl seconds).
    """
    if hash_by not in HASH_OPTIONS:
        fail("--hash must be prefix, suffix or handle", 2)
    try:
        key = None if admin_key is None else (admin_index, load_public_key(admin_key).to_bytes())
        sites = [site_of(parse_endpoints(site), hash_option=HASH_OPTIONS[hash_by])]
        sites += [
            site_of(parse_endpoints(m), hash_option=HASH_OPTIONS[hash_by], primary=False)
            for m in mirror or ()
        ]
    except ConfigError as exc:
        fail(exc.message, 2)
    try:
        record = node.service.prefixes.delegate_prefix(prefix, sites, ttl, key)
    except IdnodeError as exc:
        fail(exc.message)
    out.print(f"{record.handle} now points at {_describe(sites_in(record.values))}")


@prefix_app.command("list")
@local_node()
def list_(
    node: Node,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The prefixes homed here and those delegated from here, with their sites."""
    homed = node.service.reads.homed_prefixes()
    delegated = node.service.prefixes.delegations()
    rows = [(p, "homed", "this node", "") for p in homed]
    for record in delegated:
        sites = sites_in(record.values)
        shortest = min((v.ttl for v in record.values if v.type.startswith("HS_SITE")), default=0)
        rows.append((record.handle.partition("/")[2], "delegated", _describe(sites), str(shortest)))
    if as_json:
        for name, state, where, ttl in rows:
            line = {
                "prefix": name,
                "state": state,
                "sites": where,
                "ttl": int(ttl) if ttl else None,
            }
            out.print(json.dumps(line), highlight=False)
        return
    table = Table()
    for column in ("prefix", "state", "sites", "ttl"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)


@prefix_app.command("unhome")
@local_node()
def unhome(
    prefix: Annotated[str, typer.Argument(help="Prefix to stop serving here.")],
    node: Node,
) -> None:
    """Stop serving a prefix here. Its records stay, and are served again if it is re-homed."""
    try:
        removed = node.service.prefixes.unhome_prefix(prefix)
    except IdnodeError as exc:
        fail(exc.message)
    if not removed:
        fail(f"{prefix} is not homed at {node.config.data_dir}")
    out.print(f"{prefix} is no longer homed at {node.config.data_dir}")


def _describe(sites: list[SiteInfo]) -> str:
    return "; ".join(
        ("primary " if site.primary_mask & site.PRIMARY else "mirror ") + ", ".join(addresses(site))
        for site in sites
    )
