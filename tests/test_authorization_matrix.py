"""Who sees what, on every read path (issue 20): one record holding a value of each
kind, read by each kind of caller through UDP, TCP, the HTTP API, the proxy pages,
search, history and its diffs, GS1 resolution, /metrics and error answers.

| value (permissions)         | anonymous | plain user | partner (READ_VALUE) | administrator |
|-----------------------------|-----------|------------|----------------------|---------------|
| URL, public (1110)          | yes       | yes        | yes                  | yes           |
| BATCH, partner (1100)       | no        | no         | yes                  | yes           |
| CUSTOMER, owner (0100)      | no        | no         | no                   | yes           |
| HS_SECKEY, admin read (1100)| no        | no         | yes                  | yes           |

(A secret key is shown to READ_VALUE holders as any 1100 value is, as Handle.Net
does; keep secret keys in identity handles, not in records others may read.) The
proxy pages, search, GS1 resolution and /metrics answer everyone with public data
only, whoever asks.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from idnode.client import Credentials, HandleClient
from idnode.config import Config
from idnode.domain import HandleRecord
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import ResolutionRequest, ResolutionResponse
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.service import Caller
from tests.conftest import RunningNode, add_secret_admin, make_node, running

HANDLE = "88.100.1/MATRIX"
GTIN_HANDLE = "88.100.1/01/09506000134352"
SECRET = "matrix-s3cret"
ADMIN = ValueReference("88.100.1/M-ADMIN", 300)
PARTNER = ValueReference("88.100.1/M-PARTNER", 300)
PLAIN = ValueReference("88.100.1/M-PLAIN", 300)

PARTNER_LEVEL = Permission.ADMIN_READ | Permission.ADMIN_WRITE
TEXTS = {
    "URL": "https://public.example/matrix",
    "BATCH": "partner-batch-7",
    "CUSTOMER": "owner-customer-acme",
    "HS_SECKEY": "secret-key-material",
}
KINDS = set(TEXTS)
SEES = {
    "anonymous": {"URL"},
    "plain": {"URL"},
    "partner": {"URL", "BATCH", "HS_SECKEY"},
    "admin": KINDS,
}
WHO = {"plain": PLAIN, "partner": PARTNER, "admin": ADMIN}


def _values(customer: str) -> tuple[HandleValue, ...]:
    return (
        HandleValue(1, "URL", TEXTS["URL"].encode()),
        HandleValue(2, "BATCH", TEXTS["BATCH"].encode(), permissions=PARTNER_LEVEL),
        HandleValue(3, "CUSTOMER", customer.encode(), permissions=Permission.ADMIN_WRITE),
        HandleValue(4, "HS_SECKEY", TEXTS["HS_SECKEY"].encode(), permissions=PARTNER_LEVEL),
        HandleValue(200, "HS_ADMIN", AdminValue(AdminPermission.READ_VALUE, PARTNER).to_bytes()),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    path = tmp_path_factory.mktemp("matrix")
    node = make_node(path)
    add_secret_admin(node, ADMIN, SECRET)
    secret = HandleValue(300, "HS_SECKEY", SECRET.encode(), permissions=PARTNER_LEVEL)
    for who in (PARTNER, PLAIN):
        node.service.prefixes.put_record(HandleRecord(who.handle, (secret,)))
    admin = Caller(ADMIN, "test")
    writes = node.service.writes
    writes.create_handle(HANDLE, _values("owner-customer-before"), admin)
    writes.modify_values(HANDLE, [_values(TEXTS["CUSTOMER"])[2]], admin)
    writes.create_handle(
        GTIN_HANDLE,
        (
            HandleValue(1, "URL", b"https://public.example/gtin"),
            HandleValue(
                2, "GS1.recallStatus", b"https://partner.example/recall", permissions=PARTNER_LEVEL
            ),
            HandleValue(
                200, "HS_ADMIN", AdminValue(AdminPermission.READ_VALUE, PARTNER).to_bytes()
            ),
        ),
        admin,
    )
    node.close()
    config = Config(data_dir=path, handle_port=0, http_port=0, gs1_prefix="88.100.1")
    with running(config) as served:
        yield served


def _auth(who: str) -> dict[str, str]:
    if who == "anonymous":
        return {}
    identity = WHO[who]
    user = f"{identity.index}%3A{identity.handle}"
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{SECRET}".encode()).decode()}


def _kinds(types: set[str]) -> set[str]:
    return types & KINDS


@pytest.fixture
def http(server: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


def test_udp_answers_the_public_values(server: RunningNode) -> None:
    reply = HandleClient("127.0.0.1", server.ports.handle, timeout=10).resolve(
        HANDLE, transport="udp"
    )
    assert isinstance(reply.body, ResolutionResponse)
    assert _kinds({v.type for v in reply.body.values}) == SEES["anonymous"]


@pytest.mark.parametrize("who", ["anonymous", "plain", "partner", "admin"])
def test_tcp_in_a_session(server: RunningNode, who: str) -> None:
    client = HandleClient("127.0.0.1", server.ports.handle, timeout=10)
    if who == "anonymous":
        reply = client.resolve(HANDLE, transport="tcp")
    else:
        client.open_session()
        credentials = Credentials(WHO[who], secret=SECRET.encode())
        reply = client.authenticated(OpCode.RESOLUTION, ResolutionRequest(HANDLE), credentials)[-1]
    assert reply.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, ResolutionResponse)
    assert _kinds({v.type for v in reply.body.values}) == SEES[who]


@pytest.mark.parametrize("who", ["anonymous", "plain", "partner", "admin"])
def test_http_api_records(http: httpx.Client, who: str) -> None:
    r = http.get(f"/api/handles/{HANDLE}", headers=_auth(who))
    assert r.status_code == 200
    assert _kinds({v["type"] for v in r.json()["values"]}) == SEES[who]
    # Asking for a value one may not see by its index tells nothing of it.
    r = http.get(f"/api/handles/{HANDLE}", params={"index": 3}, headers=_auth(who))
    if "CUSTOMER" not in SEES[who]:
        assert TEXTS["CUSTOMER"] not in r.text


@pytest.mark.parametrize("who", ["anonymous", "plain", "partner", "admin"])
def test_public_only_paths_show_everyone_public_data(http: httpx.Client, who: str) -> None:
    headers = _auth(who)
    page = http.get(f"/{HANDLE}?noredirect", headers=headers).text
    assert TEXTS["URL"] in page
    assert not any(TEXTS[k] in page for k in ("BATCH", "CUSTOMER", "HS_SECKEY"))
    found = http.get("/api/search", params={"q": TEXTS["BATCH"]}, headers=headers).json()
    assert found["handles"] == []
    found = http.get("/api/search", params={"where": f"BATCH={TEXTS['BATCH']}"}).json()
    assert found["handles"] == []
    linkset = http.get("/01/09506000134352", params={"linkType": "linkset"}, headers=headers)
    assert "https://public.example/gtin" in linkset.text
    assert "partner.example" not in linkset.text
    metrics = http.get("/metrics", headers=headers).text
    assert not any(text in metrics for text in TEXTS.values())


@pytest.mark.parametrize("who", ["anonymous", "plain", "partner", "admin"])
def test_history_and_its_diffs(http: httpx.Client, who: str) -> None:
    history = f"/api/history/{HANDLE}"
    headers = _auth(who)
    listed = http.get(history, headers=headers)
    if who == "anonymous":
        assert listed.status_code == 401
        return
    if who == "plain":
        assert listed.status_code == 403
        assert not any(text in listed.text for text in TEXTS.values())
        return
    assert listed.status_code == 200
    for number in (1, 2):
        version = http.get(history, params={"version": number}, headers=headers).json()
        assert _kinds({v["type"] for v in version["values"]}) == SEES[who]
    changes = http.get(history, params={"from": 1, "to": 2}, headers=headers).json()["changes"]
    changed = {c["after"]["type"] for c in changes if c["after"]}
    assert changed == ({"CUSTOMER"} if who == "admin" else set())
    assert ("owner-customer-before" in str(changes)) == (who == "admin")
