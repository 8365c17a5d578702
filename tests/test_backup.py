"""`idnode backup` and `idnode restore` (issue 25, item 2): a backup taken while the node
serves and writes go on restores to the very data it recorded, audit log included;
damaged archives and occupied directories are refused. Real processes, real SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.config import Config
from idnode.demo import demo_records
from idnode.domain import AuditQuery, HandleRecord
from idnode.handle.values import HandleValue, ValueReference
from idnode.node import open_node
from idnode.service import Caller
from idnode.storage import open_storage
from idnode.storage.transfer import fingerprint
from tests.conftest import POSTGRES_URL, _postgres_admin, idnode, make_node, require_service

ADMIN = ValueReference("0.NA/88.100.1", 300)


def _writing(data_dir: Path, stop: threading.Event, per_second: float = 100.0) -> threading.Thread:
    """A writer making ``per_second`` audited writes until ``stop`` is set."""

    def run() -> None:
        node = open_node(Config(data_dir=data_dir))
        try:
            n = 0
            while not stop.is_set():
                n += 1
                value = HandleValue(1, "URL", f"https://pumps.example.com/w/{n}".encode())
                node.service.writes.create_handle(
                    f"88.100.1/W-{n}", [value], Caller(ADMIN, "test"), overwrite=True
                )
                time.sleep(1 / per_second)
        finally:
            node.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    node = make_node(tmp_path / "node")
    node.service.bulk.register_many(demo_records(2000), replace=True)
    node.close()
    return tmp_path / "node"


def test_a_backup_under_writes_restores_to_what_it_recorded(node_dir: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    writer = _writing(node_dir, stop)
    try:
        time.sleep(0.5)  # writes are going on
        archive = tmp_path / "node.tar.gz"
        made = idnode("backup", "-d", str(node_dir), "--to", str(archive))
        assert made.returncode == 0, made.stderr
        time.sleep(0.3)  # and go on after it
    finally:
        stop.set()
        writer.join(timeout=30)
    assert "sha256" in made.stdout
    assert (tmp_path / "node.tar.gz.sha256").read_text().split()[1] == "node.tar.gz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"manifest.json", "idnode.toml", "idnode.db", "admin_key.pem", "server_key.pem"} <= names
    recorded = manifest["fingerprint"]
    assert archive.stat().st_mode & 0o777 == 0o600  # it holds the private keys
    assert not list(tmp_path.glob("*.partial"))
    assert not list(tmp_path.glob("idnode-backup-*"))

    restored_dir = tmp_path / "restored"
    done = idnode("restore", "--from", str(archive), "-d", str(restored_dir))
    assert done.returncode == 0, done.stderr
    assert "checksums match" in done.stdout
    restored = open_node(Config(data_dir=restored_dir))
    try:
        # The data the backup recorded, to the byte (the fingerprint covers every
        # record); the live node has moved on since.
        assert fingerprint(restored.storage).sha256 == recorded["sha256"]
        assert fingerprint(restored.storage).records == recorded["records"]
        assert restored.service.reads.resolve("88.100.1/PUMP-0007").handle == "88.100.1/PUMP-0007"
        # Everything, not only records: the audit log of the writes made before it,
        # from the same moment: each audited write's record is there, and no record
        # written without its audit entry (they are one transaction).
        audited = restored.service.writes.audit_log(AuditQuery(None, None, 0.0, 100_000))
        assert audited
        written = {e.handle for e in audited}
        assert all(h.startswith("88.100.1/W-") for h in written)
        stored = {h for h in restored.storage.list_handles("88.100.1") if "/W-" in h}
        assert stored == written
        assert (restored_dir / "admin_key.pem").stat().st_mode & 0o777 == 0o600
    finally:
        restored.close()
    live = open_storage(f"sqlite:///{node_dir / 'idnode.db'}")
    try:
        assert fingerprint(live).records > recorded["records"]  # it was a snapshot
    finally:
        live.close()


def test_damaged_archives_and_occupied_directories_are_refused(
    node_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "node.tar.gz"
    assert idnode("backup", "-d", str(node_dir), "--to", str(archive)).returncode == 0
    again = idnode("backup", "-d", str(node_dir), "--to", str(archive))
    assert again.returncode == 1
    assert "never overwrites" in again.stderr

    occupied = idnode("restore", "--from", str(archive), "-d", str(node_dir))
    assert occupied.returncode == 1
    assert "is not empty" in occupied.stderr

    damaged = tmp_path / "damaged.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    shutil.copy(tmp_path / "node.tar.gz.sha256", tmp_path / "damaged.tar.gz.sha256")
    refused = idnode("restore", "--from", str(damaged), "-d", str(tmp_path / "r1"))
    assert refused.returncode == 1
    assert "does not match damaged.tar.gz.sha256" in refused.stderr
    assert not (tmp_path / "r1").exists()

    # A member changed inside a well-formed archive (and no sidecar): its checksum.
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(forged, "w:gz") as target:
        for member in source.getmembers():
            content = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "idnode.toml":
                content += b"\nhost = '0.0.0.0'\n"
            member.size = len(content)
            import io

            target.addfile(member, io.BytesIO(content))
    forged_out = idnode("restore", "--from", str(forged), "-d", str(tmp_path / "r2"))
    assert forged_out.returncode == 1
    assert "idnode.toml does not match its checksum" in forged_out.stderr
    # Nothing is left that looks like a node, nor the half-restored directory.
    assert not (tmp_path / "r2").exists()
    assert not list(tmp_path.glob(".r2.restoring-*"))
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cut = idnode("restore", "--from", str(truncated), "-d", str(tmp_path / "r3"))
    assert cut.returncode == 1
    assert "cannot be read as an idnode backup" in cut.stderr


@pytest.fixture
def postgres_databases() -> Iterator[tuple[str, str, str]]:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        require_service("pg_dump", "the PostgreSQL client tools are not installed")
    stamp = str(time.time_ns())[-9:]
    names = (f"idnode_backup_a_{stamp}", f"idnode_backup_b_{stamp}", f"idnode_backup_c_{stamp}")
    for name in names:
        _postgres_admin(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}", f"{base}/{names[2]}"
    finally:
        for name in names:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.services
def test_a_postgresql_node_backs_up_with_pg_dump_and_restores_into_another_database(
    tmp_path: Path, postgres_databases: tuple[str, str, str]
) -> None:
    source_url, target_url, _ = postgres_databases
    node = make_node(tmp_path / "pg", database=source_url)
    node.service.bulk.register_many(demo_records(50), replace=True)
    node.service.prefixes.put_record(
        HandleRecord("88.100.1/PG-1", (HandleValue(1, "URL", b"https://e/pg"),))
    )
    node.close()
    archive = tmp_path / "pg.tar.gz"
    made = idnode("backup", "-d", str(tmp_path / "pg"), "--to", str(archive))
    assert made.returncode == 0, made.stderr
    without = idnode("restore", "--from", str(archive), "-d", str(tmp_path / "r0"))
    assert without.returncode == 1
    assert "--database" in without.stderr
    done = idnode(
        "restore", "--from", str(archive), "-d", str(tmp_path / "r"), "--database", target_url
    )
    assert done.returncode == 0, done.stderr
    source, target = open_storage(source_url), open_storage(target_url)
    try:
        assert fingerprint(target) == fingerprint(source)
    finally:
        source.close()
        target.close()
    assert target_url in (tmp_path / "r" / "idnode.toml").read_text()
    # Into a database that is not empty: refused, nothing left.
    again = idnode(
        "restore", "--from", str(archive), "-d", str(tmp_path / "r4"), "--database", target_url
    )
    assert again.returncode == 1
    assert "not empty" in again.stderr
    assert not (tmp_path / "r4").exists()


@pytest.mark.services
def test_an_sqlite_backup_restores_into_postgresql(
    node_dir: Path, tmp_path: Path, postgres_databases: tuple[str, str, str]
) -> None:
    _, _, url = postgres_databases
    archive = tmp_path / "node.tar.gz"
    assert idnode("backup", "-d", str(node_dir), "--to", str(archive)).returncode == 0
    done = idnode("restore", "--from", str(archive), "-d", str(tmp_path / "r"), "--database", url)
    assert done.returncode == 0, done.stderr
    source, target = open_storage(f"sqlite:///{node_dir / 'idnode.db'}"), open_storage(url)
    try:
        assert fingerprint(target) == fingerprint(source)
    finally:
        source.close()
        target.close()
    # The SQLite copy stays beside, with what a copy into PostgreSQL does not carry.
    assert (tmp_path / "r" / "restored-from-backup.db").is_file()
