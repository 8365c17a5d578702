"""``idnode init``, ``serve`` and ``migrate``: making a node, running it, moving its data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from idnode.cli.common import DataDir, config_of, fail, out, progress_bars
from idnode.demo import DEMO_PREFIX
from idnode.errors import IdnodeError
from idnode.keys import KEY_TYPES
from idnode.node import init_node, migrate_node

__all__ = ["init", "migrate", "serve"]


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
    key_type: Annotated[
        str,
        typer.Option(help="Algorithm of the server and admin keys: rsa, or sm2 (national)."),
    ] = "rsa",
) -> None:
    """Create a node: database, homed prefix, server key and an admin key pair."""
    if key_type not in KEY_TYPES:
        fail(f"--key-type is one of {', '.join(KEY_TYPES)}, got {key_type!r}", 2)
    settings: dict[str, object] = {
        "database": database or None,
        "host": host,
        "handle_port": handle_port,
        "http_port": http_port,
        "public_address": public_address or None,
        "role": role,
        "root_servers": root_servers or None,
    }
    config = config_of(data_dir, **settings)
    try:
        node = init_node(config, prefix, settings, key_type)
    except IdnodeError as exc:
        fail(exc.message)
    node.close()
    if not node.config.admin_handle:
        out.print(f"initialised {data_dir}: {role} node resolving from {root_servers}")
        return
    homed = node.config.admin_handle.partition("/")[2]
    out.print(f"initialised {data_dir}: {role} node serving prefix {homed}")
    out.print(
        f"admin identity: {node.config.admin_index}:{node.config.admin_handle}"
        f" (private key {data_dir / 'admin_key.pem'})"
    )


def serve(
    data_dir: DataDir = Path(".idnode"),
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    handle_port: Annotated[int | None, typer.Option(help="Handle protocol port.")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (SO_REUSEPORT).")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text, or json: a JSON object per line.")
    ] = None,
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
    # Imported here: the servers (uvicorn, Starlette) are not loaded for other commands.
    from idnode.config import load_config
    from idnode.server.runner import serve_forever

    overrides = {
        "database": database,
        "host": host,
        "handle_port": handle_port,
        "http_port": http_port,
        "workers": workers,
        "log_level": log_level,
        "log_format": log_format,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_client_ca": tls_client_ca,
    }
    config = config_of(data_dir, **overrides)
    try:
        serve_forever(
            config,
            announce=lambda line: out.print(line, highlight=False),
            # SIGHUP: the file read again, under the same command-line settings.
            reload=lambda: load_config(data_dir, overrides),
        )
    except IdnodeError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        pass


def migrate(
    to: Annotated[str, typer.Option("--to", help="Database URL to copy into (must be empty).")],
    data_dir: DataDir = Path(".idnode"),
    switch: Annotated[
        bool, typer.Option(help="Make the node use the new database afterwards.")
    ] = False,
) -> None:
    """Copy the node's database to another (SQLite <-> PostgreSQL), verified by checksum."""
    config = config_of(data_dir)
    try:
        with progress_bars() as progress:
            task = progress.add_task("copying", total=None)
            result = migrate_node(
                config, to, switch=switch, progress=lambda n: progress.update(task, completed=n)
            )
    except IdnodeError as exc:
        fail(exc.message)
    out.print(
        f"copied {result.records} records and {result.prefixes} homed prefixes; "
        f"checksums match (sha256 {result.sha256[:16]}...)"
    )
    if switch:
        out.print(f"{data_dir / 'idnode.toml'} now uses {to}; restart `idnode serve`")


def backup(
    to: Annotated[
        Path, typer.Option("--to", help="The archive to write (.tar.gz; never over a file).")
    ],
    data_dir: DataDir = Path(".idnode"),
) -> None:
    """Back up the node while it serves: database, keys and configuration, checksummed."""
    from idnode.backup import back_up

    config = config_of(data_dir)
    try:
        result = back_up(config, to)
    except (IdnodeError, OSError) as exc:
        fail(getattr(exc, "message", str(exc)))
    out.print(f"wrote {result.path} (sha256 {result.sha256}; also in {result.path}.sha256)")
    if result.fingerprint is None:
        out.print(
            "writes went on during the PostgreSQL dump: the backup is consistent, but its"
            " contents have no fingerprint to check a restore against"
        )
    else:
        found = result.fingerprint
        out.print(
            f"{found.records} records, {found.prefixes} homed prefixes, sha256 {found.sha256}"
        )


def restore(
    source: Annotated[Path, typer.Option("--from", help="The archive `idnode backup` wrote.")],
    data_dir: DataDir = Path(".idnode"),
    database: Annotated[
        str | None,
        typer.Option(
            help="An empty PostgreSQL database to restore into (needed for a"
            " PostgreSQL backup); default: SQLite in the data directory."
        ),
    ] = None,
) -> None:
    """Restore a backup into a new or empty data directory, verified by checksum."""
    from idnode.backup import restore as restore_backup

    if not source.is_file():
        fail(f"{source}: no such file")
    try:
        found = restore_backup(source, data_dir, database)
    except (IdnodeError, OSError) as exc:
        fail(getattr(exc, "message", str(exc)))
    if found is None:
        out.print(
            f"restored into {data_dir}; every file matches its checksum (the backup"
            " recorded no fingerprint of its data to check it against)"
        )
        return
    out.print(
        f"restored {found.records} records and {found.prefixes} homed prefixes into"
        f" {data_dir}; checksums match (sha256 {found.sha256[:16]}...)"
    )
