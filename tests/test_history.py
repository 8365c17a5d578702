"""Record history: versions from the audit log, diffs, restoring, over the service,
the HTTP API and the CLI, against real SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from idnode.cli import app
from idnode.config import Config
from idnode.domain import AuditEntry, HandleRecord
from idnode.edits import restore_values
from idnode.errors import InsufficientPermissions, InvalidValue, ValuesNotFound
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, SiteInfo
from idnode.history import diff, versions
from idnode.service import Caller, NodeService
from idnode.storage import Storage
from tests.conftest import add_secret_admin, make_node, running

runner = CliRunner()
HANDLE = "88.100.1/PUMP-7"
OWNER = ValueReference("88.100.1/OWNER", 300)
READER = ValueReference("88.100.1/READER", 300)


def url(index: int, target: str, timestamp: int = 0) -> HandleValue:
    return HandleValue(index, "URL", target.encode(), timestamp=timestamp)


def test_versions_mark_what_the_audit_log_did_not_see() -> None:
    first = HandleRecord(HANDLE, (url(1, "a"),))
    second = HandleRecord(HANDLE, (url(1, "b"),))
    imported = HandleRecord(HANDLE, (url(1, "c"),))
    # The record existed (imported) before its first audited write, and was imported
    # over again after the last one.
    entries = [AuditEntry(1, 100.0, "300:x", "http 1.2.3.4", "modify-value", HANDLE, first, second)]
    found = versions(entries, imported)
    assert [(v.number, v.operation, v.record) for v in found] == [
        (1, "unrecorded", first),
        (2, "modify-value", second),
        (3, "unrecorded", imported),
    ]
    assert found[1].actor == "300:x"
    assert versions([], None) == []


def test_a_diff_ignores_new_timestamps() -> None:
    before = [url(1, "a", timestamp=5), url(2, "b"), url(3, "c")]
    after = [url(1, "a", timestamp=9), url(2, "B"), url(4, "d")]
    assert [(c.index, c.kind) for c in diff(before, after)] == [
        (2, "changed"),
        (3, "removed"),
        (4, "added"),
    ]
    assert [c.kind for c in diff(None, after)] == ["added"] * 3


def test_restoring_needs_the_permissions_of_each_change() -> None:
    current = [url(1, "a", timestamp=5), url(2, "b", timestamp=5)]
    target = [url(1, "a", timestamp=1), url(3, "c", timestamp=1)]
    values, needed = restore_values(current, target, now=99)
    assert needed == AdminPermission.ADD_VALUE | AdminPermission.REMOVE_VALUE
    # The unchanged value keeps its timestamp; the one added back is stamped now.
    assert [(v.index, v.timestamp) for v in values] == [(1, 5), (3, 99)]
    read_only = [HandleValue(2, "URL", b"b", permissions=Permission.PUBLIC_READ)]
    with pytest.raises(InsufficientPermissions):
        restore_values(read_only, target, now=99)


@pytest.fixture
def service(storage: Storage) -> NodeService:
    service = NodeService(storage, SiteInfo(servers=()))
    service.prefixes.home_prefix("88.100.1")
    grants = (
        HandleValue(100, "HS_ADMIN", AdminValue(AdminPermission.ALL, OWNER).to_bytes()),
        HandleValue(101, "HS_ADMIN", AdminValue(AdminPermission.READ_VALUE, READER).to_bytes()),
    )
    service.prefixes.put_record(HandleRecord("0.NA/88.100.1", grants))
    return service


def test_every_write_is_a_version_and_any_can_come_back(service: NodeService) -> None:
    owner = Caller(OWNER, "test")
    service.writes.create_handle(HANDLE, [url(1, "https://a/"), url(2, "https://b/")], owner)
    service.writes.modify_values(HANDLE, [url(1, "https://a2/")], owner)
    service.writes.remove_values(HANDLE, [2], owner)
    service.writes.delete_handle(HANDLE, owner)
    history = service.history.history(HANDLE, Caller(READER))
    assert [(v.number, v.operation, v.actor) for v in history] == [
        (1, "create", "300:88.100.1/OWNER"),
        (2, "modify-value", "300:88.100.1/OWNER"),
        (3, "remove-value", "300:88.100.1/OWNER"),
        (4, "delete", "300:88.100.1/OWNER"),
    ]
    assert history[3].record is None
    assert [c.kind for c in diff(history[0].values, history[2].values)] == ["changed", "removed"]

    # Back from the deletion to version 2: the handle is recreated as version 5.
    assert service.history.restore_version(HANDLE, 2, owner) == 5
    restored = service.reads.resolve(HANDLE)
    assert [(v.index, v.data) for v in restored.values] == [(1, b"https://a2/"), (2, b"https://b/")]
    assert service.history.version(HANDLE, 5).operation == "restore-version-2"
    # Back to version 1 from there: one value changes.
    service.history.restore_version(HANDLE, 1, owner)
    assert service.reads.resolve(HANDLE).values[0].data == b"https://a/"

    with pytest.raises(InvalidValue, match="is its deletion"):
        service.history.restore_version(HANDLE, 4, owner)
    with pytest.raises(ValuesNotFound, match="versions 1 to 6, not 9"):
        service.history.version(HANDLE, 9)


def test_history_is_for_administrators_and_restoring_for_writers(service: NodeService) -> None:
    owner = Caller(OWNER, "test")
    service.writes.create_handle(HANDLE, [url(1, "https://a/")], owner)
    service.writes.modify_values(HANDLE, [url(1, "https://b/")], owner)
    stranger = Caller(ValueReference("88.100.1/NOBODY", 300))
    with pytest.raises(InsufficientPermissions, match="read the history"):
        service.history.history(HANDLE, stranger)
    # The reader may read the history but not write: the record stays as it is.
    with pytest.raises(InsufficientPermissions):
        service.history.restore_version(HANDLE, 1, Caller(READER))
    assert service.reads.resolve(HANDLE).values[0].data == b"https://b/"
    assert len(service.history.history(HANDLE)) == 2


def test_history_shows_a_reader_what_a_read_shows(service: NodeService) -> None:
    """An identity with READ_VALUE alone reads public and partner values, not
    owner-only ones (no admin read bit), in the record and in every version of it."""
    owner = Caller(OWNER, "test")
    partner = Permission.ADMIN_READ | Permission.ADMIN_WRITE
    secret = HandleValue(3, "CUSTOMER", b"ACME", permissions=Permission.ADMIN_WRITE)
    service.writes.create_handle(
        HANDLE,
        [url(1, "https://a/"), HandleValue(2, "BATCH", b"B1", permissions=partner), secret],
        owner,
    )
    service.writes.modify_values(
        HANDLE, [HandleValue(3, "CUSTOMER", b"Globex", permissions=Permission.ADMIN_WRITE)], owner
    )
    reader = Caller(READER)
    read = service.reads.resolve(HANDLE, caller=reader, public_only=False)
    assert {v.type for v in read.values} == {"URL", "BATCH"}
    for version in service.history.history(HANDLE, reader):
        assert version.values is not None
        assert {v.type for v in version.values} == {"URL", "BATCH"}
    assert service.history.version(HANDLE, 2, reader).values is not None
    a, b = (service.history.version(HANDLE, n, reader).values for n in (1, 2))
    assert a is not None
    assert b is not None
    assert diff(a, b) == []  # the owner-only change is not shown
    # The owner (MODIFY_VALUE) sees it all, and the operator (no caller) too.
    seen = service.history.version(HANDLE, 1, owner).values
    assert seen is not None
    assert b"ACME" in {v.data for v in seen}
    assert len(service.history.history(HANDLE)[0].values or ()) == 3
    # Restoring version 1 brings the owner-only value back, not a reader's view of it.
    service.history.restore_version(HANDLE, 1, owner)
    record = service.reads.resolve(HANDLE, caller=owner, public_only=False)
    assert {v.data for v in record.values} == {b"https://a/", b"B1", b"ACME"}


SECRET = "history-s3cret"


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    node = make_node(tmp_path)
    add_secret_admin(node, OWNER, SECRET)
    node.close()
    return tmp_path


def test_history_over_http_and_the_cli(node_dir: Path) -> None:
    token = base64.b64encode(f"300%3A{OWNER.handle}:{SECRET}".encode()).decode()
    auth = {"Authorization": f"Basic {token}"}
    with running(Config(data_dir=node_dir, handle_port=0, http_port=0)) as node:
        api = node.http + "/api/handles/" + HANDLE
        body = {"values": [{"index": 1, "type": "URL", "data": "https://one/"}]}
        assert httpx.put(api, json=body, headers=auth).status_code == 201
        body["values"][0]["data"] = "https://two/"
        assert httpx.put(api, json=body, headers=auth).status_code == 200
        history = node.http + "/api/history/" + HANDLE
        listed = httpx.get(history, headers=auth).json()
        assert [v["version"] for v in listed["versions"]] == [1, 2]
        assert listed["versions"][0]["actor"] == "300:88.100.1/OWNER"
        one = httpx.get(history, params={"version": 1}, headers=auth).json()
        assert one["values"][0]["data"]["value"] == "https://one/"
        changes = httpx.get(history, params={"from": 1, "to": 2}, headers=auth).json()["changes"]
        assert [(c["index"], c["change"]) for c in changes] == [(1, "changed")]
        assert httpx.get(history).status_code == 401
        bad = httpx.get(history, params={"version": "x"}, headers=auth)
        assert bad.status_code == 400
        restored = httpx.post(history, params={"restore": 1}, headers=auth)
        assert restored.json()["version"] == 3
        assert httpx.get(api).json()["values"][0]["data"]["value"] == "https://one/"

    shown = runner.invoke(app, ["history", HANDLE, "-d", str(node_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    lines = [json.loads(line) for line in shown.output.splitlines()]
    # A PUT of the whole record is a create (with overwrite) in the audit log.
    assert [line["operation"] for line in lines] == ["create", "create", "restore-version-1"]
    changed = runner.invoke(app, ["history", HANDLE, "-d", str(node_dir), "--from", "2"])
    assert "version 2 -> 3: 1 change(s)" in changed.output
    # Text, not Python's bytes: "- https://two/" then "+ https://one/" (issue 21).
    assert changed.output.splitlines()[1:] == [
        "  changed 1 URL",
        "      - https://two/",
        "      + https://one/",
    ]
    # At 80 columns every column is whole: folded, not cut.
    listed = runner.invoke(app, ["history", HANDLE, "-d", str(node_dir)], terminal_width=80,
                           env={"COLUMNS": "80"})  # fmt: skip
    lines = listed.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("   1  20")
    assert lines[0].endswith(" UTC  create  (1 value)")
    assert lines[1] == "      by 300:88.100.1/OWNER from http 127.0.0.1"
    back = runner.invoke(app, ["history", HANDLE, "-d", str(node_dir), "--restore", "2"])
    assert back.exit_code == 0, back.output
    assert "as version 4" in back.output
    missing = runner.invoke(app, ["history", "88.100.1/NONE", "-d", str(node_dir)])
    assert missing.exit_code == 1
    assert "no history here" in missing.output
