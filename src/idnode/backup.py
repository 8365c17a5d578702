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
from idnode.storage import SQLiteStorage, open_storage
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
                members[name] = config.data_dir / name
        if kind == "sqlite":
            copy = scratch / SQLITE_COPY
            source = open_storage(url)
            try:
                if not isinstance(source, SQLiteStorage):  # pragma: no cover - by the URL
                    raise StorageError(f"{url} is not an SQLite database")
                source.copy_to(copy)
            finally:
                source.close()
            copied = _fingerprint_of(f"sqlite:///{copy.resolve()}")
            members[SQLITE_COPY] = copy
        else:
            dump = scratch / POSTGRES_DUMP
            before = _fingerprint_of(url)
            _run(["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", url])
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
        partial = archive.with_name(archive.name + ".partial")
        with partial.open("xb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
                for name, path in sorted(members.items()):
                    tar.add(path, arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        partial.replace(archive)
    digest = _sha256_of(archive)
    archive.with_name(archive.name + ".sha256").write_text(f"{digest}  {archive.name}\n")
    _fsync_dir(archive.parent)
    return BackupResult(archive, digest, copied, kind)


def restore(archive: Path, data_dir: Path, database: str | None = None) -> Fingerprint:
    """Restore ``archive`` into ``data_dir`` (new or empty) and verify it: the restored
    data's fingerprint must be the one the backup recorded. ``database``: where a
    PostgreSQL backup goes (an empty database); an SQLite backup goes into the
    directory unless ``database`` names a PostgreSQL database to copy it into."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"{data_dir} is not empty; restore into a new or empty directory")
    _check_sidecar(archive)
    with tarfile.open(archive, mode="r:gz") as tar:
        manifest = _manifest(tar)
        data_dir.mkdir(parents=True, exist_ok=True)
        for name, digest in manifest.files.items():
            _extract(tar, name, digest, data_dir, archive)
    if manifest.database == "sqlite":
        url = _restore_sqlite(data_dir, database)
    else:
        url = _restore_postgresql(data_dir, database)
    _point_at(data_dir, url, default_place=not database)
    restored = _fingerprint_of(url)
    if manifest.fingerprint is not None and restored != manifest.fingerprint:
        raise StorageError(
            f"the restored data does not match the backup: {restored} != {manifest.fingerprint}"
        )
    return restored


@dataclass(frozen=True)
class _Manifest:
    database: str
    files: dict[str, str]
    fingerprint: Fingerprint | None


def _extract(tar: tarfile.TarFile, name: str, digest: str, into: Path, archive: Path) -> None:
    """Write member ``name`` into ``into``, refusing what is no plain file of that
    directory or does not match ``digest``."""
    member = tar.getmember(name)
    if not member.isfile() or "/" in name or name.startswith("."):
        raise ConfigError(f"{archive}: unexpected member {name!r}")
    source = tar.extractfile(member)
    assert source is not None
    target = into / name
    with source, target.open("xb") as out:
        shutil.copyfileobj(source, out)
    if name.endswith(".pem"):
        target.chmod(0o600 if "key" in name else 0o644)
    if _sha256_of(target) != digest:
        raise ConfigError(f"{archive}: {name} does not match its checksum")


def _restore_sqlite(data_dir: Path, database: str | None) -> str:
    url = f"sqlite:///{(data_dir / SQLITE_COPY).resolve()}"
    if not database:
        return url
    # Into PostgreSQL: copied and verified as `idnode migrate` copies.
    from idnode.storage.transfer import copy_storage

    source, target = open_storage(url), open_storage(database)
    try:
        copy_storage(source, target)
    finally:
        source.close()
        target.close()
    (data_dir / SQLITE_COPY).unlink()
    return database


def _restore_postgresql(data_dir: Path, database: str | None) -> str:
    if not database:
        raise ConfigError(
            "this backup is of a PostgreSQL database: name an empty one to restore it"
            " into with --database"
        )
    target = open_storage(database)
    try:
        if target.count() or target.homed_prefixes():
            raise StorageError(f"{database} is not empty; restore into an empty database")
    finally:
        target.close()
    dump = data_dir / POSTGRES_DUMP
    # Opening it made idnode's (empty) tables: the dump's replace them.
    _run(["pg_restore", "--no-owner", "--clean", "--if-exists", f"--dbname={database}", str(dump)])
    dump.unlink()
    return database


def _point_at(data_dir: Path, url: str, *, default_place: bool) -> None:
    """Make the restored idnode.toml name the restored database (its own default
    place, for SQLite in the directory)."""
    path = data_dir / CONFIG_FILE
    settings = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if default_place:
        settings.pop("database", None)
    else:
        settings["database"] = url
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
    expected = sidecar.read_text().split()[0]
    if _sha256_of(archive) != expected:
        raise ConfigError(f"{archive} does not match {sidecar.name}: damaged or changed")


def _fingerprint_of(url: str) -> Fingerprint:
    storage = open_storage(url)
    try:
        return fingerprint(storage)
    finally:
        storage.close()


def _run(command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        raise ConfigError(f"{command[0]} is needed for PostgreSQL backups; install it")
    done = subprocess.run(  # noqa: S603 - pg_dump/pg_restore with our own arguments
        command, capture_output=True, text=True, check=False
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
