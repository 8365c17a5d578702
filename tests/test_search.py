"""Search: every backend's index answers what a brute-force scan of the public values
says, after creates, updates, deletes and bulk writes; over HTTP and the CLI too."""

from __future__ import annotations

import dataclasses
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from idnode.cli import app
from idnode.domain import Condition, HandleRecord, SearchQuery
from idnode.errors import InvalidValue
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, Permission
from idnode.storage import SQLiteStorage, Storage, search
from idnode.storage import sqlite as sqlite_storage
from idnode.storage.migrations import MIGRATIONS, SEARCH_INDEX_VERSION
from tests.conftest import RunningNode

WORDS = ("pump", "valve", "impeller", "steel", "bronze", "seal", "motor", "red", "blue")
STATUSES = ("in stock", "in service", "returned")
PRIVATE = Permission.ADMIN_READ | Permission.ADMIN_WRITE


def record(rng: random.Random, handle: str) -> HandleRecord:
    values = [
        HandleValue(1, "TEMPLATE", rng.choice((b"serial-item@1", b"part@1", b"part@2"))),
        HandleValue(2, "STATUS", rng.choice(STATUSES).encode()),
        HandleValue(3, "WEIGHT", str(rng.choice((0.5, 1, 2.25, 10, 11, 100))).encode()),
        HandleValue(4, "MADE", f"2026-{rng.randint(1, 12):02d}-01".encode()),
        HandleValue(5, "NOTE", " ".join(rng.sample(WORDS, 3)).encode()),
        # Not public: never found.
        HandleValue(6, "OWNER", rng.choice((b"ACME", b"Globex")), permissions=PRIVATE),
        # Types of the protocol's own are not indexed, in any case; nor is data that
        # is not UTF-8 text; other types are found in any case.
        HandleValue(7, "hs_comment", b"pump red"),
        HandleValue(8, "Colour", rng.choice((b"red", b"blue", b"\xff\xfe"))),
    ]
    return HandleRecord(handle, tuple(rng.sample(values, rng.randint(3, 8))))


def _text(value: HandleValue) -> str | None:
    try:
        return value.data.decode()
    except UnicodeDecodeError:
        return None


def matches(rec: HandleRecord, q: SearchQuery) -> bool:
    public = [v for v in rec.values if v.permissions & Permission.PUBLIC_READ]
    texts = {
        (v.type.upper(), text)
        for v in public
        if not v.type.upper().startswith("HS_") and (text := _text(v)) is not None
    }
    if q.prefix and not rec.handle.upper().startswith(q.prefix.upper() + "/"):
        return False
    if q.template:
        name, _, version = q.template.partition("@")
        if not any(
            n == "TEMPLATE" and (t == q.template if version else t.startswith(name + "@"))
            for n, t in texts
        ):
            return False
    # Conditions on one field must hold for one value of it (a range).
    for name in {c.name.upper() for c in q.conditions}:
        group = [c for c in q.conditions if c.name.upper() == name]
        if not any(n == name and all(_holds(t, c) for c in group) for n, t in texts):
            return False
    if q.text:
        tokens = set(re.findall(r"[a-z0-9]+", " ".join(t for _, t in texts).lower()))
        if not set(re.findall(r"\w+", q.text.lower())) <= tokens:
            return False
    return True


def _holds(text: str, c: Condition) -> bool:
    number = _number(c.value)
    if c.op == "=":
        return text == c.value
    a, b = (_number(text), number) if number is not None else (text, c.value)
    if a is None:
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[c.op]  # type: ignore[operator]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def queries(rng: random.Random) -> list[SearchQuery]:
    found = []
    for _ in range(60):
        conditions = []
        for _ in range(rng.randint(0, 2)):
            name, op, value = rng.choice(
                [
                    ("status", "=", rng.choice(STATUSES)),
                    (
                        "WEIGHT",
                        rng.choice(("<", "<=", ">", ">=")),
                        str(rng.choice((1, 2.25, 10.5))),
                    ),
                    ("made", rng.choice((">=", "<")), f"2026-{rng.randint(1, 12):02d}-01"),
                    ("owner", "=", "ACME"),  # private: never matches
                    ("colour", "=", rng.choice(("red", "blue"))),
                    ("HS_COMMENT", "=", "pump red"),  # not indexed: never matches
                ]
            )
            conditions.append(Condition(name, op, value))  # type: ignore[arg-type]
        found.append(
            SearchQuery(
                prefix=rng.choice((None, "88.1", "88.2")),
                template=rng.choice((None, "part", "part@2", "serial-item")),
                conditions=tuple(conditions),
                text=rng.choice((None, None, rng.choice(WORDS), " ".join(rng.sample(WORDS, 2)))),
                limit=10_000,
            )
        )
    return found


def check_all(storage: Storage, records: dict[str, HandleRecord], rng: random.Random) -> None:
    for q in queries(rng):
        expected = sorted((h for h, r in records.items() if matches(r, q)), key=str.upper)
        assert storage.search(q) == expected, q


def test_search_agrees_with_a_brute_force_scan(storage: Storage) -> None:
    rng = random.Random(7)
    records = {
        f"88.{1 + n % 2}/R{n:04d}": record(rng, f"88.{1 + n % 2}/R{n:04d}") for n in range(300)
    }
    storage.put_many(list(records.values())[:200], replace=False)
    for rec in list(records.values())[200:]:

        def created(_none: HandleRecord | None, rec: HandleRecord = rec) -> HandleRecord:
            return rec

        storage.update(rec.handle, created)
    check_all(storage, records, rng)

    # Every kind of write keeps the index true.
    for handle in rng.sample(sorted(records), 40):
        records[handle] = record(rng, handle)
        storage.put(records[handle])
    for handle in rng.sample(sorted(records), 20):
        storage.update(handle, lambda _old: None)
        del records[handle]
    for handle in rng.sample(sorted(records), 20):
        new = records[handle] = record(rng, handle)

        def replaced(_old: HandleRecord | None, new: HandleRecord = new) -> HandleRecord:
            return new

        storage.update(handle, replaced)
    changed = {h: record(rng, h) for h in rng.sample(sorted(records), 50)}
    records |= changed
    storage.put_many(changed.values(), replace=True)
    storage.put_many([record(rng, h) for h in changed], replace=False)  # skipped: no change
    check_all(storage, records, rng)


def test_pages_agree_with_a_brute_force_scan_walked_or_driven(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the walk in key order taken for queries that many records meet (here: 3
    or more), and its stretch short enough to come back short as often as full, every
    page is still the brute-force scan's, whichever way it was found."""
    rng = random.Random(11)
    records = {
        f"88.{1 + n % 2}/W{n:04d}": record(rng, f"88.{1 + n % 2}/W{n:04d}") for n in range(240)
    }
    storage.put_many(records.values(), replace=False)
    monkeypatch.setattr(search, "ESTIMATE_CAP", 3)
    monkeypatch.setattr(search, "WALK_FACTOR", 3)
    walks: list[int] = []
    real_walk = search.walk

    def counted(*args: Any, **kwargs: Any) -> tuple[str, list[object]]:
        walks.append(1)
        return real_walk(*args, **kwargs)

    monkeypatch.setattr(search, "walk", counted)
    for q in queries(rng):
        expected = sorted((h for h, r in records.items() if matches(r, q)), key=str.upper)
        for offset, limit in ((0, 5), (0, 1), (5, 5), (12, 7), (0, 40)):
            page = dataclasses.replace(q, offset=offset, limit=limit)
            assert storage.search(page) == expected[offset : offset + limit], page
    assert len(walks) > 100


def test_an_unselective_first_page_is_found_by_the_walk_alone(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every record says "pump": the first page comes from the walk, without the
    driven statement (which would read every match) being made at all."""
    storage.put_many(
        (
            HandleRecord(f"88.1/U{n:04d}", (HandleValue(1, "NOTE", b"pump seal"),))
            for n in range(1500)
        ),
        replace=False,
    )

    def refused(*args: Any, **kwargs: Any) -> tuple[str, list[object]]:
        raise AssertionError("the driven statement was made")

    monkeypatch.setattr(search, "statement", refused)
    first = storage.search(SearchQuery(text="pump", limit=26))
    assert first == [f"88.1/U{n:04d}" for n in range(26)]
    found = storage.search(
        SearchQuery(
            prefix="88.1", conditions=(Condition("NOTE", "=", "pump seal"),), limit=10, offset=30
        )
    )
    assert found == [f"88.1/U{n:04d}" for n in range(30, 40)]


def test_paging_and_malformed_queries(storage: Storage) -> None:
    rng = random.Random(3)
    storage.put_many((record(rng, f"88.1/P{n:03d}") for n in range(25)), replace=False)
    everything = storage.search(SearchQuery(prefix="88.1", limit=100))
    pages = [storage.search(SearchQuery(prefix="88.1", offset=o, limit=10)) for o in (0, 10, 20)]
    assert [h for page in pages for h in page] == everything
    assert len(everything) == 25
    with pytest.raises(InvalidValue, match="a condition is"):
        Condition.parse("status")
    with pytest.raises(InvalidValue, match="no words"):
        SearchQuery(text="  ---  ")
    assert Condition.parse("weight>=2.5") == Condition("weight", ">=", "2.5")
    assert Condition.parse("status=in stock") == Condition("status", "=", "in stock")


@pytest.mark.parametrize(
    "version",
    [5, 6],
    ids=["from before search", "from before the index was kept by record"],
)
def test_existing_records_are_found_after_an_upgrade(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE schema_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER)"
    )
    for migration in MIGRATIONS[:version]:
        for statement in migration.sqlite:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, 0)", (migration.version, migration.name)
        )
    conn.commit()
    conn.close()
    rng = random.Random(1)
    records = {f"88.1/OLD{n}": record(rng, f"88.1/OLD{n}") for n in range(30)}
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO handles VALUES (?, ?, ?, 0)",
        [(h.upper(), h, EncodedValues.of(r.values).wire) for h, r in records.items()],
    )
    if version >= SEARCH_INDEX_VERSION:  # indexed as that version kept its index
        sqlite_storage._reindex(conn, [(h.upper(), r.values) for h, r in records.items()])
    conn.commit()
    conn.close()
    storage = SQLiteStorage(path)
    try:
        check_all(storage, records, rng)
    finally:
        storage.close()


def test_search_over_http_and_the_cli(running_node: RunningNode, demo_dir: Path) -> None:
    api = running_node.http + "/api/search"
    batches = httpx.get(api, params={"template": "batch", "pageSize": 10}).json()
    assert batches["handles"][0].startswith("88.100.1/BATCH-")
    assert batches["hasMore"] is True
    second = httpx.get(api, params={"template": "batch", "pageSize": 10, "page": 1}).json()
    assert set(second["handles"]).isdisjoint(batches["handles"])
    assert httpx.get(api, params={"where": "nonsense"}).status_code == 400
    assert httpx.get(api, params={"pageSize": 5000}).status_code == 400
    runner = CliRunner()
    result = runner.invoke(
        app, ["search", "-d", str(demo_dir), "--template", "batch", "--limit", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("BATCH-") == 3
    nothing = runner.invoke(app, ["search", "-d", str(demo_dir), "--where", "STATUS=lost"])
    assert nothing.exit_code == 0
    assert "no identifier matches" in nothing.output


def test_the_documented_searches_find_demo_records(running_node: RunningNode) -> None:
    """Issue 21: the examples of docs/cli.md and docs/http-api.md, on the demo data."""
    api = running_node.http + "/api/search"
    where = ["status=returned", "manufactured>=2026-01-01"]
    found = httpx.get(api, params={"template": "serial-item", "where": where}).json()
    assert found["handles"], found
    for handle in found["handles"][:5]:
        values = httpx.get(f"{running_node.http}/api/handles/{handle}").json()["values"]
        by_type = {v["type"]: v["data"]["value"] for v in values}
        assert by_type["STATUS"] == "returned"
        assert by_type["MANUFACTURED"] >= "2026-01-01"


@pytest.mark.services
def test_existing_records_are_indexed_in_postgresql_too(postgres_url: str) -> None:
    import psycopg

    from idnode.storage.postgres import PostgresStorage

    rng = random.Random(2)
    records = {f"88.1/OLD{n}": record(rng, f"88.1/OLD{n}") for n in range(40)}
    with psycopg.connect(postgres_url) as conn:  # a database from before search
        conn.execute(
            "CREATE TABLE schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        for migration in MIGRATIONS[:5]:
            for statement in migration.postgresql:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, 0)",
                (migration.version, migration.name),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO handles VALUES (%s, %s, %s, 0)",
                [(h.upper(), h, EncodedValues.of(r.values).wire) for h, r in records.items()],
            )
    storage = PostgresStorage(postgres_url)
    try:
        check_all(storage, records, rng)
    finally:
        storage.close()


@pytest.mark.parametrize("replace", [False, True])
def test_a_key_twice_in_one_bulk_write_is_indexed_as_stored(
    storage: Storage, replace: bool
) -> None:
    first = HandleRecord("88.1/TWICE", (HandleValue(1, "COLOUR", b"red"),))
    second = HandleRecord("88.1/TWICE", (HandleValue(1, "COLOUR", b"blue"),))
    storage.put_many([first, second], replace=replace)
    stored = storage.get("88.1/TWICE")
    assert stored is not None
    kept = stored.values[0].data.decode()
    other = "blue" if kept == "red" else "red"
    assert storage.search(SearchQuery(conditions=(Condition("colour", "=", kept),))) == [
        "88.1/TWICE"
    ]
    assert storage.search(SearchQuery(conditions=(Condition("colour", "=", other),))) == []
