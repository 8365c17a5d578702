"""Bulk registration: reading CSV and JSONL, building records, checking before
writing, idempotent re-runs, resuming after a crash, and POST /api/bulk."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from idnode import bulk
from idnode.bulk import BulkOptions, RecordBuilder, Rejection, Row, read_rows
from idnode.config import Config
from idnode.domain import Condition, SearchQuery
from idnode.errors import IdnodeError, InvalidValue
from idnode.handle.values import ValueReference
from idnode.handle.valuetypes import SiteInfo
from idnode.service import NodeService
from idnode.service.bulk import BulkWrites
from idnode.storage import Storage
from idnode.templates import BUILTIN
from tests.conftest import add_secret_admin, make_node, running

HEADER = "serial,model,manufactured,status\n"
OPTIONS = BulkOptions(prefix="88.100.1", template="serial-item", mint="PUMP-{serial:06d}")


def rows(text: str, fmt: bulk.Format = "csv") -> list[Row | Rejection]:
    return list(read_rows(io.StringIO(text, newline=""), fmt))


def csv_file(count: int, start: int = 1) -> str:
    lines = [
        f"{n},88.100.1/MODEL-CP-50,2026-01-{n % 28 + 1:02d},in stock"
        for n in range(start, start + count)
    ]
    return HEADER + "\n".join(lines) + "\n"


def test_csv_rows_and_what_is_wrong_with_them() -> None:
    found = rows(HEADER + '7,88.100.1/M,,"in stock"\n8,88.100.1/M\n\n9,"unterminated\n')
    assert found[0] == Row(2, {"serial": "7", "model": "88.100.1/M", "status": "in stock"})
    assert found[1] == Rejection(3, "2 cells where the header has 4")
    assert isinstance(found[2], Rejection)
    assert found[2].line == 5
    assert "bad CSV" in found[2].reason  # a truncated file: the quote never closes
    assert rows("") == [Rejection(1, "the file is empty; a CSV needs a header row")]
    assert "distinct" in str(rows("a,a\n1,2\n")[0])


def test_jsonl_rows_and_what_is_wrong_with_them() -> None:
    found = rows('{"handle": "88.1/A"}\n[1]\n{"handle": "88.1/B"\n', "jsonl")
    assert found[0] == Row(1, {"handle": "88.1/A"})
    assert found[1] == Rejection(2, "a line must hold one JSON object")
    assert isinstance(found[2], Rejection)
    assert found[2].reason.startswith("bad JSON")
    deep = '{"handle": ' + "[" * 5000 + "]" * 5000 + "}\n"
    assert rows(deep + '{"handle": "88.1/C"}\n', "jsonl") == [
        Rejection(1, "bad JSON: nested too deep"),
        Row(2, {"handle": "88.1/C"}),
    ]


def builder(options: BulkOptions = OPTIONS) -> RecordBuilder:
    return RecordBuilder(options, lambda name: BUILTIN[name.partition("@")[0]])


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"model": "88.100.1/M"}, "needs the field 'serial'"),
        ({"serial": "X1", "model": "88.100.1/M"}, "serial must be a whole number"),
        ({"serial": "1", "model": "M"}, "model: must be an identifier"),
        ({"serial": "1", "model": "88.100.1/M", "template": "colour"}, "colour"),
    ],
)
def test_rows_that_cannot_become_records_say_why(data: dict[str, Any], problem: str) -> None:
    def template(name: str) -> Any:
        if name not in BUILTIN:
            raise InvalidValue(f"no template {name}")
        return BUILTIN[name]

    with pytest.raises(IdnodeError, match=problem):
        RecordBuilder(OPTIONS, template).build(Row(2, data))


def test_handles_come_from_the_row_the_prefix_or_the_pattern() -> None:
    b = builder()
    minted = b.build(Row(2, {"serial": "42", "model": "88.100.1/M"}))
    assert minted.handle == "88.100.1/PUMP-000042"
    by_suffix = b.build(Row(3, {"suffix": "P-1", "serial": "1", "model": "88.100.1/M"}))
    assert by_suffix.handle == "88.100.1/P-1"
    given = {"handle": "88.100.1/X", "values": [{"index": 1, "type": "URL", "data": "https://x"}]}
    assert b.build(Row(4, given)).values[0].data == b"https://x"
    with pytest.raises(InvalidValue, match="more than once"):
        b.build(Row(5, {"serial": "042", "model": "88.100.1/M"}))  # the same minted suffix
    with pytest.raises(InvalidValue, match="needs the prefix"):
        BulkOptions(mint="P-{serial}")
    with pytest.raises(InvalidValue, match="uses no field"):
        BulkOptions(prefix="88.1", mint="P-1")


@pytest.fixture
def service(storage: Storage) -> NodeService:
    service = NodeService(storage, SiteInfo(servers=()))
    service.prefixes.home_prefix("88.100.1")
    return service


def source(text: str) -> bulk.Opener:
    @contextmanager
    def opened() -> Iterator[io.StringIO]:
        yield io.StringIO(text, newline="")

    return opened


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "staging-process"])
def test_a_file_is_written_once_and_a_rerun_changes_nothing(
    service: NodeService, parallel: bool
) -> None:
    text = csv_file(12)
    report = bulk.register(service, source(text), "csv", OPTIONS, replace=False, parallel=parallel)
    assert report.written
    assert (report.result.created, report.rejected_count) == (12, 0)
    assert service.reads.count("88.100.1") == 12
    again = bulk.register(service, source(text), "csv", OPTIONS, replace=False, parallel=parallel)
    assert (again.result.created, again.result.unchanged) == (0, 12)
    changed = text.replace("in stock", "in service", 1)
    skipped = bulk.register(
        service, source(changed), "csv", OPTIONS, replace=False, parallel=parallel
    )
    assert (skipped.result.skipped, skipped.result.unchanged) == (1, 11)
    updated = bulk.register(
        service, source(changed), "csv", OPTIONS, replace=True, parallel=parallel
    )
    assert updated.result.updated == 1
    assert service.reads.resolve("88.100.1/PUMP-000001").values[-1].data == b"in service"
    # The search index follows the update: the old status is no longer found.
    status = Condition("status", "=", "in stock")
    found = service.reads.search(SearchQuery(prefix="88.100.1", conditions=(status,)))
    assert "88.100.1/PUMP-000001" not in found
    assert len(found) == 11


@pytest.mark.parametrize(
    "bad_row",
    [
        "13,88.100.1/M,2026-02-30,in stock",  # not a date
        "13,88.100.1/M,2026-01-01,lost",  # not one of the enum's values
        "1,88.100.1/M,2026-01-01,in stock",  # a handle already in the file
        "13,88.100.1/M",  # too few cells
        '13,88.100.1/M,2026-01-01,"in stock',  # the file ends inside a quote
    ],
)
def test_one_bad_row_and_nothing_is_written(service: NodeService, bad_row: str) -> None:
    report = bulk.register(
        service, source(csv_file(12) + bad_row + "\n"), "csv", OPTIONS, replace=False
    )
    assert not report.written
    assert report.rejected_count == 1
    assert report.rejected[0].line == 14
    assert service.reads.count("88.100.1") == 0
    skipping = bulk.register(
        service,
        source(csv_file(12) + bad_row + "\n"),
        "csv",
        OPTIONS,
        replace=False,
        skip_invalid=True,
    )
    assert skipping.written
    assert service.reads.count("88.100.1") == 12


def test_a_crashed_registration_resumes_without_duplicates_or_gaps(
    service: NodeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BulkWrites, "BATCH", 10)
    text = csv_file(35)
    batches = 0

    def crash_after_two(stage: str) -> Any:
        def advance(n: int) -> None:
            nonlocal batches
            if stage == "writing":
                batches += 1
                if batches == 2:
                    raise KeyboardInterrupt  # killed mid-way: two batches committed

        return advance

    with pytest.raises(KeyboardInterrupt):
        bulk.register(
            service, source(text), "csv", OPTIONS, replace=False, progress=crash_after_two
        )
    assert service.reads.count("88.100.1") == 20
    resumed = bulk.register(service, source(text), "csv", OPTIONS, replace=False)
    assert (resumed.result.unchanged, resumed.result.created) == (20, 15)
    handles = list(service.reads.export_records("88.100.1"))
    assert [r.handle for r in handles] == [f"88.100.1/PUMP-{n:06d}" for n in range(1, 36)]


SECRET = "bulk-s3cret"
OWNER = ValueReference("88.100.1/OWNER", 300)


def test_bulk_over_http(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    add_secret_admin(node, OWNER, SECRET)
    node.close()
    auth = (f"300%3A{OWNER.handle}", SECRET)
    params = {"template": "serial-item", "prefix": "88.100.1", "mint": "PUMP-{serial:06d}"}
    csv = {"Content-Type": "text/csv"}
    with running(Config(data_dir=tmp_path, handle_port=0, http_port=0)) as server:
        url = server.http + "/api/bulk"
        assert httpx.post(url, params=params, content=csv_file(3), headers=csv).status_code == 401
        bad = httpx.post(url, params=params, content=csv_file(3) + "4,x\n", headers=csv, auth=auth)
        assert bad.status_code == 400
        assert bad.json()["rejected"] == [{"line": 5, "reason": "2 cells where the header has 4"}]
        assert httpx.get(server.http + "/api/handles/88.100.1/PUMP-000001").status_code == 404
        good = httpx.post(url, params=params, content=csv_file(3), headers=csv, auth=auth)
        assert good.status_code == 200, good.text
        assert good.json()["created"] == 3
        assert httpx.get(server.http + "/api/handles/88.100.1/PUMP-000003").status_code == 200
        # Audited, as every write by a remote caller.
        history = httpx.get(server.http + "/api/history/88.100.1/PUMP-000002", auth=auth).json()
        assert history["versions"][0]["operation"] == "bulk"
        foreign = httpx.post(
            url, params=params | {"prefix": "88.200"}, content=csv_file(1), headers=csv, auth=auth
        )
        # A prefix not homed here stops the whole registration in its checking pass.
        assert foreign.status_code == 400
        assert "prefix 88.200 is not homed" in foreign.json()["message"]


def test_a_caller_registers_only_where_the_prefix_admins_allow(service: NodeService) -> None:
    from idnode.errors import InsufficientPermissions
    from idnode.service import Caller

    stranger = Caller(ValueReference("88.100.1/STRANGER", 300))
    with pytest.raises(InsufficientPermissions, match=r"register handles under 88\.100\.1"):
        bulk.register(service, source(csv_file(3)), "csv", OPTIONS, replace=False, caller=stranger)
    assert service.reads.count("88.100.1") == 0


def test_a_bulk_registration_over_http_does_not_stop_its_worker_answering(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path)
    add_secret_admin(node, OWNER, SECRET)
    node.close()
    auth = (f"300%3A{OWNER.handle}", SECRET)
    params = {"template": "serial-item", "prefix": "88.100.1", "mint": "PUMP-{serial:06d}"}
    finished: list[str] = []
    with running(Config(data_dir=tmp_path, handle_port=0, http_port=0)) as server:

        async def post_and_ask() -> None:
            async with httpx.AsyncClient(base_url=server.http, timeout=120) as client:

                async def bulk_post() -> None:
                    answer = await client.post(
                        "/api/bulk",
                        params=params,
                        content=csv_file(30_000),
                        headers={"Content-Type": "text/csv"},
                        auth=auth,
                    )
                    assert answer.json()["created"] == 30_000
                    finished.append("bulk")

                async def health_while_it_runs() -> None:
                    await asyncio.sleep(0.3)  # the registration has started by then
                    assert (await client.get("/healthz")).status_code == 200
                    finished.append("healthz")

                await asyncio.gather(bulk_post(), health_while_it_runs())

        asyncio.run(post_and_ask())
    assert finished == ["healthz", "bulk"]


def test_a_row_too_large_for_a_handle_answer_is_rejected() -> None:
    huge = {"handle": "88.1/BIG", "values": [{"index": 1, "type": "NOTE", "data": "x" * 300_000}]}
    with pytest.raises(InvalidValue, match="a Handle answer carries at most"):
        builder().build(Row(1, huge))
