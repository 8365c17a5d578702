"""The service layer's resolution rules, on real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.domain import HandleRecord
from idnode.errors import (
    AuthenticationNeeded,
    HandleNotFound,
    InvalidHandle,
    NotResponsible,
    ValuesNotFound,
)
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import SiteInfo
from idnode.service import Caller, NodeService
from idnode.service.core import ServiceCore
from idnode.storage import SQLiteStorage
from tests.clock import Clock

NODE_ADMIN = ValueReference("0.NA/88.100.1", 300)
PRIVATE = Permission.ADMIN_READ | Permission.ADMIN_WRITE
RECORD = HandleRecord(
    "88.100.1/Pump-1",
    (
        HandleValue(1, "URL", b"https://example.com/p1"),
        HandleValue(2, "EMAIL", b"ops@example.com"),
        HandleValue(3, "HS_SITE.PREFIX", b"x"),
        HandleValue(4, "HS_SITE", b"y"),
        HandleValue(50, "CUSTOMER", b"ACME", permissions=PRIVATE),
    ),
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> Iterator[NodeService]:
    storage = SQLiteStorage(tmp_path / "s.db")
    svc = NodeService(storage, SiteInfo(servers=()), clock=clock, admins=(NODE_ADMIN,))
    svc.prefixes.home_prefix("88.100.1")
    svc.prefixes.put_record(RECORD)
    yield svc
    storage.close()


def indexes(record: HandleRecord) -> list[int]:
    return [v.index for v in record.values]


def test_anonymous_callers_do_not_see_private_values(service: NodeService) -> None:
    assert indexes(service.reads.resolve("88.100.1/Pump-1")) == [1, 2, 3, 4]


def test_callers_with_read_permission_see_all_values_when_they_ask(
    service: NodeService,
) -> None:
    admin = Caller(NODE_ADMIN)
    got = service.reads.resolve("88.100.1/Pump-1", caller=admin, public_only=False)
    assert indexes(got) == [1, 2, 3, 4, 50]
    assert indexes(service.reads.resolve("88.100.1/Pump-1", caller=admin)) == [1, 2, 3, 4]


def test_authenticated_callers_without_read_permission_see_public_values(
    service: NodeService,
) -> None:
    stranger = Caller(ValueReference("88.100.1/STRANGER", 300))
    got = service.reads.resolve("88.100.1/Pump-1", caller=stranger, public_only=False)
    assert indexes(got) == [1, 2, 3, 4]


def test_anonymous_callers_asking_for_private_values_must_authenticate(
    service: NodeService,
) -> None:
    with pytest.raises(AuthenticationNeeded):
        service.reads.resolve("88.100.1/Pump-1", public_only=False)
    # Only when the answer would hold a private value: index 1 is public.
    assert indexes(service.reads.resolve("88.100.1/Pump-1", indexes=(1,), public_only=False)) == [1]


def test_case_insensitive_in_ascii(service: NodeService) -> None:
    got = service.reads.resolve("88.100.1/PUMP-1")
    assert got.handle == "88.100.1/Pump-1"


def test_index_and_type_filters_are_a_union(service: NodeService) -> None:
    assert indexes(service.reads.resolve("88.100.1/Pump-1", indexes=[2])) == [2]
    assert indexes(service.reads.resolve("88.100.1/Pump-1", types=["url"])) == [1]
    assert indexes(service.reads.resolve("88.100.1/Pump-1", indexes=[2], types=["URL"])) == [1, 2]


def test_type_with_trailing_dot_selects_subtypes(service: NodeService) -> None:
    assert indexes(service.reads.resolve("88.100.1/Pump-1", types=["HS_SITE."])) == [3, 4]
    assert indexes(service.reads.resolve("88.100.1/Pump-1", types=["HS_SITE"])) == [4]


def test_filter_matching_nothing_is_values_not_found(service: NodeService) -> None:
    with pytest.raises(ValuesNotFound):
        service.reads.resolve("88.100.1/Pump-1", indexes=[999])
    with pytest.raises(ValuesNotFound):  # private values are not found for anonymous callers
        service.reads.resolve("88.100.1/Pump-1", indexes=[50])


def test_unknown_handle_under_homed_prefix(service: NodeService) -> None:
    with pytest.raises(HandleNotFound):
        service.reads.resolve("88.100.1/NOPE")


def test_prefix_not_homed_is_not_responsible(service: NodeService) -> None:
    with pytest.raises(NotResponsible):
        service.reads.resolve("88.100.2/Pump-1")
    with pytest.raises(NotResponsible):
        service.reads.resolve("88.100/Pump-1")  # a parent prefix is a different prefix


@pytest.mark.parametrize("bad", ["no-slash", "/suffix-only", "prefix-only/", "88/\x00x"])
def test_malformed_handles(service: NodeService, bad: str) -> None:
    with pytest.raises(InvalidHandle):
        service.reads.resolve(bad)


def test_prefix_handle_is_served_with_its_prefix(service: NodeService) -> None:
    service.prefixes.put_record(HandleRecord("0.NA/88.100.1", (HandleValue(1, "HS_SITE", b"s"),)))
    assert service.reads.resolve("0.na/88.100.1").handle == "0.NA/88.100.1"
    with pytest.raises(NotResponsible):
        service.reads.resolve("0.NA/88.999")


def test_prefix_homed_by_another_process_is_seen_after_refresh(
    service: NodeService, tmp_path: Path, clock: Clock
) -> None:
    service.reads.resolve("88.100.1/Pump-1")  # reads the homed set at time 0
    other = SQLiteStorage(tmp_path / "s.db")
    other.home_prefix("88.200")
    other.put(HandleRecord("88.200/X", (HandleValue(1, "URL", b"u"),)))
    with pytest.raises(NotResponsible):
        service.reads.resolve("88.200/X")  # the cached set is still fresh
    clock.now += ServiceCore.HOMED_REFRESH_SECONDS + 1
    assert service.reads.resolve("88.200/X").handle == "88.200/X"
    other.close()
