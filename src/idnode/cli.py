"""The ``idnode`` command. Each command builds a Config and calls the library.

Exit codes: 0 success; 1 the operation failed (the message says why: handle not
found, server unreachable, rejected input, ...); 2 the command line was wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from idnode import __version__, bulk
from idnode.bulk import FORMATS, BulkOptions
from idnode.client import Credentials, HandleClient, Transport
from idnode.config import Config, load_config
from idnode.demo import DEMO_PREFIX, demo_records
from idnode.domain import HandleRecord
from idnode.errors import ConfigError, IdnodeError
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import (
    ErrorResponse,
    Message,
    ReferralResponse,
    ResolutionRequest,
    ResolutionResponse,
)
from idnode.handle.values import ValueReference
from idnode.jsonformat import record_to_json, value_to_json
from idnode.keys import hashed_secret, load_private_key
from idnode.names import handle_key
from idnode.node import Node, init_node, migrate_node, open_node
from idnode.reporting import REPORT_HOURS, report_rows, send_report
from idnode.resolver import Resolver
from idnode.sites import Share, addresses, parse_endpoints, sites_in
from idnode.stats import hours_since
from idnode.templates import parse_readers

app = typer.Typer(
    help="idnode: an industrial internet identifier node (Handle protocol, Handle.Net JSON API).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: messages are not broken at the terminal width, so they stay greppable.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", "-d", envvar="IDNODE_DATA_DIR", help="Node data directory."),
]
HashedSecret = Annotated[
    bool,
    typer.Option(
        "--hashed-secret",
        help="The secret is a passphrase; the identity's HS_SECKEY holds its SHA-1"
        " (Handle.Net's hashed secret keys, as 'idnode keygen --secret' makes them).",
    ),
]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _config(data_dir: Path, **overrides: Any) -> Config:
    try:
        return load_config(data_dir, overrides)
    except IdnodeError as exc:
        _fail(exc.message)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"idnode {__version__}")
        raise typer.Exit


@app.command()
def init(
    data_dir: DataDir = Path(".idnode"),
    prefix: Annotated[
        str,
        typer.Option(help="Prefix this node serves, e.g. 88.100.1 (root: 0.NA; recursive: none)."),
    ] = DEMO_PREFIX,
    role: Annotated[
        str, typer.Option(help="root, top-level, secondary, enterprise or recursive.")
    ] = "enterprise",
    root_servers: Annotated[
        str,
        typer.Option(help="Root servers the resolver starts from, address:port[,...]."),
    ] = "",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    handle_port: Annotated[int, typer.Option(help="Handle protocol port (UDP+TCP).")] = 2641,
    http_port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    public_address: Annotated[str, typer.Option(help="Address published in HS_SITE.")] = "",
    database: Annotated[
        str, typer.Option(help="Database URL (default: SQLite in the data directory).")
    ] = "",
) -> None:
    """Create a node: database, homed prefix, server key and an admin key pair."""
    settings: dict[str, object] = {
        "database": database or None,
        "host": host,
        "handle_port": handle_port,
        "http_port": http_port,
        "public_address": public_address or None,
        "role": role,
        "root_servers": root_servers or None,
    }
    config = _config(data_dir, **settings)
    try:
        node = init_node(config, prefix, settings)
    except IdnodeError as exc:
        _fail(exc.message)
    node.close()
    if not node.config.admin_handle:
        out.print(f"initialised {data_dir}: {role} node resolving from {root_servers}")
        return
    homed = node.config.admin_handle.partition("/")[2]
    out.print(f"initialised {data_dir}: {role} node serving prefix [bold]{homed}[/]")
    out.print(
        f"admin identity: {node.config.admin_index}:{node.config.admin_handle}"
        f" (private key {data_dir / 'admin_key.pem'})"
    )


@app.command()
def serve(
    data_dir: DataDir = Path(".idnode"),
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    handle_port: Annotated[int | None, typer.Option(help="Handle protocol port.")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (SO_REUSEPORT).")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    database: Annotated[
        str | None, typer.Option(help="Database URL, overriding the config.")
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option(help="PEM certificate: serve HTTPS instead of HTTP.")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_client_ca: Annotated[
        str | None,
        typer.Option(help="PEM CAs whose client certificates are accepted as identities."),
    ] = None,
) -> None:
    """Serve the node over Handle UDP/TCP and HTTP until interrupted."""
    from idnode.server.runner import serve_forever

    config = _config(
        data_dir,
        database=database,
        host=host,
        handle_port=handle_port,
        http_port=http_port,
        workers=workers,
        log_level=log_level,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
    )
    try:
        serve_forever(config, announce=lambda line: out.print(line, highlight=False))
    except IdnodeError as exc:
        _fail(exc.message)
    except KeyboardInterrupt:
        pass


def _parse_server(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep:
        return server, 2641
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        _fail(f"--server must be host or host:port, got {server!r}", 2)


@app.command()
def resolve(
    handle: Annotated[str, typer.Argument(help="Handle to resolve, e.g. 88.100.1/PUMP-0001.")],
    server: Annotated[
        str | None,
        typer.Option(
            help="Ask this Handle server only, host[:port]; default: resolve from --root."
        ),
    ] = None,
    root: Annotated[
        str,
        typer.Option(
            envvar="IDNODE_ROOT_SERVERS",
            help="Root servers global resolution starts from, address[:port][,...].",
        ),
    ] = "127.0.0.1:2641",
    index: Annotated[list[int] | None, typer.Option(help="Only values with this index.")] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="Only values of this type ('X.' = subtypes).")
    ] = None,
    transport: Annotated[
        str, typer.Option(help="auto (UDP, TCP if truncated), udp or tcp.")
    ] = "auto",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 3.0,
    auth: Annotated[
        str | None,
        typer.Option(
            help="Read as this identity, INDEX:HANDLE (needs --server): non-public values too."
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="PEM private key of the --auth identity's HS_PUBKEY.")
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="File holding the --auth identity's secret key (else $IDNODE_SECRET)."),
    ] = None,
    hashed_secret: HashedSecret = False,
    certify: Annotated[
        bool,
        typer.Option(
            help="Ask --server to sign its answer and check the signature with the key its"
            " site information names."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print Handle.Net-style JSON.")] = False,
) -> None:
    """Resolve a handle over the Handle protocol (works against any Handle server).

    Without --server the handle is resolved globally: its prefix handle from the root
    servers, then the handle from the prefix's site, following referrals. With --auth
    the server is asked for every value the identity may read, over TCP, answering its
    challenge with the identity's key.
    """
    secret = (secret_file, hashed_secret)
    chosen, credentials = _resolve_options(transport, server, auth, key, secret, certify)
    indexes, types = tuple(index or ()), tuple(type_ or ())
    try:
        if credentials is not None:
            assert server is not None
            record = _resolve_as(server, handle, indexes, types, credentials, timeout)
        elif server is None:
            resolver = Resolver.from_endpoints(parse_endpoints(root), timeout=timeout)
            record = resolver.resolve(handle, indexes, types)
        else:
            record = _resolve_at(server, handle, indexes, types, chosen, timeout, certify)
    except IdnodeError as exc:
        code = exc.response_code
        if as_json:
            out.print_json(
                data={"responseCode": int(code), "handle": handle, "message": exc.message}
            )
        if code == ResponseCode.ERROR:
            _fail(exc.message)
        _fail(f"{code.name.lower().replace('_', ' ')} ({int(code)}): {exc.message}".rstrip(": "))
    if as_json:
        out.print_json(data={"responseCode": 1} | record_to_json(record))
        return
    table = Table(title=record.handle, title_justify="left")
    for column in ("index", "type", "data", "ttl", "permissions"):
        # Data is folded, never cut with an ellipsis: a truncated URL is useless.
        table.add_column(column, overflow="fold")
    for value in record.values:
        shown = value_to_json(value)["data"]["value"]
        table.add_row(
            str(value.index),
            value.type,
            shown if isinstance(shown, str) else json.dumps(shown),
            str(value.ttl),
            value.permissions.bit_string(),
        )
    out.print(table)


class _Answered(IdnodeError):
    """A server's answer other than success, carrying the server's response code."""

    def __init__(self, code: ResponseCode, message: str) -> None:
        super().__init__(message)
        self.response_code = code  # type: ignore[misc]


def _resolve_options(
    transport: str,
    server: str | None,
    auth: str | None,
    key: Path | None,
    secret: tuple[Path | None, bool],
    certify: bool,
) -> tuple[Transport, Credentials | None]:
    """The transport and credentials ``idnode resolve`` was given, or exit code 2."""
    if transport not in ("auto", "udp", "tcp"):
        _fail("--transport must be auto, udp or tcp", 2)
    credentials = None
    if auth is not None:
        if server is None:
            _fail("--auth needs --server: an identity proves itself to one server", 2)
        credentials = credentials_from(auth, key, *secret)
    if certify and (server is None or credentials is not None):
        _fail("--certify needs --server (and no --auth)", 2)
    return transport, credentials  # type: ignore[return-value]


def _resolve_at(
    server: str,
    handle: str,
    indexes: tuple[int, ...],
    types: tuple[str, ...],
    transport: Transport,
    timeout: float,
    certify: bool = False,
) -> HandleRecord:
    host, port = _parse_server(server)
    client = HandleClient(host, port, timeout=timeout)
    key = client.server_key() if certify else None
    reply = client.resolve(handle, indexes, types, transport, certified_by=key)
    if reply.truncated:
        _fail("the answer did not fit in a UDP packet (truncated); use --transport tcp or auto")
    return _record_of(reply)


def _resolve_as(
    server: str,
    handle: str,
    indexes: tuple[int, ...],
    types: tuple[str, ...],
    credentials: Credentials,
    timeout: float,
) -> HandleRecord:
    """Resolution without PUBLIC_ONLY, answering the server's challenge as ``credentials``."""
    host, port = _parse_server(server)
    client = HandleClient(host, port, timeout=timeout)
    request = ResolutionRequest(handle, indexes, types)
    return _record_of(client.authenticated(OpCode.RESOLUTION, request, credentials)[0])


def _record_of(reply: Message) -> HandleRecord:
    if reply.response_code != ResponseCode.SUCCESS or not isinstance(
        reply.body, ResolutionResponse
    ):
        body = reply.body
        text = body.message if isinstance(body, ErrorResponse) else ""
        if isinstance(body, ReferralResponse):
            where = ", ".join(a for site in sites_in(body.values) for a in addresses(site))
            text = f"ask the site of {body.handle} ({where or 'no address given'})"
        raise _Answered(reply.response_code, text)
    return HandleRecord(reply.body.handle, reply.body.values)


def credentials_from(
    auth: str, key: Path | None, secret_file: Path | None, hashed: bool = False
) -> Credentials:
    """The identity ``--auth INDEX:HANDLE`` and what proves it: ``--key`` (a private
    key), ``--secret-file``, or the IDNODE_SECRET variable (never the command line,
    where other users could read it). With ``hashed`` the secret is a passphrase whose
    hash the identity's HS_SECKEY value holds (see :func:`idnode.keys.hashed_secret`)."""
    index, sep, handle = auth.partition(":")
    if not sep or not index.isdigit() or not handle:
        _fail(f"--auth must be INDEX:HANDLE, got {auth!r}", 2)
    identity = ValueReference(handle, int(index))
    if key is not None:
        try:
            return Credentials(identity, private_key=load_private_key(key))
        except IdnodeError as exc:
            _fail(exc.message, 2)
    if secret_file is not None:
        try:
            secret = secret_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            _fail(f"cannot read {secret_file}: {exc.strerror}", 2)
    else:
        env = os.environ.get("IDNODE_SECRET")
        if not env:
            _fail("give --key, --secret-file or IDNODE_SECRET to prove the --auth identity", 2)
        secret = env.encode()
    return Credentials(identity, secret=hashed_secret(secret) if hashed else secret)


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="CSV or JSONL file ('-' for stdin).")],
    data_dir: DataDir = Path(".idnode"),
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
        _fail(f"--format must be csv or jsonl, not {fmt!r}", 2)
    try:
        group = parse_readers(readers) if readers else None
        options = BulkOptions(prefix, template, mint, group)
    except IdnodeError as exc:
        _fail(exc.message, 2)
    with _readable(source) as path:
        node = _open(data_dir)
        try:
            with _progress() as bars:

                def progress(stage: str) -> Callable[[int], None]:
                    task = bars.add_task(stage, total=None)
                    return lambda n: bars.advance(task, n)

                report = bulk.register(
                    node.service,
                    lambda: path.open(encoding="utf-8", newline=""),
                    "csv" if fmt == "csv" else "jsonl",
                    options,
                    replace=replace,
                    skip_invalid=skip_invalid,
                    parallel=bulk.worth_parallel(path.stat().st_size),
                    progress=progress,
                )
        except (IdnodeError, OSError, UnicodeDecodeError) as exc:
            _fail(getattr(exc, "message", str(exc)))
        finally:
            node.close()
    result = report.result
    for rejection in report.rejected[:50]:
        err.print(f"  {rejection}", highlight=False)
    if report.rejected_count > 50:
        err.print(f"  ... and {report.rejected_count - 50} more", highlight=False)
    if not report.written:
        _fail(
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
            _fail(f"{source}: no such file")
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="idnode-import-") as tmp:
        path = Path(tmp) / "stdin"
        with path.open("w", encoding="utf-8", newline="") as spool:
            shutil.copyfileobj(sys.stdin, spool)
        yield path


@app.command()
def export(
    data_dir: DataDir = Path(".idnode"),
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
        _fail(exc.message, 2)
    node = _open(data_dir)
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
        _fail(str(exc))
    finally:
        node.close()


@app.command()
def demo(
    data_dir: DataDir = Path(".idnode"),
    serials: Annotated[int, typer.Option(help="Number of serial-numbered pumps.")] = 2000,
    if_empty: Annotated[bool, typer.Option(help="Do nothing if the prefix has records.")] = False,
) -> None:
    """Load the demo: a pump manufacturer under 88.100.1 (models, pumps, parts, ...)."""
    node = _open(data_dir)
    try:
        if if_empty and node.service.reads.count(DEMO_PREFIX) > 0:
            return
        node.service.prefixes.home_prefix(DEMO_PREFIX)
        with _progress() as progress:
            records = _advancing(progress, "loading demo", demo_records(serials))
            written = node.service.bulk.register_many(records, replace=True).created
    except IdnodeError as exc:
        _fail(exc.message)
    finally:
        node.close()
    out.print(
        f"demo loaded: {written} identifiers under {DEMO_PREFIX}, e.g. {DEMO_PREFIX}/PUMP-0001"
    )


@app.command()
def stats(
    data_dir: DataDir = Path(".idnode"),
    prefix: Annotated[str | None, typer.Option(help="Only this prefix.")] = None,
    hours: Annotated[int, typer.Option(help="How many hours back, 0 for all.")] = 24,
    reported: Annotated[
        bool, typer.Option("--reported", help="Show what other nodes reported here instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Resolutions and registrations per prefix and hour, from all processes."""
    node = _open(data_dir)
    since = hours_since(hours, time.time())
    try:
        if reported:
            key = None if prefix is None else handle_key(prefix)
            rows = [
                (r.source, r.stats)
                for r in node.service.statistics.reported(since)
                if key is None or r.stats.prefix == key
            ]
        else:
            rows = [("", row) for row in node.service.statistics.totals(prefix, since)]
    except IdnodeError as exc:
        _fail(exc.message)
    finally:
        node.close()
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


@app.command("report-stats")
def report_stats(
    data_dir: DataDir = Path(".idnode"),
    parent: Annotated[
        str | None, typer.Option(help="The parent node's HTTP URL (default: parent_url).")
    ] = None,
    hours: Annotated[int, typer.Option(help="How many hours back, 0 for all.")] = REPORT_HOURS,
) -> None:
    """Send this node's statistics, and its children's, to the parent node now."""
    config = _config(data_dir)
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
        _fail(exc.message)
    out.print(f"reported {stored} rows ({len(rows)} sent) to {config.parent_url}")


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", help="Database URL to copy into (must be empty).")],
    data_dir: DataDir = Path(".idnode"),
    switch: Annotated[
        bool, typer.Option(help="Make the node use the new database afterwards.")
    ] = False,
) -> None:
    """Copy the node's database to another (SQLite <-> PostgreSQL), verified by checksum."""
    config = _config(data_dir)
    try:
        with _progress() as progress:
            task = progress.add_task("copying", total=None)
            result = migrate_node(
                config, to, switch=switch, progress=lambda n: progress.update(task, completed=n)
            )
    except IdnodeError as exc:
        _fail(exc.message)
    out.print(
        f"copied {result.records} records and {result.prefixes} homed prefixes; "
        f"checksums match (sha256 {result.sha256[:16]}...)"
    )
    if switch:
        out.print(f"{data_dir / 'idnode.toml'} now uses {to}; restart `idnode serve`")


def _open(data_dir: Path) -> Node:
    try:
        return open_node(_config(data_dir))
    except IdnodeError as exc:
        _fail(exc.message)


def _advancing(
    progress: Progress, description: str, records: Iterable[HandleRecord]
) -> Iterator[HandleRecord]:
    """``records``, counted on a progress line as they are consumed."""
    task = progress.add_task(description, total=None)
    for record in records:
        progress.advance(task)
        yield record


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )


def main() -> None:
    # The administration commands register themselves on ``app`` when imported.
    from idnode import cli_admin, cli_history, cli_prefix, cli_search, cli_template  # noqa: F401

    app()


if __name__ == "__main__":
    main()
