"""The contract every storage backend must meet (run once per backend in conftest)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from idnode.domain import (
    Account,
    AuditContext,
    AuditQuery,
    Condition,
    HandleRecord,
    SearchQuery,
    StoredSession,
)
from idnode.errors import HandleAlreadyExists, StorageError
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.storage import Storage, open_storage
from idnode.storage.migrations import MIGRATIONS


def rec(handle: str, *urls: str) -> HandleRecord:
    return HandleRecord(
        handle, tuple(HandleValue(i + 1, "URL", u.encode()) for i, u in enumerate(urls or ("x",)))
    )


def create(storage: Storage, record: HandleRecord) -> None:
    """Store a new record, refusing a handle taken in any case (as the service does)."""

    def new(current: HandleRecord | None) -> HandleRecord:
        if current is not None:
            raise HandleAlreadyExists(f"{current.handle} exists")
        return record

    storage.update(record.handle, new)


def delete(storage: Storage, handle: str) -> bool:
    """Remove a record; whether there was one."""
    found: list[HandleRecord | None] = []

    def gone(current: HandleRecord | None) -> None:
        found.append(current)

    storage.update(handle, gone)
    return found[0] is not None


def test_get_missing_is_none(storage: Storage) -> None:
    assert storage.get("88.100.1/NONE") is None


def test_create_then_get_keeps_every_field(storage: Storage) -> None:
    value = HandleValue(
        7, "EMAIL", b"\x00\xffbinary", ttl=-5, permissions=Permission.ADMIN_READ, timestamp=99
    )
    create(storage, HandleRecord("88.100.1/Pump-1", (value,)))
    got = storage.get("88.100.1/Pump-1")
    assert got == HandleRecord("88.100.1/Pump-1", (value,))


def test_lookup_is_ascii_case_insensitive_only(storage: Storage) -> None:
    create(storage, rec("88.100.1/Pump-ä"))
    assert storage.get("88.100.1/PUMP-ä") is not None
    assert storage.get("88.100.1/pump-ä") is not None
    assert storage.get("88.100.1/PUMP-Ä") is None  # non-ASCII letters keep their case


def test_create_refuses_existing_handle_in_any_case(storage: Storage) -> None:
    create(storage, rec("88.100.1/A", "first"))
    with pytest.raises(HandleAlreadyExists):
        create(storage, rec("88.100.1/a", "second"))
    assert storage.get("88.100.1/A") == rec("88.100.1/A", "first")


def test_get_async_reads_what_get_reads(storage: Storage) -> None:
    storage.put(rec("88.100.1/Async", "one"))

    async def read() -> tuple[HandleRecord | None, HandleRecord | None]:
        try:
            found = await storage.get_async("88.100.1/ASYNC")
            missing = await storage.get_async("88.100.1/NONE")
        finally:
            await storage.aclose()
        return found, missing

    assert asyncio.run(read()) == (rec("88.100.1/Async", "one"), None)
    # Closed on that loop, it opens again on the next one.
    assert asyncio.run(read())[0] == storage.get("88.100.1/Async")


def test_put_replaces(storage: Storage) -> None:
    storage.put(rec("88.100.1/A", "one"))
    storage.put(rec("88.100.1/A", "two", "three"))
    assert storage.get("88.100.1/A") == rec("88.100.1/A", "two", "three")
    assert storage.count() == 1


def test_delete(storage: Storage) -> None:
    storage.put(rec("88.100.1/A"))
    assert delete(storage, "88.100.1/a") is True
    assert delete(storage, "88.100.1/a") is False
    assert storage.get("88.100.1/A") is None


def test_put_many_counts_written_and_skipped(storage: Storage) -> None:
    storage.put(rec("88.100.1/0", "old"))
    records = [rec(f"88.100.1/{i}", "new") for i in range(12_000)]
    written, skipped = storage.put_many(records, replace=False)
    assert (written, skipped) == (11_999, 1)
    assert storage.get("88.100.1/0") == rec("88.100.1/0", "old")
    written, skipped = storage.put_many(records[:10], replace=True)
    assert (written, skipped) == (10, 0)
    assert storage.get("88.100.1/0") == rec("88.100.1/0", "new")


def test_put_many_takes_a_repeated_handle_as_single_writes_would(storage: Storage) -> None:
    """Both backends alike (issue 20): skipping existing handles keeps the first of a
    repeated one, replacing keeps the last, and the search index follows."""
    twice = [rec("88.100.1/DUP", "first"), rec("88.100.1/DUP", "second")]
    storage.put_many(twice, replace=False)
    assert storage.get("88.100.1/DUP") == rec("88.100.1/DUP", "first")
    storage.put_many([rec("88.100.1/DUP2", "first"), rec("88.100.1/DUP2", "second")], replace=True)
    assert storage.get("88.100.1/DUP2") == rec("88.100.1/DUP2", "second")
    assert storage.search(SearchQuery(text="first")) == ["88.100.1/DUP"]
    assert storage.search(SearchQuery(text="second")) == ["88.100.1/DUP2"]


def test_iter_and_count_by_prefix_do_not_leak_into_longer_prefixes(storage: Storage) -> None:
    for handle in ["88.100/A", "88.100.1/B", "88.100.1/A", "88.1000/C", "88.100/Z"]:
        storage.put(rec(handle))
    assert [r.handle for r in storage.iter_records("88.100")] == ["88.100/A", "88.100/Z"]
    assert storage.count("88.100.1") == 2
    assert storage.count() == 5
    assert next(r.handle for r in storage.iter_records()) == "88.100.1/A"


def test_homed_prefixes(storage: Storage) -> None:
    storage.home_prefix("88.100.1")
    storage.home_prefix("88.100.1")  # idempotent
    storage.home_prefix("88.A")
    assert "88.A" in storage.homed_prefixes()
    assert storage.homed_prefixes() == ["88.100.1", "88.A"]
    assert storage.unhome_prefix("88.100.1") is True
    assert storage.unhome_prefix("88.100.1") is False
    assert storage.homed_prefixes() == ["88.A"]


def test_schema_version_is_newest_migration(storage: Storage) -> None:
    assert storage.schema_version() == MIGRATIONS[-1].version


def test_failed_write_leaves_store_unchanged(storage: Storage) -> None:
    storage.put(rec("88.100.1/KEEP"))

    def records() -> object:
        yield rec("88.100.1/NEW")
        raise RuntimeError("input broke mid-way")

    with pytest.raises(RuntimeError):
        storage.put_many(records(), replace=True)  # type: ignore[arg-type]
    assert storage.get("88.100.1/NEW") is None
    assert storage.count() == 1


# SQLite specifics: durability settings and schema handling.


def test_sqlite_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    store.put(rec("1/A"))
    store.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_write_is_visible_to_a_second_connection_at_once(tmp_path: Path) -> None:
    writer = open_storage(str(tmp_path / "x.db"))
    reader = open_storage(str(tmp_path / "x.db"))
    writer.put(rec("1/A"))
    assert reader.get("1/a") == rec("1/A")
    writer.close()
    reader.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    open_storage(str(tmp_path / "x.db")).close()
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer than this idnode"):
        open_storage(str(tmp_path / "x.db"))


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open database"):
        open_storage(str(tmp_path / "junk.db"))


def test_unknown_backend_scheme(tmp_path: Path) -> None:
    from idnode.errors import ConfigError

    with pytest.raises(ConfigError, match="no storage backend for 'mysql'"):
        open_storage("mysql://localhost/x")


def test_update_reads_changes_and_writes(storage: Storage) -> None:
    def add(record: HandleRecord | None) -> HandleRecord:
        values = tuple(record.values) if record else ()
        return HandleRecord("88.100.1/U", (*values, HandleValue(len(values) + 1, "N", b"x")))

    storage.update("88.100.1/u", add)  # creates
    written = storage.update("88.100.1/U", add)
    assert written is not None
    assert [v.index for v in written.values] == [1, 2]
    assert storage.get("88.100.1/U") == written
    assert storage.update("88.100.1/U", lambda record: None) is None  # deletes
    assert storage.get("88.100.1/U") is None


def test_update_that_raises_writes_nothing(storage: Storage) -> None:
    storage.put(rec("88.100.1/KEEP", "before"))

    def broken(record: HandleRecord | None) -> HandleRecord:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        storage.update("88.100.1/KEEP", broken)
    assert storage.get("88.100.1/KEEP") == rec("88.100.1/KEEP", "before")


def test_update_cannot_change_the_handle(storage: Storage) -> None:
    storage.put(rec("88.100.1/A"))
    with pytest.raises(StorageError, match="returned a record for"):
        storage.update("88.100.1/A", lambda record: rec("88.100.1/B"))
    assert storage.get("88.100.1/B") is None


def test_update_with_audit_records_before_and_after_in_one_transaction(storage: Storage) -> None:
    who = AuditContext("300:0.NA/88.100.1", "tcp 127.0.0.1:5000", "create")
    storage.update("88.100.1/Aud", lambda record: rec("88.100.1/Aud", "one"), who)
    storage.update(
        "88.100.1/AUD",
        lambda record: rec("88.100.1/Aud", "one", "two"),
        AuditContext("300:88.100.1/ALICE", "http 10.0.0.1", "add-value"),
    )
    storage.update("88.100.1/aud", lambda record: None, AuditContext("local", "cli", "delete"))
    storage.update("88.100.1/OTHER", lambda record: rec("88.100.1/OTHER"))  # not audited
    log = storage.audit_log(AuditQuery(handle="88.100.1/aud"))
    assert [(e.operation, e.actor) for e in log] == [
        ("create", "300:0.NA/88.100.1"),
        ("add-value", "300:88.100.1/ALICE"),
        ("delete", "local"),
    ]
    assert log[0].before is None
    assert log[0].after == rec("88.100.1/Aud", "one")
    assert log[1].before == rec("88.100.1/Aud", "one")
    assert log[1].after == rec("88.100.1/Aud", "one", "two")
    assert log[2].before == rec("88.100.1/Aud", "one", "two")
    assert log[2].after is None
    assert log[0].origin == "tcp 127.0.0.1:5000"
    assert log[0].at <= log[2].at
    assert [e.operation for e in storage.audit_log(AuditQuery(actor="local"))] == ["delete"]
    assert len(storage.audit_log(AuditQuery(limit=2))) == 2
    assert storage.audit_log(AuditQuery(since=log[2].at + 1)) == []


def test_refused_update_leaves_no_audit_entry(storage: Storage) -> None:
    def broken(record: HandleRecord | None) -> HandleRecord:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        storage.update("88.100.1/NO", broken, AuditContext("a", "b", "c"))
    assert storage.audit_log() == []


def test_list_handles_pages_in_key_order(storage: Storage) -> None:
    storage.put_many((rec(f"88.100.1/h{n:02d}") for n in range(25)), replace=False)
    storage.put(rec("88.100.10/other"))
    assert storage.list_handles("88.100.1", 0, 10) == [f"88.100.1/h{n:02d}" for n in range(10)]
    assert storage.list_handles("88.100.1", 20, 10) == [f"88.100.1/h{n:02d}" for n in range(20, 25)]
    assert len(storage.list_handles("88.100.1")) == 25
    assert storage.list_handles("88.100.2") == []


def test_sessions_round_trip_update_delete_and_purge(storage: Storage) -> None:
    anonymous = StoredSession("s1", b"\x00nonce\xff", None, 100.0)
    storage.put_session(anonymous)
    storage.put_session(StoredSession("s2", b"n2", None, 50.0))
    assert storage.get_session("s1") == anonymous
    assert storage.get_session("S1") is None  # ids are exact, not case-folded

    proven = StoredSession("s1", b"\x00nonce\xff", ValueReference("0.NA/88.100.1", 300), 200.0)
    storage.put_session(proven)
    assert storage.get_session("s1") == proven

    assert storage.purge_sessions(now=60.0) == 1
    assert storage.get_session("s2") is None
    assert storage.delete_session("s1") is True
    assert storage.delete_session("s1") is False
    assert storage.get_session("s1") is None

    # Deleted only if it still holds the nonce read: one of two takers wins.
    storage.put_session(StoredSession("c1", b"first", None, 100.0))
    assert storage.delete_session_if("c1", b"other") is False
    assert storage.get_session("c1") is not None
    assert storage.delete_session_if("c1", b"first") is True
    assert storage.delete_session_if("c1", b"first") is False


def test_accounts_round_trip_replace_and_delete(storage: Storage) -> None:
    assert storage.accounts() == []
    ops = Account("ops", ValueReference("0.NA/88.100.1", 300), "scrypt$14$8$1$AA==$AA==", 10)
    storage.put_account(ops)
    storage.put_account(Account("audit", ValueReference("88.100.1/AUDIT", 301), "h", 11))
    assert storage.get_account("ops") == ops
    assert storage.get_account("OPS") is None  # names are exact
    # Adding it again changes its identity and password, not when it was created.
    storage.put_account(Account("ops", ValueReference("88.100.1/OPS", 300), "new", 99))
    changed = storage.get_account("ops")
    assert changed is not None
    assert (changed.identity, changed.password, changed.created) == (
        ValueReference("88.100.1/OPS", 300),
        "new",
        10,
    )
    assert [a.name for a in storage.accounts()] == ["audit", "ops"]
    assert storage.delete_account("ops") is True
    assert storage.delete_account("ops") is False
    assert storage.get_account("ops") is None


def test_session_counters_change_only_from_the_state_expected(storage: Storage) -> None:
    storage.put_session(StoredSession("handle:7", b"k" * 32, None, 100.0))
    assert storage.advance_session("handle:7", (0, 0), (4, 0b100)) is True
    # A second worker that read the old state loses the race and must read again.
    assert storage.advance_session("handle:7", (0, 0), (1, 0)) is False
    assert storage.advance_session("handle:8", (0, 0), (1, 0)) is False  # no such session
    stored = storage.get_session("handle:7")
    assert stored is not None
    assert (stored.counter, stored.seen) == (4, 0b100)
    # Re-storing the session (as authenticating it does) keeps its counters.
    storage.put_session(
        StoredSession("handle:7", b"k" * 32, ValueReference("88.1/OPS", 300), 100.0)
    )
    stored = storage.get_session("handle:7")
    assert stored is not None
    assert (stored.counter, stored.seen, stored.identity) == (
        4,
        0b100,
        ValueReference("88.1/OPS", 300),
    )
    big = (1 << 62) - 1  # the widest bitmap the window keeps fits the column
    assert storage.advance_session("handle:7", (4, 0b100), (2**31, big)) is True
    stored = storage.get_session("handle:7")
    assert stored is not None
    assert (stored.counter, stored.seen) == (2**31, big)


def test_get_many_finds_the_existing_ones_by_key(storage: Storage) -> None:
    storage.put_many((rec(f"88.1/H{n}") for n in range(1200)), replace=False)
    asked = [f"88.1/h{n}" for n in range(0, 1500, 3)]  # other case; some do not exist
    found = storage.get_many(asked)
    assert sorted(found) == sorted(f"88.1/H{n}" for n in range(0, 1200, 3))
    assert found["88.1/H3"].handle == "88.1/H3"
    assert storage.get_many([]) == {}


def test_put_many_can_audit_what_it_writes(storage: Storage) -> None:
    storage.put(rec("88.1/OLD", "before"))
    audit = AuditContext("300:0.NA/88.1", "http 10.0.0.5", "bulk")
    records = [rec("88.1/OLD", "after"), rec("88.1/NEW", "new")]
    assert storage.put_many(records, replace=True, audit=audit) == (2, 0)
    entries = storage.audit_log(AuditQuery(actor="300:0.NA/88.1"))
    by_handle = {e.handle: e for e in entries}
    assert by_handle["88.1/OLD"].before == rec("88.1/OLD", "before")
    assert by_handle["88.1/OLD"].after == rec("88.1/OLD", "after")
    assert by_handle["88.1/NEW"].before is None
    assert {e.operation for e in entries} == {"bulk"}
    # Without replace, existing handles are neither written nor logged.
    storage.put_many([rec("88.1/OLD", "again"), rec("88.1/THIRD")], replace=False, audit=audit)
    assert [e.handle for e in storage.audit_log(AuditQuery(actor="300:0.NA/88.1"))][2:] == [
        "88.1/THIRD"
    ]


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "staging-process"])
def test_put_staged_writes_a_span_less_what_choose_leaves(storage: Storage, parallel: bool) -> None:
    storage.put(rec("88.1/KEEP", "stored"))
    storage.put(rec("88.1/REPLACE", "stored"))
    offered: dict[str, tuple[HandleRecord, HandleRecord]] = {}

    def leave_keep(existing: dict[str, tuple[HandleRecord, HandleRecord]]) -> list[str]:
        offered.update(existing)
        return ["88.1/KEEP"]

    with storage.staging(parallel=parallel) as staging:
        span = staging.add(
            [rec("88.1/KEEP", "staged"), rec("88.1/Replace", "staged"), rec("88.1/NEW", "staged")]
        )
        later = staging.add([rec("88.1/LATER", "staged")])
        assert (span, later) == (range(1, 4), range(4, 5))
        assert storage.put_staged(staging, span, leave_keep) == 2
    assert offered == {
        "88.1/KEEP": (rec("88.1/KEEP", "stored"), rec("88.1/KEEP", "staged")),
        "88.1/REPLACE": (rec("88.1/REPLACE", "stored"), rec("88.1/Replace", "staged")),
    }
    assert storage.get("88.1/KEEP") == rec("88.1/KEEP", "stored")
    assert storage.get("88.1/REPLACE") == rec("88.1/Replace", "staged")
    assert storage.get("88.1/NEW") == rec("88.1/NEW", "staged")
    assert storage.get("88.1/LATER") is None  # another span, not written
    # The search index follows: the replaced record's old value is gone from it.
    by_url = SearchQuery(conditions=(Condition("URL", "=", "stored"),))
    assert storage.search(by_url) == ["88.1/KEEP"]
    assert storage.search(SearchQuery(text="staged")) == ["88.1/NEW", "88.1/Replace"]


def test_put_staged_dry_run_counts_and_writes_nothing(storage: Storage) -> None:
    storage.put(rec("88.1/A", "stored"))
    with storage.staging() as staging:
        span = staging.add([rec("88.1/A", "staged"), rec("88.1/B"), rec("88.1/C")])
        assert storage.put_staged(staging, span, list, dry_run=True) == 2  # A left as it is
        assert storage.put_staged(staging, span, lambda existing: [], dry_run=True) == 3
    assert storage.get("88.1/A") == rec("88.1/A", "stored")
    assert storage.get("88.1/B") is None
    assert storage.audit_log() == []


def test_put_staged_can_audit_what_it_writes(storage: Storage) -> None:
    storage.put(rec("88.1/OLD", "before"))
    storage.put(rec("88.1/SAME", "same"))
    audit = AuditContext("300:0.NA/88.1", "http 10.0.0.5", "bulk")
    with storage.staging() as staging:
        span = staging.add([rec("88.1/OLD", "after"), rec("88.1/NEW"), rec("88.1/SAME", "same")])
        assert storage.put_staged(staging, span, lambda e: ["88.1/SAME"], audit=audit) == 2
    entries = {e.handle: e for e in storage.audit_log(AuditQuery(actor="300:0.NA/88.1"))}
    assert sorted(entries) == ["88.1/NEW", "88.1/OLD"]  # what was left is not logged
    assert entries["88.1/OLD"].before == rec("88.1/OLD", "before")
    assert entries["88.1/OLD"].after == rec("88.1/OLD", "after")
    assert entries["88.1/NEW"].before is None
    assert entries["88.1/NEW"].operation == "bulk"


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "staging-process"])
def test_a_handle_staged_twice_is_refused(storage: Storage, parallel: bool) -> None:
    def stage_twice() -> None:
        with storage.staging(parallel=parallel) as staging:
            staging.add([rec("88.1/TWICE")])
            staging.add([rec("88.1/twice")])
            staging.finish()  # the staging process tells only when it is done

    with pytest.raises(StorageError, match="given twice"):
        stage_twice()
