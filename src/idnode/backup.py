"""Backups of a node: its database, keys and configuration in one archive, and the
restore that checks it before anything is used.

A backup is taken while the node serves. The database copy is consistent by
construction: SQLite's online backup reads one snapshot of every table (records,
audit log, statistics, accounts, templates) while writers go on; PostgreSQL's
``pg_dump`` does the same in one transaction. The archive (a gzipped tar) holds
``manifest.json`` (format, when, the idnode version, the database kind, the SHA-256
of every other member, and the fingerprint of the copied data: records, homed
prefixes and a checksum over every record and account, as ``idnode migrate``
verifies), ``idnode.toml``, the key files, and ``idnode.db`` or ``idnode.pgdump``. It is
written beside its final name, flushed to disk, then renamed, so a crash leaves no
half archive under that name; ``<archive>.sha256`` (``sha256sum -c`` reads it) lets
it be checked after copying elsewhere.

Restore goes into a directory that is empty or new: the archive's checksum (when its
``.sha256`` is beside it), each member's checksum, the names (nothing outside the
directory), then the database, then the fingerprint of the restored data against the
manifest. A PostgreSQL backup is restored into an empty database named by
``database`` (``pg_restore``), or, without one, refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from idnode import __version__
from idnode.config import CONFIG_FILE, Config, dump_toml
from idnode.errors import ConfigError, StorageError
from idnode.storage import open_storage, sqlite_path
from idnode.storage.sqlite import copy_sqlite
from idnode.storage.transfer import Fingerprint, fingerprint

__all__ = ["FORMAT", "BackupResult", "back_up", "restore"]

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_COPY = "idnode.db"
POSTGRES_DUMP = "idnode.pgdump"
#: What of a data directory a backup keeps besides the database (serve.lock, logs and
#: scratch files are not the node's state).
KEPT_FILES = (CONFIG_FILE, "server_key.pem", "admin_key.pem", "admin_pub.pem")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    sha256: str  #: of the archive file
    #: Of the data copied; None for a PostgreSQL backup taken while writes went on
    #: (the dump is consistent, but no fingerprint of that very snapshot was taken).
    fingerprint: Fingerprint | None
    database: str  #: "sqlite" or "postgresql"


def back_up(config: Config, archive: Path) -> BackupResult:
    """Write a backup of the node ``config`` describes to ``archive`` (never over an
    existing file)."""
    archive = archive.absolute()
    if archive.exists():
        raise ConfigError(f"{archive} exists; a backup never overwrites a file")
    url = config.database_url
    kind = "postgresql" if url.startswith(("postgresql:", "postgres:")) else "sqlite"
    with tempfile.TemporaryDirectory(prefix="idnode-backup-", dir=archive.parent) as tmp:
        scratch = Path(tmp)
        members: dict[str, Path] = {}
        copied: Fingerprint | None
        for name in KEPT_FILES:
            if (config.data_dir / name).is_file():
                # Copied (a link's target, not the link), so what is hashed is what
                # is archived, whatever happens to the original meanwhile.
                members[name] = scratch / name
                shutil.copyfile(config.data_dir / name, members[name])
        if kind == "sqlite":
            copy = scratch / SQLITE_COPY
            # Read-only, never migrated: a newer idnode backing up an older node's
            # database must not change it under the server that runs it.
            copy_sqlite(sqlite_path(url), copy)
            copied = _fingerprint_of(f"sqlite:///{copy.resolve()}")
            members[SQLITE_COPY] = copy
        else:
            dump = scratch / POSTGRES_DUMP
            before = _fingerprint_of(url)
            _run(["pg_dump", "--format=custom", "--no-owner", f"--file={dump}"], url)
            # pg_dump reads one snapshot, the fingerprint another: the same data only
            # if nothing was written meanwhile. Else the backup says it has none.
            copied = before if _fingerprint_of(url) == before else None
            members[POSTGRES_DUMP] = dump
        manifest = {
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "idnode": __version__,
            "database": kind,
            "fingerprint": None if copied is None else asdict(copied),
            "files": {name: _sha256_of(path) for name, path in sorted(members.items())},
        }
        # Written in the scratch directory (it holds private keys: mode 0600), then
        # linked under its name, which fails if that name was taken meanwhile; a
        # failure leaves nothing behind.
        written = scratch / "archive"
        with os.fdopen(os.open(written, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
                for name, path in sorted(members.items()):
                    tar.add(path, arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        digest = _sha256_of(written)
        try:
            os.link(written, archive)
        except FileExistsError as exc:
            raise ConfigError(f"{archive} exists; a backup never overwrites a file") from exc
    _write_synced(archive.with_name(archive.name + ".sha256"), f"{digest}  {archive.name}\n")
    _fsync_dir(archive.parent)
    return BackupResult(archive, digest, copied, kind)


def restore(archive: Path, data_dir: Path, database: str | None = None) -> Fingerprint | None:
    """Restore ``archive`` into ``data_dir`` (new or empty) and verify it: each member
    against the manifest, then the restored data's fingerprint against the one the
    backup recorded (None is returned when it recorded none). ``database``: where a
    PostgreSQL backup goes (an empty database); an SQLite backup goes into the
    directory unless ``database`` names a PostgreSQL database to copy it into.

    Everything is restored into a directory beside ``data_dir`` and moved into place
    only once verified: a failed restore leaves nothing that looks like a node."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"{data_dir} is not empty; restore into a new or empty directory")
    _check_sidecar(archive)
    data_dir = data_dir.absolute()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restoring-", dir=data_dir.parent))
    try:
        manifest = _unpack(archive, staging)
        if manifest.database == "sqlite":
            url = _restore_sqlite(staging, database)
        else:
            url = _restore_postgresql(staging, database)
        _point_at(staging, url, into_postgresql=database is not None)
        restored = _fingerprint_of(url)
        _check_fingerprint(restored, manifest.fingerprint)
        for path in staging.iterdir():
            _fsync_file(path)
        if data_dir.exists():
            data_dir.rmdir()  # empty, checked above
        staging.rename(data_dir)
        _fsync_dir(data_dir.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return restored if manifest.fingerprint is not None else None


def _check_fingerprint(restored: Fingerprint, recorded: Fingerprint | None) -> None:
    if recorded is not None and restored != recorded:
        raise StorageError(
            f"the restored data does not match the backup: {restored.records} records,"
            f" sha256 {restored.sha256}, where the backup recorded {recorded.records},"
            f" sha256 {recorded.sha256}"
        )


@dataclass(frozen=True)
class _Manifest:
    database: str
    files: dict[str, str]
    fingerprint: Fingerprint | None


def _unpack(archive: Path, into: Path) -> _Manifest:
    """The archive's manifest, its members written into ``into`` and checked."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            manifest = _manifest(tar)
            for name, digest in manifest.files.items():
                _extract(tar, name, digest, into, archive)
    except (tarfile.TarError, EOFError, OSError, KeyError) as exc:
        raise ConfigError(f"{archive} cannot be read as an idnode backup: {exc}") from exc
    return manifest


def _extract(tar: tarfile.TarFile, name: str, digest: str, into: Path, archive: Path) -> None:
    """Write member ``name`` into ``into``, refusing what is no plain file of that
    directory or does not match ``digest``; keys are written readable by the owner
    only from the start."""
    member = tar.getmember(name)
    if not member.isfile() or "/" in name or name.startswith("."):
        raise ConfigError(f"{archive}: unexpected member {name!r}")
    source = tar.extractfile(member)
    assert source is not None
    mode = 0o644 if name in (CONFIG_FILE, "admin_pub.pem") else 0o600
    target = into / name
    with (
        source,
        os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out,
    ):
        shutil.copyfileobj(source, out)
    if _sha256_of(target) != digest:
        raise ConfigError(f"{archive}: {name} does not match its checksum")


def _restore_sqlite(data_dir: Path, database: str | None) -> str:
    url = f"sqlite:///{(data_dir / SQLITE_COPY).resolve()}"
    if not database:
        return url
    # Into PostgreSQL: copied and verified as `idnode migrate` copies (records, homed
    # prefixes, accounts); the SQLite copy stays beside, holding the audit log and
    # statistics, which that copy does not carry.
    from idnode.storage.transfer import copy_storage

    _require_empty_postgresql(database)
    source, target = open_storage(url), open_storage(database)
    try:
        copy_storage(source, target)
    finally:
        source.close()
        target.close()
    (data_dir / SQLITE_COPY).rename(data_dir / "restored-from-backup.db")
    return database


def _restore_postgresql(data_dir: Path, database: str | None) -> str:
    if not database:
        raise ConfigError(
            "this backup is of a PostgreSQL database: name an empty one to restore it"
            " into with --database"
        )
    _require_empty_postgresql(database)
    dump = data_dir / POSTGRES_DUMP
    _run(
        ["pg_restore", "--no-owner", "--no-acl", "--single-transaction", "--exit-on-error"],
        database,
        option="--dbname",
        then=(str(dump),),
    )
    dump.unlink()
    return database


def _require_empty_postgresql(url: str) -> None:
    """StorageError unless the database at ``url`` has no table in its schema (looked
    at without opening it as a node's, which would make idnode's tables)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            ).fetchone()
    except psycopg.Error as exc:
        raise StorageError(f"cannot open {url}: {exc}") from exc
    if row is None or row[0]:
        raise StorageError("the database is not empty; restore into an empty database")


def _point_at(data_dir: Path, url: str, *, into_postgresql: bool) -> None:
    """Make the restored idnode.toml name the restored database (for SQLite, its
    default place in the directory). Read replicas of the backed-up database are
    not the restored one's: they go."""
    path = data_dir / CONFIG_FILE
    settings = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    settings.pop("database_replicas", None)
    if into_postgresql:
        settings["database"] = url
    else:
        settings.pop("database", None)
    path.write_text(dump_toml(settings), encoding="utf-8")


def _manifest(tar: tarfile.TarFile) -> _Manifest:
    try:
        source = tar.extractfile(MANIFEST)
        assert source is not None
        manifest = json.loads(source.read())
        if manifest.get("format") != FORMAT:
            raise ConfigError(
                f"backup format {manifest.get('format')!r}; this idnode reads {FORMAT}"
            )
        recorded = manifest["fingerprint"]
        return _Manifest(
            str(manifest["database"]),
            {str(k): str(v) for k, v in manifest["files"].items()},
            None if recorded is None else Fingerprint(**recorded),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"not an idnode backup: no readable {MANIFEST}") from exc


def _check_sidecar(archive: Path) -> None:
    sidecar = archive.with_name(archive.name + ".sha256")
    if not sidecar.exists():
        return
    words = sidecar.read_text(encoding="utf-8", errors="replace").split()
    if not words or _sha256_of(archive) != words[0]:
        raise ConfigError(f"{archive} does not match {sidecar.name}: damaged or changed")


def _fingerprint_of(url: str) -> Fingerprint:
    storage = open_storage(url)
    try:
        return fingerprint(storage)
    finally:
        storage.close()


def _run(command: list[str], url: str, *, option: str = "", then: tuple[str, ...] = ()) -> None:
    """``command`` with the database ``url`` (as ``option=...`` if given, else as the
    last argument before ``then``), its password (if any) in PGPASSWORD: a command
    line is readable by every user of the machine."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if shutil.which(command[0]) is None:
        raise ConfigError(f"{command[0]} is needed for PostgreSQL backups; install it")
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    password = params.pop("password", None)
    dsn = make_conninfo("", **params)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    done = subprocess.run(  # noqa: S603 - pg_dump/pg_restore with our own arguments
        [*command, f"{option}={dsn}" if option else dsn, *then],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise StorageError(f"{command[0]} failed: {done.stderr.strip()[:500]}")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _fsync_file(path: Path) -> None:
    with path.open("rb") as stream:
        os.fsync(stream.fileno())


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
