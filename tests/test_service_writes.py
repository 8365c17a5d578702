"""Authorised, audited writes in the service layer, on real SQLite."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.domain import AuditQuery, HandleRecord
from idnode.errors import (
    AuthenticationNeeded,
    HandleAlreadyExists,
    HandleNotFound,
    IdnodeError,
    InsufficientPermissions,
    InvalidValue,
    NotResponsible,
    ValueAlreadyExists,
    ValuesNotFound,
)
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission as P
from idnode.handle.valuetypes import AdminValue, SiteInfo, ValueList
from idnode.service import Caller, NodeService
from idnode.service.sessions import Sessions
from idnode.storage import SQLiteStorage

NODE_ADMIN = ValueReference("0.NA/88.100.1", 300)
ALICE = ValueReference("88.100.1/ALICE", 300)  # prefix-level admin, via a group
BOB = ValueReference("88.100.1/BOB", 300)  # admin of one handle only
EVE = ValueReference("88.100.1/EVE", 300)  # nobody
ADMIN = Caller(NODE_ADMIN, "test")
T = 1_700_000_000


def url(index: int, text: str = "https://example.com") -> HandleValue:
    return HandleValue(index, "URL", text.encode())


def admin(index: int, perms: P, who: ValueReference) -> HandleValue:
    return HandleValue(index, "HS_ADMIN", AdminValue(perms, who).to_bytes())


@pytest.fixture
def service(tmp_path: Path) -> Iterator[NodeService]:
    storage = SQLiteStorage(tmp_path / "s.db")
    svc = NodeService(
        storage, SiteInfo(servers=()), admins=(NODE_ADMIN,), wall_clock=lambda: float(T)
    )
    svc.prefixes.home_prefix("88.100.1")
    svc.prefixes.put_record(
        HandleRecord(
            "0.NA/88.100.1",
            (
                admin(100, P.ADD_HANDLE | P.LIST_HANDLES | P.DELETE_HANDLE, NODE_ADMIN),
                admin(101, P.ADD_HANDLE | P.LIST_HANDLES, ValueReference("0.NA/88.100.1", 200)),
                HandleValue(200, "HS_VLIST", ValueList((ALICE,)).to_bytes()),
            ),
        )
    )
    svc.prefixes.put_record(
        HandleRecord("88.100.1/DOC", (url(1), admin(100, P.ALL & ~P.DELETE_HANDLE, BOB)))
    )
    yield svc
    storage.close()


def as_(who: ValueReference) -> Caller:
    return Caller(who, "test")


def stored(service: NodeService, handle: str) -> list[tuple[int, str, bytes]]:
    record = service.reads.resolve(handle, caller=ADMIN, public_only=False)
    return [(v.index, v.type, v.data) for v in record.values]


def test_create_needs_add_handle_from_the_prefix_admins(service: NodeService) -> None:
    assert service.writes.create_handle("88.100.1/NEW", [url(1)], as_(ALICE)) == "88.100.1/NEW"
    assert stored(service, "88.100.1/NEW") == [(1, "URL", b"https://example.com")]
    assert service.reads.resolve("88.100.1/NEW").values[0].timestamp == T
    with pytest.raises(InsufficientPermissions, match="ADD_HANDLE"):
        service.writes.create_handle("88.100.1/NEW2", [url(1)], as_(BOB))
    with pytest.raises(AuthenticationNeeded):
        service.writes.create_handle("88.100.1/NEW2", [url(1)], Caller())
    with pytest.raises(HandleNotFound):
        service.reads.resolve("88.100.1/NEW2")


def test_create_existing_and_overwrite(service: NodeService) -> None:
    with pytest.raises(HandleAlreadyExists):
        service.writes.create_handle("88.100.1/doc", [url(1, "x")], ADMIN)
    # Alice may add handles but not delete this one, so may not replace it.
    with pytest.raises(InsufficientPermissions, match="DELETE_HANDLE"):
        service.writes.create_handle("88.100.1/DOC", [url(1, "x")], as_(ALICE), overwrite=True)
    service.writes.create_handle("88.100.1/DOC", [url(1, "x")], ADMIN, overwrite=True)
    assert stored(service, "88.100.1/DOC") == [(1, "URL", b"x")]


def test_mint_new_suffix(service: NodeService) -> None:
    made = service.writes.create_handle("88.100.1/batch-", [url(1)], ADMIN, mint_suffix=True)
    assert made.startswith("88.100.1/batch-")
    assert len(made) == len("88.100.1/batch-") + 36
    other = service.writes.create_handle("88.100.1", [url(1)], ADMIN, mint_suffix=True)
    assert other.startswith("88.100.1/")
    assert other != made


def test_writes_outside_homed_prefixes_are_refused(service: NodeService) -> None:
    with pytest.raises(NotResponsible):
        service.writes.create_handle("99.9/X", [url(1)], ADMIN)


def test_delete(service: NodeService) -> None:
    with pytest.raises(InsufficientPermissions):
        service.writes.delete_handle("88.100.1/DOC", as_(BOB))  # everything but DELETE_HANDLE
    service.writes.delete_handle("88.100.1/DOC", ADMIN)
    with pytest.raises(HandleNotFound):
        service.writes.delete_handle("88.100.1/DOC", ADMIN)


def test_add_modify_remove_values_with_handle_level_admin(service: NodeService) -> None:
    bob = as_(BOB)
    service.writes.add_values("88.100.1/DOC", [url(2, "two")], bob)
    with pytest.raises(ValueAlreadyExists):
        service.writes.add_values("88.100.1/DOC", [url(2, "again")], bob)
    service.writes.modify_values("88.100.1/DOC", [url(2, "TWO")], bob)
    with pytest.raises(ValuesNotFound):
        service.writes.modify_values("88.100.1/DOC", [url(9)], bob)
    service.writes.remove_values("88.100.1/DOC", [2], bob)
    with pytest.raises(ValuesNotFound):
        service.writes.remove_values("88.100.1/DOC", [2], bob)
    assert [i for i, _, _ in stored(service, "88.100.1/DOC")] == [1, 100]
    with pytest.raises(InsufficientPermissions):
        service.writes.add_values("88.100.1/DOC", [url(3)], as_(EVE))


@pytest.mark.parametrize(
    ("withheld", "attempt"),
    [
        (P.ADD_VALUE, lambda s, c: s.writes.add_values("88.100.1/D", [url(5)], c)),
        (P.MODIFY_VALUE, lambda s, c: s.writes.modify_values("88.100.1/D", [url(1, "m")], c)),
        (P.REMOVE_VALUE, lambda s, c: s.writes.remove_values("88.100.1/D", [1], c)),
        (P.ADD_ADMIN, lambda s, c: s.writes.add_values("88.100.1/D", [admin(7, P.ALL, EVE)], c)),
        (
            P.MODIFY_ADMIN,
            lambda s, c: s.writes.modify_values("88.100.1/D", [admin(100, P.ALL, EVE)], c),
        ),
        (P.REMOVE_ADMIN, lambda s, c: s.writes.remove_values("88.100.1/D", [101], c)),
        (
            P.MODIFY_ADMIN,
            lambda s, c: s.writes.modify_values("88.100.1/D", [admin(1, P.ALL, EVE)], c),
        ),
        (P.DELETE_HANDLE, lambda s, c: s.writes.delete_handle("88.100.1/D", c)),
        (P.READ_VALUE, None),
    ],
)
def test_each_value_permission_is_enforced_and_refusals_leave_the_record(
    service: NodeService, withheld: P, attempt: object
) -> None:
    values = (url(1), admin(100, P.ALL & ~withheld, BOB), admin(101, P.NONE, EVE))
    service.prefixes.put_record(HandleRecord("88.100.1/D", values))
    before = stored(service, "88.100.1/D")
    if attempt is None:  # READ_VALUE: the private admin values stay hidden
        seen = service.reads.resolve("88.100.1/D", caller=as_(BOB)).values
        assert all(v.permissions & Permission.PUBLIC_READ for v in seen)
        return
    with pytest.raises(InsufficientPermissions, match=str(withheld.name)):
        attempt(service, as_(BOB))  # type: ignore[operator]
    assert stored(service, "88.100.1/D") == before
    service.prefixes.put_record(
        HandleRecord("88.100.1/D", (url(1), admin(100, P.ALL, BOB), values[2]))
    )
    attempt(service, as_(BOB))  # type: ignore[operator]


def test_invalid_values_are_refused(service: NodeService) -> None:
    with pytest.raises(InvalidValue, match="twice"):
        service.writes.add_values("88.100.1/DOC", [url(5), url(5)], ADMIN)
    with pytest.raises(InvalidValue, match="HS_ADMIN"):
        service.writes.add_values("88.100.1/DOC", [HandleValue(5, "HS_ADMIN", b"\x00")], ADMIN)
    with pytest.raises(InvalidValue, match="secret key"):
        service.writes.add_values("88.100.1/DOC", [HandleValue(5, "HS_SECKEY", b"s")], ADMIN)
    with pytest.raises(InvalidValue, match="no values"):
        service.writes.create_handle("88.100.1/EMPTY", [], ADMIN)


def test_read_only_values_cannot_be_changed(service: NodeService) -> None:
    frozen = HandleValue(9, "URL", b"x", permissions=Permission.ADMIN_READ | Permission.PUBLIC_READ)
    service.writes.add_values("88.100.1/DOC", [frozen], ADMIN)
    with pytest.raises(InsufficientPermissions, match="not writable"):
        service.writes.modify_values("88.100.1/DOC", [url(9)], ADMIN)


def test_list_handles_needs_list_permission(service: NodeService) -> None:
    handles, total = service.writes.list_handles("88.100.1", as_(ALICE))
    assert handles == ["88.100.1/DOC"]
    assert total == 1
    with pytest.raises(InsufficientPermissions):
        service.writes.list_handles("88.100.1", as_(BOB))


def test_prefix_handles_are_created_by_the_parent_prefix_admins(service: NodeService) -> None:
    service.prefixes.home_prefix("88.100.1.7")
    with pytest.raises(InsufficientPermissions, match="ADD_NA"):
        service.writes.create_handle("0.NA/88.100.1.7", [url(1)], as_(ALICE))
    service.writes.create_handle("0.NA/88.100.1.7", [url(1)], ADMIN)


def test_every_write_is_audited_with_before_and_after(service: NodeService) -> None:
    service.writes.create_handle("88.100.1/A", [url(1)], Caller(ALICE, "tcp 10.0.0.9:4000"))
    service.writes.add_values("88.100.1/A", [url(2)], ADMIN)
    service.writes.remove_values("88.100.1/A", [2], ADMIN)
    service.writes.delete_handle("88.100.1/A", ADMIN)
    with pytest.raises(IdnodeError):
        service.writes.delete_handle("88.100.1/A", ADMIN)  # refused: not audited
    log = service.writes.audit_log(AuditQuery(handle="88.100.1/a"))
    assert [(e.operation, e.actor) for e in log] == [
        ("create", "300:88.100.1/ALICE"),
        ("add-value", "300:0.NA/88.100.1"),
        ("remove-value", "300:0.NA/88.100.1"),
        ("delete", "300:0.NA/88.100.1"),
    ]
    assert log[0].origin == "tcp 10.0.0.9:4000"
    assert log[1].after is not None
    assert [v.index for v in log[1].after.values] == [1, 2]
    assert log[3].after is None


def test_concurrent_writers_on_one_handle_lose_nothing(service: NodeService) -> None:
    def writer(first: int) -> None:
        for index in range(first, first + 20):
            service.writes.add_values("88.100.1/DOC", [url(index)], ADMIN)

    threads = [threading.Thread(target=writer, args=(1000 + 100 * n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    indexes = [i for i, _, _ in stored(service, "88.100.1/DOC")]
    assert len(indexes) == 2 + 80
    assert len(service.writes.audit_log(AuditQuery(handle="88.100.1/DOC"))) == 80


def test_sessions_are_shared_by_services_on_one_database_and_expire(tmp_path: Path) -> None:
    """Two services on one file stand for two worker processes behind one port."""
    now = [float(T)]
    storage_a, storage_b = SQLiteStorage(tmp_path / "w.db"), SQLiteStorage(tmp_path / "w.db")
    site = SiteInfo(servers=())
    a = NodeService(storage_a, site, wall_clock=lambda: now[0])
    b = NodeService(storage_b, site, wall_clock=lambda: now[0])
    try:
        opened = a.sessions.open_session()
        assert b.sessions.session(opened.session_id).nonce == opened.nonce
        b.sessions.bind_session(opened.session_id, as_(BOB))
        assert a.sessions.session_caller(opened.session_id, "test").identity == BOB
        now[0] += Sessions.SESSION_SECONDS
        with pytest.raises(AuthenticationNeeded):
            a.sessions.session_caller(opened.session_id, "test")
        a.sessions.open_session()  # opening purges what has expired
        assert storage_b.get_session(opened.session_id) is None
    finally:
        storage_a.close()
        storage_b.close()
