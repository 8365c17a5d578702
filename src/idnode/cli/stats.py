"""``idnode stats`` and ``report-stats``: counts per prefix and hour, and reporting them."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from idnode.cli.common import DataDir, config_of, fail, local_node, out
from idnode.errors import IdnodeError
from idnode.names import handle_key
from idnode.node import Node, open_node
from idnode.reporting import REPORT_HOURS, report_rows, send_report
from idnode.stats import StatsRow, hours_since

__all__ = ["report_stats", "stats"]


@local_node()
def stats(
    node: Node,
    prefix: Annotated[str | None, typer.Option(help="Only this prefix.")] = None,
    hours: Annotated[int, typer.Option(help="How many hours back, 0 for all.")] = 24,
    reported: Annotated[
        bool, typer.Option("--reported", help="Show what other nodes reported here instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Resolutions and registrations per prefix and hour, from all processes."""
    since = hours_since(hours, time.time())
    statistics = node.service.statistics
    rows: list[tuple[str, StatsRow]]
    try:
        if reported:
            key = None if prefix is None else handle_key(prefix)
            rows = [
                (r.source, r.stats)
                for r in statistics.reported(since)
                if key is None or r.stats.prefix == key
            ]
        else:
            rows = [("", row) for row in statistics.totals(prefix, since)]
    except IdnodeError as exc:
        fail(exc.message)
    if as_json:
        for source, row in rows:
            shown = dataclasses.asdict(row) | ({"source": source} if reported else {})
            out.print_json(data=shown, indent=None)
        return
    table = Table(title=f"last {hours} hours" if hours > 0 else "all time", title_justify="left")
    columns = ["prefix", "hour (UTC)", "resolutions", "not found", "registrations"]
    for column in ["source", *columns] if reported else columns:
        table.add_column(column, justify="left" if column[0] in "phs" else "right")
    for source, row in rows:
        table.add_row(
            *([source] if reported else []),
            row.prefix,
            time.strftime("%Y-%m-%d %H:00", time.gmtime(row.hour)),
            f"{row.resolutions:,}",
            f"{row.not_found:,}",
            f"{row.registrations:,}",
        )
    out.print(table)


def report_stats(
    data_dir: DataDir = Path(".idnode"),
    parent: Annotated[
        str | None, typer.Option(help="The parent node's HTTP URL (default: parent_url).")
    ] = None,
    hours: Annotated[int, typer.Option(help="How many hours back, 0 for all.")] = REPORT_HOURS,
) -> None:
    """Send this node's statistics, and its children's, to the parent node now."""
    config = config_of(data_dir)
    try:
        if parent:
            config = config.replace(parent_url=parent)
        node = open_node(config)
        try:
            rows = report_rows(node, hours)
        finally:
            node.close()
        stored = send_report(config, rows)
    except IdnodeError as exc:
        fail(exc.message)
    out.print(f"reported {stored} rows ({len(rows)} sent) to {config.parent_url}")
