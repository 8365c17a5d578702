"""``idnode import``, ``export`` and ``demo``: records in bulk on the local node."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from idnode import bulk
from idnode.bulk import FORMATS, BulkOptions
from idnode.cli.common import advancing, err, fail, local_node, out, progress_bars
from idnode.demo import DEMO_PREFIX, demo_events, demo_records
from idnode.domain import HandleRecord
from idnode.epcis.documents import capture_document
from idnode.errors import ConfigError, IdnodeError, NotResponsible
from idnode.handle.values import ValueReference
from idnode.jsonformat import record_to_json
from idnode.node import Node
from idnode.service import Caller
from idnode.sites import Share
from idnode.templates import parse_readers

__all__ = ["demo", "export", "import_"]


@local_node()
def import_(
    source: Annotated[Path, typer.Argument(help="CSV or JSONL file ('-' for stdin).")],
    node: Node,
    replace: Annotated[
        bool, typer.Option(help="Overwrite handles stored with other values.")
    ] = False,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: by the file's ending).")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Template of rows that name none (NAME or NAME@VERSION).")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Prefix of rows giving a suffix or none.")
    ] = None,
    mint: Annotated[
        str | None,
        typer.Option(help="Suffix pattern for rows without one, e.g. PUMP-{serial:06d}."),
    ] = None,
    readers: Annotated[
        str | None, typer.Option(help="Reader group of template records, INDEX:HANDLE.")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Write the valid rows even if some are rejected.")
    ] = False,
) -> None:
    """Register records in bulk from CSV or JSONL: checked first, then written."""
    fmt = file_format or ("csv" if source.suffix.lower() == ".csv" else "jsonl")
    if fmt not in FORMATS:
        fail(f"--format must be csv or jsonl, not {fmt!r}", 2)
    try:
        group = parse_readers(readers) if readers else None
        options = BulkOptions(prefix, template, mint, group)
        if template is not None:
            node.service.templates.template(template)  # said once, not once per row
    except IdnodeError as exc:
        fail(exc.message, 2)
    with _readable(source) as path:
        try:
            with progress_bars() as bars:

                def progress(stage: str) -> Callable[[int], None]:
                    task = bars.add_task(stage, total=None)
                    return lambda n: bars.advance(task, n)

                report = bulk.register(
                    node.service,
                    # Bytes that are not UTF-8 are kept, to be refused with their line.
                    lambda: path.open(encoding="utf-8", errors="surrogateescape", newline=""),
                    "csv" if fmt == "csv" else "jsonl",
                    options,
                    replace=replace,
                    skip_invalid=skip_invalid,
                    parallel=bulk.worth_parallel(path.stat().st_size),
                    progress=progress,
                )
        except NotResponsible as exc:
            home = f"idnode prefix register {exc.prefix or 'PREFIX'} -d {node.config.data_dir}"
            fail(f"{exc.message}: nothing imported. Home the prefix first: {home}")
        except (IdnodeError, OSError, UnicodeDecodeError) as exc:
            fail(getattr(exc, "message", str(exc)))
    result = report.result
    for rejection in report.rejected[:50]:
        err.print(f"  {rejection}", highlight=False)
    if report.rejected_count > 50:
        err.print(f"  ... and {report.rejected_count - 50} more", highlight=False)
    if not report.written:
        fail(
            f"nothing written: {report.rejected_count} of {result.total + report.rejected_count}"
            " rows rejected (--skip-invalid writes the others)"
        )
    elsewhere = f", {result.elsewhere} left to the site's other servers" if result.elsewhere else ""
    out.print(
        f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged, "
        f"{result.skipped} skipped (existing; --replace overwrites), "
        f"{report.rejected_count} rejected{elsewhere}"
    )
    if report.rejected_count:
        raise typer.Exit(1)


@contextmanager
def _readable(source: Path) -> Iterator[Path]:
    """A path that can be read twice: the file, or standard input saved to one."""
    if str(source) != "-":
        if not source.is_file():
            fail(f"{source}: no such file")
        yield source
        return
    from idnode.scratch import ScratchDirectory

    # A killed import leaves it behind; the next import removes it.
    with ScratchDirectory("idnode-import-") as scratch:
        path = scratch.path / "stdin"
        with path.open("w", encoding="utf-8", newline="") as spool:
            shutil.copyfileobj(sys.stdin, spool)
        yield path


@local_node()
def export(
    node: Node,
    prefix: Annotated[str | None, typer.Option(help="Only handles under this prefix.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    share: Annotated[
        str | None,
        typer.Option(help="Only server N of M's share of a multi-server site: N/M."),
    ] = None,
    hash_by: Annotated[
        str, typer.Option("--hash", help="How that site divides handles: prefix, suffix, handle.")
    ] = "handle",
) -> None:
    """Write records as JSONL, in the format `idnode import` reads."""
    try:
        part = Share.parse(share, hash_by) if share else None
    except ConfigError as exc:
        fail(exc.message, 2)
    try:
        stream = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            for record in node.service.reads.export_records(prefix):
                if part is not None and not part.holds(record.handle):
                    continue
                stream.write(json.dumps(record_to_json(record), ensure_ascii=False) + "\n")
        finally:
            if output:
                stream.close()
    except OSError as exc:
        fail(str(exc))


@local_node()
def demo(
    node: Node,
    serials: Annotated[int, typer.Option(help="Number of serial-numbered pumps.")] = 2000,
    if_empty: Annotated[bool, typer.Option(help="Do nothing if the prefix has records.")] = False,
) -> None:
    """Load the demo: a pump manufacturer under 88.100.1 (models, pumps, parts, ...)."""
    service = node.service
    try:
        if if_empty and service.reads.count(DEMO_PREFIX) > 0:
            return
        service.prefixes.home_prefix(DEMO_PREFIX)
        made = list(demo_records(serials))
        with progress_bars() as progress:
            records = advancing(progress, "loading demo", made)
            written = service.bulk.register_many(records, replace=True).created
        captured = _capture_demo_events(node, made)
    except IdnodeError as exc:
        fail(exc.message)
    out.print(
        f"demo loaded: {written} identifiers under {DEMO_PREFIX}, e.g. {DEMO_PREFIX}/PUMP-0001;"
        f" {captured} EPCIS events (docs/traceability.md)"
    )


def _capture_demo_events(node: Node, records: list[HandleRecord]) -> int:
    """The demo's year of events, as the node's administrator: the bench tests are
    public, everything else the manufacturer's own."""
    config = node.config
    caller = Caller(ValueReference(config.admin_handle, config.admin_index), "cli")
    events = list(demo_events(records))
    public = [e for e in events if e.get("bizStep") == "inspecting"]
    private = [e for e in events if e.get("bizStep") != "inspecting"]
    captured = 0
    for chosen, access in ((public, "public"), (private, "owner")):
        for start in range(0, len(chosen), 5000):
            document = capture_document(chosen[start : start + 5000])
            job = node.service.trace.capture(caller, document, prefix=DEMO_PREFIX, access=access)
            captured += job.events
    return captured
