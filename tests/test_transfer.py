"""Moving a node between SQLite and PostgreSQL, verified; and serving from PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bench.processes import start_server
from idnode.cli import app
from idnode.client import HandleClient
from idnode.config import load_config
from idnode.demo import demo_events, demo_records
from idnode.domain import Account, HandleRecord
from idnode.epcis.documents import capture_document
from idnode.epcis.queries import parse_query
from idnode.errors import StorageError
from idnode.handle.codes import ResponseCode
from idnode.handle.messages import ResolutionResponse
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, SiteInfo
from idnode.node import open_node
from idnode.service import Caller, NodeService
from idnode.storage import SQLiteStorage, open_storage
from idnode.storage.transfer import copy_storage, fingerprint
from tests.conftest import running

runner = CliRunner()


def _grant_prefix(service: NodeService, owner: Caller) -> None:
    grant = AdminValue(AdminPermission.ALL, owner.identity).to_bytes()  # type: ignore[arg-type]
    service.prefixes.put_record(
        HandleRecord("0.NA/88.100.1", (HandleValue(100, "HS_ADMIN", grant),))
    )


def test_round_trip_sqlite_postgres_sqlite(tmp_path: Path, postgres_url: str) -> None:
    source = SQLiteStorage(tmp_path / "a.db")
    source.home_prefix("88.100.1")
    source.put_many(demo_records(200), replace=True)
    ops = Account("ops", ValueReference("0.NA/88.100.1", 300), "scrypt$14$8$1$c2FsdA==$aGFzaA==", 7)
    source.put_account(ops)
    # EPCIS events, a named query and a subscription part-way through them go along.
    owner = Caller(ValueReference("0.NA/88.100.1", 300))
    service = NodeService(source, SiteInfo(servers=()))
    _grant_prefix(service, owner)
    events = list(demo_events(list(demo_records(200))))
    service.trace.capture(owner, capture_document(events[:300]))
    service.trace_subscriptions.define(owner, "packed", {"EQ_bizStep": "packing"})
    sub = service.trace_subscriptions.subscribe(
        owner, "packed", {"dest": "https://erp.example/cb", "secret": "s", "stream": True,
                          "initialRecordTime": "2020-01-01T00:00:00Z"})  # fmt: skip
    source.events.delivered(sub.subscription_id, 120, 3, 0, "")
    pg = open_storage(postgres_url)
    back = SQLiteStorage(tmp_path / "b.db")
    try:
        first = copy_storage(source, pg)
        second = copy_storage(pg, back)
        assert first == second == fingerprint(source)
        assert first.records == source.count()
        assert first.prefixes == 1
        assert back.get("88.100.1/pump-0007") == source.get("88.100.1/PUMP-0007")
        assert back.accounts() == [ops]  # password accounts go along, hashes and all
        assert first.events == 300
        copied = NodeService(back, SiteInfo(servers=()))
        assert copied.trace_subscriptions.subscription_by_id(sub.subscription_id).last_seq == 120
        query = parse_query([("perPage", "1000")], copied.trace.audience(owner))
        assert len(copied.trace.events(owner, query).events) == 300
        # New captures are numbered after the copied ones, on PostgreSQL too.
        on_pg = NodeService(pg, SiteInfo(servers=()))
        on_pg.trace.capture(owner, capture_document(events[300:301]))
        assert pg.events.last_seq() == 301
    finally:
        source.close()
        pg.close()
        back.close()


def test_fingerprint_sees_a_changed_value(tmp_path: Path) -> None:
    a, b = SQLiteStorage(tmp_path / "a.db"), SQLiteStorage(tmp_path / "b.db")
    for store in (a, b):
        store.put(HandleRecord("1/X", (HandleValue(1, "URL", b"same"),)))
    assert fingerprint(a) == fingerprint(b)
    b.put(HandleRecord("1/X", (HandleValue(1, "URL", b"other"),)))
    assert fingerprint(a) != fingerprint(b)
    a.put(HandleRecord("1/X", (HandleValue(1, "URL", b"other"),)))
    assert fingerprint(a) == fingerprint(b)
    b.put_account(Account("ops", ValueReference("0.NA/1", 300), "scrypt$1$1$1$AA==$AA=="))
    assert fingerprint(a) != fingerprint(b)
    a.close()
    b.close()


def test_copy_refuses_a_target_that_is_not_empty(tmp_path: Path) -> None:
    a, b = SQLiteStorage(tmp_path / "a.db"), SQLiteStorage(tmp_path / "b.db")
    b.put(HandleRecord("1/X", (HandleValue(1, "URL", b"u"),)))
    with pytest.raises(StorageError, match="not empty"):
        copy_storage(a, b)
    a.close()
    b.close()


def test_cli_migrate_switches_and_node_serves_from_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    node_dir = tmp_path / "node"
    assert runner.invoke(app, ["init", "-d", str(node_dir)]).exit_code == 0
    assert runner.invoke(app, ["demo", "-d", str(node_dir), "--serials", "20"]).exit_code == 0
    result = runner.invoke(app, ["migrate", "-d", str(node_dir), "--to", postgres_url, "--switch"])
    assert result.exit_code == 0, result.output
    assert "checksums match" in result.output
    config = load_config(node_dir, {"handle_port": 0, "http_port": 0}, environ={})
    assert config.database == postgres_url

    with running(config) as served:
        reply = HandleClient("127.0.0.1", served.ports.handle).resolve("88.100.1/PUMP-0020")
        assert reply.response_code == ResponseCode.SUCCESS
        assert isinstance(reply.body, ResolutionResponse)

    # ... and back to SQLite, into a new file.
    back = tmp_path / "back.db"
    result = runner.invoke(app, ["migrate", "-d", str(node_dir), "--to", f"sqlite:///{back}"])
    assert result.exit_code == 0, result.output
    node = open_node(load_config(node_dir, environ={}))
    assert SQLiteStorage(back).count() == node.service.reads.count()
    node.close()


def test_cli_migrate_into_non_empty_target_fails(tmp_path: Path) -> None:
    node_dir = tmp_path / "node"
    runner.invoke(app, ["init", "-d", str(node_dir)])
    other = tmp_path / "other.db"
    SQLiteStorage(other).put(HandleRecord("1/X", (HandleValue(1, "URL", b"u"),)))
    result = runner.invoke(app, ["migrate", "-d", str(node_dir), "--to", f"sqlite:///{other}"])
    assert result.exit_code == 1
    assert "not empty" in result.output


def test_init_on_postgres_records_the_database(tmp_path: Path, postgres_url: str) -> None:
    node_dir = tmp_path / "pgnode"
    result = runner.invoke(app, ["init", "-d", str(node_dir), "--database", postgres_url])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["demo", "-d", str(node_dir), "--serials", "3"]).exit_code == 0
    config = load_config(node_dir, environ={})
    assert config.database == postgres_url
    node = open_node(config)
    try:
        assert node.service.reads.resolve("88.100.1/PUMP-0003").handle == "88.100.1/PUMP-0003"
    finally:
        node.close()
    assert not (node_dir / "idnode.db").exists()  # nothing went to SQLite

    # Two worker processes serve the one database; a change made elsewhere (here by
    # this test's own connection) reaches both workers' caches.
    proc, _, http_port = start_server(node_dir, workers=2)
    try:
        url = f"http://127.0.0.1:{http_port}/api/handles/88.100.1/PUMP-0003?type=STATUS"
        for _ in range(10):
            assert httpx.get(url, timeout=5).json()["values"][0]["type"] == "STATUS"
        writer = open_storage(postgres_url)
        writer.put(HandleRecord("88.100.1/PUMP-0003", (HandleValue(13, "STATUS", b"scrapped"),)))
        writer.close()

        def all_fresh() -> bool:
            answers = {
                httpx.get(url, timeout=5).json()["values"][0]["data"]["value"] for _ in range(10)
            }
            return answers == {"scrapped"}

        assert _wait_for(all_fresh)
    finally:
        proc.terminate()
        proc.wait(20)


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
