"""Writes through the Handle.Net JSON API, by hand with httpx and by pyhandle's client."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from idnode.client import HandleClient
from idnode.config import Config
from idnode.domain import AuditQuery, HandleRecord
from idnode.handle.codes import ResponseCode
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.node import open_node
from tests.conftest import RunningNode, make_node, running

SECRET = "http-s3cret"
USER = "300:88.100.1/WRITER"
LISTER = "300:88.100.1/READER"


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("http-writes")
    node = make_node(path)
    prefix_handle = node.storage.get("0.NA/88.100.1")
    assert prefix_handle is not None
    grants = (
        HandleValue(
            101,
            "HS_ADMIN",
            AdminValue(AdminPermission.ALL, ValueReference("88.100.1/WRITER", 300)).to_bytes(),
        ),
        HandleValue(
            102,
            "HS_ADMIN",
            AdminValue(
                AdminPermission.LIST_HANDLES, ValueReference("88.100.1/READER", 300)
            ).to_bytes(),
        ),
    )
    node.service.prefixes.put_record(
        HandleRecord(prefix_handle.handle, (*prefix_handle.values, *grants))
    )
    for name in ("WRITER", "READER"):
        node.service.prefixes.put_record(
            HandleRecord(
                f"88.100.1/{name}",
                (
                    HandleValue(
                        300,
                        "HS_SECKEY",
                        SECRET.encode(),
                        permissions=Permission.ADMIN_READ | Permission.ADMIN_WRITE,
                    ),
                ),
            )
        )
    node.close()
    return path


@pytest.fixture(scope="module")
def server(node_dir: Path) -> Iterator[RunningNode]:
    with running(Config(data_dir=node_dir, handle_port=0, http_port=0)) as node:
        yield node


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user.replace(':', '%3A', 1)}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def http(server: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


VALUES = {
    "values": [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://e.com/1"}},
        {"index": 2, "type": "EMAIL", "data": "ops@e.com"},
    ]
}


def test_put_creates_then_replaces_and_overwrite_false_refuses(http: httpx.Client) -> None:
    auth = basic(USER, SECRET)
    r = http.put("/api/handles/88.100.1/H1", json=VALUES, headers=auth)
    assert (r.status_code, r.json()) == (201, {"responseCode": 1, "handle": "88.100.1/H1"})
    r = http.put("/api/handles/88.100.1/H1?overwrite=false", json=VALUES, headers=auth)
    assert (r.status_code, r.json()["responseCode"]) == (409, 101)
    one = {"values": VALUES["values"][:1]}
    r = http.put("/api/handles/88.100.1/H1", json=one, headers=auth)
    assert r.status_code == 200
    got = http.get("/api/handles/88.100.1/H1").json()
    assert [v["index"] for v in got["values"]] == [1]


def test_partial_update_and_delete_by_index(http: httpx.Client) -> None:
    auth = basic(USER, SECRET)
    http.put("/api/handles/88.100.1/H2", json=VALUES, headers=auth)
    change = {
        "values": [
            {"index": 2, "type": "EMAIL", "data": "new@e.com"},
            {"index": 3, "type": "X", "data": "3"},
        ]
    }
    r = http.put("/api/handles/88.100.1/H2?index=2&index=3", json=change, headers=auth)
    assert r.status_code == 200
    got = {
        v["index"]: v["data"]["value"]
        for v in http.get("/api/handles/88.100.1/H2").json()["values"]
    }
    assert got == {1: "https://e.com/1", 2: "new@e.com", 3: "3"}
    r = http.delete("/api/handles/88.100.1/H2?index=1&index=3", headers=auth)
    assert r.status_code == 200
    got_after = http.get("/api/handles/88.100.1/H2").json()["values"]
    assert [v["index"] for v in got_after] == [2]
    r = http.delete("/api/handles/88.100.1/H2?index=9", headers=auth)
    assert r.json()["responseCode"] == 200
    assert http.delete("/api/handles/88.100.1/H2", headers=auth).status_code == 200
    assert http.get("/api/handles/88.100.1/H2").status_code == 404


def test_mint_new_suffix(http: httpx.Client) -> None:
    r = http.put(
        "/api/handles/88.100.1/B-?mintNewSuffix=true", json=VALUES, headers=basic(USER, SECRET)
    )
    assert r.status_code == 201
    made = r.json()["handle"]
    assert made.startswith("88.100.1/B-")
    assert http.get(f"/api/handles/{made}").status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, 402),
        (basic(USER, "wrong"), 403, 403),
        (basic("300:88.100.1/NOBODY", SECRET), 403, 404),
        ({"Authorization": "Basic !!!"}, 403, 403),
        ({"Authorization": "Bearer x"}, 401, 402),
        (basic("88.100.1/WRITER", SECRET), 403, 403),
        (basic(LISTER, SECRET), 403, 401),  # authenticated, lacks ADD_HANDLE
    ],
)
def test_bad_credentials_write_nothing(
    http: httpx.Client, headers: dict[str, str], status: int, code: int
) -> None:
    r = http.put("/api/handles/88.100.1/NOPE", json=VALUES, headers=headers)
    assert (r.status_code, r.json()["responseCode"]) == (status, code)
    assert r.headers["content-type"] == "application/problem+json"
    assert http.get("/api/handles/88.100.1/NOPE").status_code == 404


def test_bad_bodies_are_precise_errors(http: httpx.Client) -> None:
    auth = basic(USER, SECRET)
    for body in (b"not json", b'{"values": 3}', b'{"values": [{"type": "URL"}]}'):
        r = http.put("/api/handles/88.100.1/BAD", content=body, headers=auth)
        assert (r.status_code, r.json()["responseCode"]) == (400, 202)
    dup = {"values": [VALUES["values"][0], VALUES["values"][0]]}
    r = http.put("/api/handles/88.100.1/BAD", json=dup, headers=auth)
    assert r.json()["responseCode"] == 202
    r = http.put("/api/handles/99.9/BAD", json=VALUES, headers=auth)
    assert (r.status_code, r.json()["responseCode"]) == (400, 301)


def test_listing_pages(http: httpx.Client) -> None:
    auth = basic(USER, SECRET)
    for n in range(5):
        http.put(f"/api/handles/88.100.1/L{n}", json=VALUES, headers=auth)
    r = http.get("/api/handles?prefix=88.100.1&page=0&pageSize=2", headers=basic(LISTER, SECRET))
    body = r.json()
    assert r.status_code == 200
    assert body["handles"] == sorted(body["handles"])
    assert len(body["handles"]) == 2
    assert isinstance(body["totalCount"], str)
    whole = http.get("/api/handles?prefix=88.100.1", headers=basic(LISTER, SECRET)).json()
    assert len(whole["handles"]) == int(whole["totalCount"])
    assert {f"88.100.1/L{n}" for n in range(5)} <= set(whole["handles"])
    assert http.get("/api/handles?prefix=88.100.1").status_code == 401
    assert http.get("/api/handles", headers=basic(LISTER, SECRET)).status_code == 400


def test_http_writes_are_audited(http: httpx.Client, node_dir: Path) -> None:
    http.put("/api/handles/88.100.1/AUDITED", json=VALUES, headers=basic(USER, SECRET))
    node = open_node(Config(data_dir=node_dir))
    try:
        entries = node.service.writes.audit_log(AuditQuery(handle="88.100.1/AUDITED"))
    finally:
        node.close()
    assert [(e.operation, e.actor, e.origin) for e in entries] == [
        ("create", USER, "http 127.0.0.1")
    ]


def test_pyhandle_rest_client_creates_reads_modifies_and_deletes(server: RunningNode) -> None:
    """An unmodified client written for the Handle.Net server, end to end."""
    from pyhandle.handleclient import PyHandleClient

    client = PyHandleClient("rest").instantiate_with_username_and_password(
        server.http, USER, SECRET, HTTPS_verify=False
    )
    handle = "88.100.1/PYHANDLE-1"
    assert client.register_handle(handle, "https://e.com/first", checksum="abc") == handle
    assert client.get_value_from_handle(handle, "URL") == "https://e.com/first"
    assert client.get_value_from_handle(handle, "CHECKSUM") == "abc"
    client.modify_handle_value(handle, URL="https://e.com/second", COLOUR="blue")
    assert client.get_value_from_handle(handle, "URL") == "https://e.com/second"
    assert client.get_value_from_handle(handle, "COLOUR") == "blue"
    client.delete_handle_value(handle, "COLOUR")
    assert client.get_value_from_handle(handle, "COLOUR") is None
    record = client.retrieve_handle_record(handle)
    assert record is not None
    assert record["URL"] == "https://e.com/second"
    client.delete_handle(handle)
    assert client.retrieve_handle_record(handle) is None


@pytest.mark.parametrize("path", ["/api/handles/88.100.1/DEEP", "/api/templates/deep"])
def test_json_nested_too_deep_is_a_bad_request(http: httpx.Client, path: str) -> None:
    nested = b'{"values": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = http.put(path, content=nested, headers=basic(USER, SECRET))
    assert r.status_code == 400
    assert "nested too deep" in r.json()["detail"]


def test_a_record_too_large_for_a_handle_answer_is_refused(
    http: httpx.Client, server: RunningNode
) -> None:
    """Issue 20 item 5: what HTTP stores, the Handle protocol must be able to serve."""
    auth = basic(USER, SECRET)

    def note(index: int, size: int) -> dict[str, object]:
        return {"index": index, "type": "NOTE", "data": "x" * size}

    r = http.put("/api/handles/88.100.1/HUGE", json={"values": [note(1, 1_000_000)]}, headers=auth)
    assert r.status_code == 400
    assert "a Handle answer carries at most" in r.json()["detail"]
    assert http.get("/api/handles/88.100.1/HUGE").status_code == 404
    # Just under the limit: stored, and served over TCP (too large for UDP).
    body = {"values": [note(1, 200_000), note(2, 50_000)]}
    assert http.put("/api/handles/88.100.1/LARGE", json=body, headers=auth).status_code == 201
    reply = HandleClient("127.0.0.1", server.ports.handle, timeout=10).resolve("88.100.1/LARGE")
    assert reply.response_code == ResponseCode.SUCCESS
    # Growing it past the limit value by value is refused too, and leaves it as it was.
    r = http.put(
        "/api/handles/88.100.1/LARGE?index=3", json={"values": [note(3, 20_000)]}, headers=auth
    )
    assert r.status_code == 400
    assert len(http.get("/api/handles/88.100.1/LARGE").json()["values"]) == 2
