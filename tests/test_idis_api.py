"""The national system's HTTP APIs (SNMS and IDHub), driven as their documentation
shows, on a node served on real sockets: the effects are checked where they land
(over the Handle protocol, in our own template API, in the audit log)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from idnode import sm2
from idnode.auth.passwords import date_digest
from idnode.client import Credentials, HandleClient
from idnode.config import Config
from idnode.domain import HandleRecord
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import ResolutionRequest, ResolutionResponse
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.keys import handle_public_key
from tests.conftest import RunningNode, add_secret_admin, make_node, running

PASSWORD = "correct horse 42"
ADMIN = ValueReference("88.100.1/ADMIN", 300)
CHINA = timezone(timedelta(hours=8))
APP = "88.100.1/App_erp"  # an application identity with every right on 88.100.1
PARTNER = "88.100.1/App_partner"  # an identity with no rights of its own
OTHER = "88.100.1/App_other"
SM2_APP = "88.100.1/App_sm2"

KEYS: dict[str, rsa.RSAPrivateKey] = {
    name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for name in (APP, PARTNER, OTHER)
}
SM2_KEY = sm2.generate()


def _key_record(handle: str, data: bytes) -> HandleRecord:
    return HandleRecord(handle, (HandleValue(300, "HS_PUBKEY", data),))


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idis-api")
    node = make_node(path)
    add_secret_admin(node, ADMIN, "unused-secret")
    prefixes = node.service.prefixes
    for name, key in KEYS.items():
        prefixes.put_record(_key_record(name, handle_public_key(key).to_bytes()))
    prefixes.put_record(_key_record(SM2_APP, SM2_KEY.public_key().to_bytes()))
    prefix = node.storage.get("0.NA/88.100.1")
    assert prefix is not None
    grants = tuple(
        HandleValue(110 + n, "HS_ADMIN", AdminValue(AdminPermission.ALL, who).to_bytes())
        for n, who in enumerate((ValueReference(APP, 300), ValueReference(SM2_APP, 300)))
    )
    prefixes.put_record(HandleRecord(prefix.handle, (*prefix.values, *grants)))
    accounts = node.service.accounts
    accounts.add("erp", ADMIN, PASSWORD, date_digest=True)
    accounts.add("plain", ADMIN, PASSWORD)
    accounts.add("nobody", ValueReference(PARTNER, 300), PASSWORD)
    node.close()
    return path


@pytest.fixture(scope="module")
def server(node_dir: Path) -> Iterator[RunningNode]:
    with running(Config(data_dir=node_dir, handle_port=0, http_port=0)) as node:
        yield node


@pytest.fixture
def http(server: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=20) as client:
        yield client


def snms(response: httpx.Response, status: int = 1) -> Any:
    """The ``data`` of an SNMS answer whose ``status`` is ``status``."""
    assert response.status_code == 200, response.text
    doc = response.json()
    assert set(doc) == {"message", "status", "data"}, doc
    assert doc["status"] == status, doc
    return doc["data"] if status == 1 else doc["message"]


def idhub(response: httpx.Response, code: int = 1) -> Any:
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["code"] == code, doc
    return doc.get("data") if code == 1 else doc["message"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def snms_token(server: RunningNode) -> str:
    with httpx.Client(base_url=server.http, timeout=20) as client:
        doc = {"username": "erp", "password": PASSWORD}
        token = snms(client.post("/identity/token", json=doc))["token"]
    assert isinstance(token, str)
    return token


def app_token(http: httpx.Client, handle: str) -> str:
    nonce = idhub(http.get("/api/v1/doip/public/challenge", params={"handle": handle}))
    assert isinstance(nonce, str)
    signature = KEYS[handle].sign(nonce.encode(), padding.PKCS1v15(), hashes.SHA256())
    body = {"handle": handle, "signature": base64.b64encode(signature).decode()}
    token = idhub(http.post("/api/v1/doip/public/verify-response", json=body))["token"]
    assert isinstance(token, str)
    return token


def resolve(server: RunningNode, handle: str) -> dict[str, bytes]:
    reply = HandleClient("127.0.0.1", server.ports.handle, timeout=10).resolve(handle)
    assert reply.response_code == ResponseCode.SUCCESS, reply
    assert isinstance(reply.body, ResolutionResponse)
    return {v.type: v.data for v in reply.body.values}


def unique(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:8]}"


# -- SNMS logins -------------------------------------------------------------------------


def test_snms_password_login_gives_a_token_and_a_wrong_one_is_refused(
    http: httpx.Client,
) -> None:
    token = snms(http.post("/identity/token", json={"username": "erp", "password": PASSWORD}))
    assert len(token["token"]) >= 40
    for doc in (
        {"username": "erp", "password": "wrong password"},
        {"username": "no-such-user", "password": PASSWORD},
    ):
        assert "wrong user name or password" in snms(http.post("/identity/token", json=doc), -2)
    assert "required" in snms(http.post("/identity/token", json={"username": "erp"}), -2)


def test_snms_digest_login_takes_todays_digest_only(http: httpx.Client) -> None:
    today = datetime.now(CHINA).date()
    good = {"username": "erp", "password": date_digest(PASSWORD, today.isoformat())}
    assert snms(http.post("/identity/token/v1", json=good))["token"]
    # The documented example: sha256(sha256("123456") + "2019-08-15").
    assert date_digest("123456", "2019-08-15") == (
        "58e2c92c46485fdbc35fdcd0814d6c0f000cad5aa156848ca5edaf29406b7661"
    )
    # Replayed two days later: refused.
    old = (today - timedelta(days=2)).isoformat()
    replayed = {"username": "erp", "password": date_digest(PASSWORD, old)}
    assert "digest" in snms(http.post("/identity/token/v1", json=replayed), -2)
    # An account made without --date-digest keeps no SHA-256: refused.
    plain = {"username": "plain", "password": date_digest(PASSWORD, today.isoformat())}
    snms(http.post("/identity/token/v1", json=plain), -2)


def test_snms_requests_need_a_valid_token(http: httpx.Client) -> None:
    detail = "/identityv2/data/detail?handle=88.100.1/ADMIN"
    assert "log in" in snms(http.get(detail), -1)
    assert "not one this node issued" in snms(http.get(detail, headers=bearer("forged")), -1)
    # A JWT of the same shape, signed with another key, is not this node's.
    claims = {"sub": f"300:{ADMIN.handle}", "iat": 1, "exp": 4_000_000_000, "jti": "x"}
    forged = jwt.encode(claims, b"another node's secret, 32 bytes!", algorithm="HS256")
    assert "not one this node issued" in snms(http.get(detail, headers=bearer(forged)), -1)


def test_tokens_are_jwts_the_node_signed(http: httpx.Client) -> None:
    token = snms(http.post("/identity/token", json={"username": "erp", "password": PASSWORD}))
    header = jwt.get_unverified_header(token["token"])
    claims = jwt.decode(token["token"], options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert claims["sub"] == f"{ADMIN.index}:{ADMIN.handle}"
    assert claims["exp"] - claims["iat"] == 86_400


# -- SNMS templates and records ----------------------------------------------------------


def _snms_template(prefix: str, version: str, *, v5: bool) -> dict[str, Any]:
    """The documented example, for our prefix."""
    items: list[dict[str, Any]] = [
        {
            "name": "名称",
            "idType": "name",
            "metadata": {"type": "string", "minLength": 1, "maxLength": 20},
            "required": True,
        },
        {
            "name": "网址",
            "idType": "URL",
            "metadata": {"type": "string", "minLength": 1, "maxLength": 200},
            "required": False,
        },
    ]
    if v5:
        items[0]["idIndex"] = "2000"  # a string, as the documentation's example sends it
        items[1]["idIndex"] = 2001
    return {
        "prefix": prefix,
        "version": version,
        "industryCategory": "A",
        "industrySpecific": "01",
        "industryTrade": "011",
        "industrySubclass": "0111",
        "type": 1,
        "description": "测试模板",
        "items": items,
    }


def test_snms_templates_v5_and_v3(http: httpx.Client, snms_token: str) -> None:
    auth = bearer(snms_token)
    version = unique("1.0.")
    body = _snms_template("88.100.1", version, v5=True)
    assert snms(http.post("/snms/api/v5/template", json=body, headers=auth)) is True
    assert "exists" in snms(http.post("/snms/api/v5/template", json=body, headers=auth), -2)
    query = {"prefix": "88.100.1", "version": version}
    got = snms(http.get("/snms/api/v5/template", params=query, headers=auth))
    assert got["version"] == version
    assert got["prefix"] == "88.100.1"
    assert got["handle"] == f"88.100.1/META_{version}"
    assert [(i["idType"], i["idIndex"], i["state"]) for i in got["items"]] == [
        ("name", 2000, 1),
        ("URL", 2001, 1),
    ]
    assert got["items"][0]["metadata"] == {"type": "string", "minLength": 1, "maxLength": 20}
    assert got["industrySubclass"] == "0111"
    assert got["description"] == "测试模板"
    # v5 modify: disable an item, add one without idIndex (numbered after the others).
    change = _snms_template("88.100.1", version, v5=True)
    change["items"] = [
        {
            "name": "网址",
            "idType": "URL",
            "idIndex": 2001,
            "state": 0,
            "metadata": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        {
            "name": "颜色",
            "idType": "colour",
            "metadata": {"type": "string", "minLength": 1, "maxLength": 10},
        },
    ]
    assert snms(http.put("/snms/api/v5/template", json=change, headers=auth)) is True
    got = snms(http.get("/snms/api/v5/template", params=query, headers=auth))
    assert [(i["idType"], i["idIndex"], i["state"]) for i in got["items"]] == [
        ("name", 2000, 1),
        ("URL", 2001, 0),
        ("colour", 2002, 1),
    ]
    # The same template in our own API, and its identifier resolves over the protocol.
    names = [t["name"] for t in http.get("/api/templates").json()["templates"]]
    assert f"88.100.1/META_{version}" in names
    # v3 reads it without the v5 members; the wrong case of metadata.type is refused.
    v3 = snms(http.get("/snms/api/v3/template", params=query, headers=auth))
    assert "idIndex" not in v3["items"][0]
    assert "handle" not in v3
    bad = _snms_template("88.100.1", unique("v3."), v5=False)
    bad["items"][0]["metadata"]["type"] = "String"
    assert "lower case" in snms(http.post("/snms/api/v3/template", json=bad, headers=auth), -2)
    gone = {"prefix": "88.100.1", "version": version}
    assert snms(http.request("DELETE", "/snms/api/v5/template", json=gone, headers=auth))
    assert "no template" in snms(http.get("/snms/api/v5/template", params=query, headers=auth), -2)


def test_snms_v3_template_numbers_items_from_2000(http: httpx.Client, snms_token: str) -> None:
    version = unique("v3.")
    body = _snms_template("88.100.1", version, v5=False)
    assert snms(http.post("/snms/api/v3/template", json=body, headers=bearer(snms_token)))
    query = {"prefix": "88.100.1", "version": version}
    got = snms(http.get("/snms/api/v5/template", params=query, headers=bearer(snms_token)))
    assert [i["idIndex"] for i in got["items"]] == [2000, 2001]
    gone = http.request("DELETE", "/snms/api/v3/template", json=query, headers=bearer(snms_token))
    assert snms(gone) is True
    assert "no template" in snms(
        http.get("/snms/api/v3/template", params=query, headers=bearer(snms_token)), -2
    )


def test_a_record_names_a_template_version(http: httpx.Client, snms_token: str) -> None:
    """``templateVersion`` may be NAME@VERSION: the record is made from that version."""
    auth = bearer(snms_token)
    version = unique("ver.")
    snms(
        http.post(
            "/snms/api/v5/template", json=_snms_template("88.100.1", version, v5=True), headers=auth
        )
    )
    change = _snms_template("88.100.1", version, v5=True)
    change["items"] = [
        {
            "name": "颜色",
            "idType": "colour",
            "metadata": {"type": "string", "minLength": 1, "maxLength": 10},
        }
    ]
    snms(http.put("/snms/api/v5/template", json=change, headers=auth))
    handle = unique("88.100.1/v")
    record = {
        "handle": handle,
        "templateVersion": f"{version}@1",
        "value": [_value(2000, "name", "first")],
    }
    assert snms(http.post("/identityv2/data", json=record, headers=auth)) is True
    detail = snms(http.get("/identityv2/data/detail", params={"handle": handle}, headers=auth))
    assert {v["index"]: v["data"]["value"] for v in detail["value"]}[1001] == version
    made = http.get(f"/api/handles/{handle}").json()["values"]
    assert made[0]["data"]["value"] == f"88.100.1/META_{version}@1"
    colour = {**record, "handle": unique("88.100.1/v"), "value": [_value(2002, "colour", "red")]}
    assert "index 2002 is not in the template" in snms(
        http.post("/identityv2/data", json=colour, headers=auth), -2
    )
    colour["templateVersion"] = version  # the latest, version 2, has it
    colour["value"] = [_value(2002, "colour", "red"), _value(2000, "name", "second")]
    assert snms(http.post("/identityv2/data", json=colour, headers=auth)) is True


def _value(index: int, kind: str, text: str) -> dict[str, Any]:
    return {"data": {"format": "string", "value": text}, "auth": "", "index": index, "type": kind}


def test_snms_record_lifecycle(http: httpx.Client, snms_token: str, server: RunningNode) -> None:
    auth = bearer(snms_token)
    version = unique("rec.")
    snms(
        http.post(
            "/snms/api/v5/template", json=_snms_template("88.100.1", version, v5=True), headers=auth
        )
    )
    handle = unique("88.100.1/xx")
    record = {
        "handle": handle,
        "templateVersion": version,
        "value": [_value(2000, "name", "小型机械01"), _value(2001, "URL", "https://e.cn/1")],
    }
    assert snms(http.post("/identityv2/data", json=record, headers=auth)) is True
    # It resolves over UDP, values typed as the template says.
    seen = resolve(server, handle)
    assert seen["name"] == "小型机械01".encode()
    assert seen["URL"] == b"https://e.cn/1"
    detail = snms(http.get("/identityv2/data/detail", params={"handle": handle}, headers=auth))
    assert detail["handle"] == handle
    assert detail["prefix"] == "88.100.1"
    assert detail["templateVersion"] == version
    by_index = {v["index"]: v for v in detail["value"]}
    assert by_index[1001]["type"] == "TEMPLATE"
    assert by_index[1001]["data"] == {"format": "string", "value": version}
    assert by_index[2000]["data"]["value"] == "小型机械01"
    # Update: the values given change, the others stay.
    change = {
        "handle": handle,
        "templateVersion": version,
        "value": [_value(2000, "name", "小型机械02")],
    }
    assert snms(http.put("/identityv2/data", json=change, headers=auth)) is True
    seen = resolve(server, handle)
    assert seen["name"] == "小型机械02".encode()
    assert seen["URL"] == b"https://e.cn/1"
    # The template's rules hold: an unknown index, a value over its maxLength.
    wrong = {**record, "handle": unique("88.100.1/xx"), "value": [_value(1000, "x", "y")]}
    assert "index 1000 is not in the template" in snms(
        http.post("/identityv2/data", json=wrong, headers=auth), -2
    )
    long = {**record, "handle": unique("88.100.1/xx"), "value": [_value(2000, "name", "x" * 21)]}
    assert "at most 20 characters" in snms(
        http.post("/identityv2/data", json=long, headers=auth), -2
    )
    assert "exists" in snms(http.post("/identityv2/data", json=record, headers=auth), -2)
    # Delete; then it is gone everywhere.
    assert (
        snms(http.request("DELETE", "/identityv2/data", json={"handle": handle}, headers=auth))
        is True
    )
    reply = HandleClient("127.0.0.1", server.ports.handle, timeout=10).resolve(handle)
    assert reply.response_code == ResponseCode.HANDLE_NOT_FOUND
    assert "not found" in snms(
        http.request("DELETE", "/identityv2/data", json={"handle": handle}, headers=auth), -2
    )


def test_snms_batches_answer_per_record(http: httpx.Client, snms_token: str) -> None:
    auth = bearer(snms_token)
    version = unique("batch.")
    snms(
        http.post(
            "/snms/api/v5/template", json=_snms_template("88.100.1", version, v5=True), headers=auth
        )
    )
    first, second = unique("88.100.1/b"), unique("88.100.1/b")
    records = [
        {"handle": h, "templateVersion": version, "value": [_value(2000, "name", h[-4:])]}
        for h in (first, second, first)
    ]
    made = snms(http.post("/identityv2/data/batchCreate", json=records, headers=auth))
    assert [(r["handle"], r["msg"]) for r in made[:2]] == [(first, "success"), (second, "success")]
    assert made[2]["handle"] == first
    assert "exists" in made[2]["msg"]
    changed = [{**records[0], "value": [_value(2001, "URL", "https://e.cn/b")]}]
    done = snms(http.put("/identityv2/data/batchUpdate", json=changed, headers=auth))
    assert done == [{"handle": first, "msg": "success"}]
    gone = snms(
        http.request(
            "DELETE", "/identityv2/data/batchDelete", json=[first, second, first], headers=auth
        )
    )
    assert [(g["handle"], g["code"]) for g in gone] == [(first, 1), (second, 1), (first, -2)]
    too_many = [records[0]] * 2001
    assert "at most 2000" in snms(
        http.post("/identityv2/data/batchCreate", json=too_many, headers=auth), -2
    )


def test_snms_writes_need_the_identitys_permissions(http: httpx.Client) -> None:
    token = snms(http.post("/identity/token", json={"username": "nobody", "password": PASSWORD}))
    record = {
        "handle": unique("88.100.1/n"),
        "templateVersion": "serial-item",
        "value": [_value(2, "SERIAL", "S-1"), _value(3, "MODEL", "88.100.1/M")],
    }
    message = snms(http.post("/identityv2/data", json=record, headers=bearer(token["token"])), -3)
    assert "88.100.1" in message


# -- IDHub identities ------------------------------------------------------------------


def test_idhub_challenge_and_token_rsa(http: httpx.Client) -> None:
    nonce = idhub(http.get("/api/v1/doip/public/challenge", params={"handle": APP}))
    signature = KEYS[APP].sign(nonce.encode(), padding.PKCS1v15(), hashes.SHA256())
    body = {"handle": APP, "signature": base64.b64encode(signature).decode()}
    # The SDK sends GET with a JSON body; the documentation POST.
    token = idhub(http.request("GET", "/api/v1/doip/public/verify-response", json=body))
    assert token["token"]
    # The nonce is used up: the same answer again is refused.
    assert "no challenge" in idhub(http.post("/api/v1/doip/public/verify-response", json=body), 401)
    # Signed by another key: refused.
    nonce = idhub(http.get("/api/v1/doip/public/challenge", params={"handle": APP}))
    forged = KEYS[OTHER].sign(nonce.encode(), padding.PKCS1v15(), hashes.SHA256())
    forged_body = {"handle": APP, "signature": base64.b64encode(forged).decode()}
    assert "not by a key" in idhub(
        http.post("/api/v1/doip/public/verify-response", json=forged_body), 401
    )
    # A handle with no key here gets no nonce.
    idhub(http.get("/api/v1/doip/public/challenge", params={"handle": "88.100.1/NONE"}), 401)


def test_idhub_challenge_and_token_sm2(http: httpx.Client) -> None:
    nonce = idhub(http.get("/api/v1/doip/public/challenge", params={"handle": SM2_APP}))
    signature = SM2_KEY.sign(nonce.encode())
    body = {"handle": SM2_APP, "signature": base64.b64encode(signature).decode()}
    token = idhub(http.post("/api/v1/doip/public/verify-response", json=body))["token"]
    assert idhub(http.get("/api/v1/open/meta/classify-query", headers=bearer(token)))


# -- IDHub metadata templates and objects -------------------------------------------------


def _meta(handle: str) -> dict[str, Any]:
    """The documented meta/create example, for our prefix."""
    return {
        "classifyCode": "hxh",
        "metaHandle": handle,
        "metaName": "水泵",
        "metaCode": "pump",
        "standard": "",
        "metaDesc": "",
        "industryCategory": "M",
        "industrySpecific": "75",
        "industryTrade": "751",
        "industrySubclass": "7517",
        "metaItemCreateDTOS": [
            {
                "itemCode": "c1",
                "englishName": "en1",
                "chineseName": "名称",
                "required": 1,
                "uniqueField": 0,
                "inputNecessary": 1,
                "listItemNecessary": 0,
                "itemSchemaCreateDTO": {"minLength": 0, "maxLength": 40, "dataType": "1"},
            },
            {
                "itemCode": "c2",
                "englishName": "en2",
                "chineseName": "功率",
                "required": 0,
                "itemSchemaCreateDTO": {"dataType": "2", "numberRange": "[1,100]"},
            },
            {
                "itemCode": "c3",
                "englishName": "en3",
                "chineseName": "日期",
                "required": 0,
                "itemSchemaCreateDTO": {"dateFormat": "YYYY-MM-DD", "dataType": "3"},
            },
        ],
    }


def test_idhub_template_lifecycle(http: httpx.Client, server: RunningNode) -> None:
    auth = bearer(app_token(http, APP))
    name = unique("88.100.1/META_pump")
    made = idhub(http.post("/api/v1/open/meta/create", json=_meta(name), headers=auth))
    assert made["metaHandle"] == name
    info = idhub(http.get("/api/v1/open/meta/info", params={"metaHandle": name}, headers=auth))
    assert info["metaCode"] == "pump"
    assert info["metaState"] == 1
    assert [
        (i["itemIndex"], i["englishName"], i["itemSchemaVO"]["dataType"]) for i in info["itemVOS"]
    ] == [(2000, "en1", 1), (2001, "en2", 2), (2002, "en3", 3)]
    # The template is an identifier: it resolves over the protocol.
    assert b'"fields"' in resolve(server, name)["TEMPLATE.DEFINITION"]
    page = idhub(http.get("/api/v1/open/meta/page", params={"classifyCode": "hxh"}, headers=auth))
    assert name in [c["metaHandle"] for c in page["content"]]
    classes = idhub(http.get("/api/v1/open/meta/classify-query", headers=auth))
    assert "hxh" in [c["classifyCode"] for c in classes]
    basic = {k: v for k, v in _meta(name).items() if k != "metaItemCreateDTOS"}
    basic["metaName"] = "大水泵"
    idhub(http.put("/api/v1/open/meta/update-basic-info", json=basic, headers=auth))
    items = _meta(name)["metaItemCreateDTOS"] + [
        {
            "itemCode": "c4",
            "englishName": "en4",
            "chineseName": "颜色",
            "itemSchemaCreateDTO": {"dataType": 1},
        }
    ]
    update = {"metaHandle": name, "metaItemDTOS": items}
    idhub(http.put("/api/v1/open/meta/update-item", json=update, headers=auth))
    info = idhub(http.get("/api/v1/open/meta/info", params={"metaHandle": name}, headers=auth))
    assert info["metaName"] == "大水泵"
    assert [i["itemIndex"] for i in info["itemVOS"]] == [2000, 2001, 2002, 2003]
    # Items named as before keep their index, sent alone or not; a new one never
    # takes an index used before.
    only = {"metaHandle": name, "metaItemDTOS": [items[1], items[3]]}
    idhub(http.put("/api/v1/open/meta/update-item", json=only, headers=auth))
    info = idhub(http.get("/api/v1/open/meta/info", params={"metaHandle": name}, headers=auth))
    assert [(i["englishName"], i["itemIndex"]) for i in info["itemVOS"]] == [
        ("en2", 2001),
        ("en4", 2003),
    ]
    again = {"metaHandle": name, "metaItemDTOS": [items[0], items[1]]}
    idhub(http.put("/api/v1/open/meta/update-item", json=again, headers=auth))
    info = idhub(http.get("/api/v1/open/meta/info", params={"metaHandle": name}, headers=auth))
    assert [(i["englishName"], i["itemIndex"]) for i in info["itemVOS"]] == [
        ("en1", 2004),
        ("en2", 2001),
    ]
    # Our own template API reads it by its identifier.
    ours = http.get(f"/api/templates/{name}").json()
    assert ours["name"] == name
    assert [f["index"] for f in ours["fields"]] == [2004, 2001]
    # Withdrawn: no new records, the identifier is no longer served; a published one
    # cannot be deleted.
    withdraw = {"metaHandleList": [name, "88.100.1/META_none"], "opType": "withdraw"}
    results = idhub(http.put("/api/v1/open/meta/publish-or-withdraw", json=withdraw, headers=auth))
    assert [r["state"] for r in results] == ["success", "failed"]
    create = {"type": name, "attributes": {"content": {"en1": "P-1"}}}
    target = {"targetId": unique("88.100.1/P"), "operationId": "0.DOIP/Op.Create"}
    assert "withdrawn" in idhub(
        http.post("/api/v1/doip", params=target, json=create, headers=auth), 600
    )
    reply = HandleClient("127.0.0.1", server.ports.handle, timeout=10).resolve(name)
    assert reply.response_code == ResponseCode.HANDLE_NOT_FOUND
    publish = {"metaHandleList": [name], "opType": "publish"}
    idhub(http.put("/api/v1/open/meta/publish-or-withdraw", json=publish, headers=auth))
    delete = {"metaHandleList": name}
    doip_delete = {"targetId": name, "operationId": "0.DOIP/Op.Delete"}
    assert "withdraw it first" in idhub(
        http.post("/api/v1/doip", params=doip_delete, json={}, headers=auth), 601
    )
    assert "withdraw it first" in idhub(
        http.delete("/api/v1/open/meta/delete", params=delete, headers=auth), 606
    )
    idhub(
        http.put(
            "/api/v1/open/meta/publish-or-withdraw",
            json={**withdraw, "metaHandleList": [name]},
            headers=auth,
        )
    )
    idhub(http.delete("/api/v1/open/meta/delete", params=delete, headers=auth))
    idhub(http.get("/api/v1/open/meta/info", params={"metaHandle": name}, headers=auth), 604)


def test_idhub_objects_through_doip(http: httpx.Client, server: RunningNode) -> None:
    auth = bearer(app_token(http, APP))
    name = unique("88.100.1/META_obj")
    idhub(http.post("/api/v1/open/meta/create", json=_meta(name), headers=auth))
    handle = unique("88.100.1/PUMP-")

    def op(operation: str, body: Any = None, method: str = "POST", code: int = 1) -> Any:
        params = {"targetId": handle, "operationId": operation}
        return idhub(
            http.request(method, "/api/v1/doip", params=params, json=body, headers=auth), code
        )

    content = {"en1": "水泵 1", "en2": "22", "en3": "2024-06-22"}
    made = op("0.DOIP/Op.Create", {"type": name, "attributes": {"content": content}})
    assert made["type"] == name
    seen = resolve(server, handle)
    assert seen["en1"] == "水泵 1".encode()
    assert seen["en2"] == b"22"
    got = op("0.DOIP/Op.Retrieve", method="GET")
    assert got["id"] == handle
    assert got["type"] == name
    elements = {e["type"]: e for e in got["attributes"]["elements"]}
    assert elements["en2"] == {
        "index": 2001,
        "type": "en2",
        "name": "功率",
        "data": 22,
        "dataType": 2,
    }
    assert got["attributes"]["attributes"]["metaData"]["createTime"]
    # Incremental update keeps what is not given; overwrite drops it.
    op(
        "0.DOIP.EXTEND/Op.Update.Non.Overlay",
        {"type": name, "attributes": {"content": {"en2": 30}}},
    )
    seen = resolve(server, handle)
    assert seen["en2"] == b"30"
    assert seen["en3"] == b"2024-06-22"
    op("0.DOIP/Op.Update", {"type": name, "attributes": {"content": {"en1": "水泵 2"}}})
    seen = resolve(server, handle)
    assert seen["en1"] == "水泵 2".encode()
    assert "en2" not in seen
    # The template's rules: a number out of range, an unknown item, a missing required one.
    bad = op(
        "0.DOIP/Op.Update",
        {"type": name, "attributes": {"content": {"en1": "x", "en2": 500}}},
        code=601,
    )
    assert "at most 100" in bad
    assert "not an item" in op(
        "0.DOIP/Op.Update", {"type": name, "attributes": {"content": {"zz": 1}}}, code=601
    )
    # The template itself is an object too.
    meta = idhub(
        http.get("/api/v1/doip", params={"targetId": name, "operationId": "0.DOIP/Op.Retrieve"})
    )
    assert meta["type"] == "0.TYPE/DO.DOIPMETA"
    assert meta["attributes"]["content"]["basicInfo"]["metaCode"] == "pump"
    # Listed under its template.
    page = idhub(
        http.get("/api/v1/open/handle/page", params={"metaHandle": f'"{name}"'}, headers=auth)
    )
    assert [c["handleName"] for c in page["content"]] == [handle]
    assert page["content"][0]["createdBy"] == f"300:{APP}"
    op("0.DOIP/Op.Delete", {})
    op("0.DOIP/Op.Retrieve", method="GET", code=104)
    op("0.DOIP/Op.Frobnicate", code=405)
    hello = op("0.DOIP/Op.Hello", method="GET")
    assert hello["type"] == "0.TYPE/DO.DOIPServiceInfo"
    assert "0.DOIP/Op.Create" in op("0.DOIP/Op.ListOperations", method="GET")


def test_doip_writes_need_a_token(http: httpx.Client) -> None:
    params = {"targetId": "88.100.1/X", "operationId": "0.DOIP/Op.Create"}
    body = {"type": "serial-item", "attributes": {"content": {}}}
    assert "log in" in idhub(http.post("/api/v1/doip", params=params, json=body), 102)


def test_a_template_made_in_idhub_checks_records_made_in_snms(
    http: httpx.Client, snms_token: str
) -> None:
    auth = bearer(app_token(http, APP))
    code = unique("shared")
    idhub(http.post("/api/v1/open/meta/create", json=_meta(f"88.100.1/META_{code}"), headers=auth))
    # In SNMS the template is that prefix's version <code>.
    record = {
        "handle": unique("88.100.1/s"),
        "templateVersion": code,
        "value": [_value(2000, "en1", "ok"), _value(2001, "en2", "7")],
    }
    assert snms(http.post("/identityv2/data", json=record, headers=bearer(snms_token))) is True
    record["handle"] = unique("88.100.1/s")
    record["value"] = [_value(2000, "en1", "ok"), _value(2001, "en2", "seven")]
    assert "must be a number" in snms(
        http.post("/identityv2/data", json=record, headers=bearer(snms_token)), -2
    )
    record["value"] = [_value(2001, "en2", "7")]
    assert "en1: is required" in snms(
        http.post("/identityv2/data", json=record, headers=bearer(snms_token)), -2
    )


def test_a_read_grant_on_one_record_holds_over_the_handle_protocol(
    http: httpx.Client, server: RunningNode
) -> None:
    auth = bearer(app_token(http, APP))
    name = unique("88.100.1/META_grant")
    idhub(http.post("/api/v1/open/meta/create", json=_meta(name), headers=auth))
    handle = unique("88.100.1/G-")
    create = {"type": name, "attributes": {"content": {"en1": "secret pump"}}}
    target = {"targetId": handle, "operationId": "0.DOIP/Op.Create"}
    idhub(http.post("/api/v1/doip", params=target, json=create, headers=auth))
    assert "en1" in resolve(server, handle)  # public, as its template says
    grant = {"handle": handle, "grantType": 2, "readerScope": 2, "handleUserReaders": [PARTNER]}
    idhub(http.post("/api/v1/single-handle/authorization", json=grant, headers=auth))
    assert "en1" not in resolve(server, handle)  # anonymous: no longer

    def read_as(who: str) -> set[str]:
        # In a Handle session, where a read of values that are not public is
        # challenged (as `idnode resolve --auth` does).
        client = HandleClient("127.0.0.1", server.ports.handle, timeout=10)
        client.open_session()
        credentials = Credentials(ValueReference(who, 300), private_key=KEYS[who])
        replies = client.authenticated(OpCode.RESOLUTION, ResolutionRequest(handle), credentials)
        body = replies[-1].body
        assert isinstance(body, ResolutionResponse)
        return {v.type for v in body.values}

    assert "en1" in read_as(PARTNER)
    assert "en1" not in read_as(OTHER)
    # Updates keep the record restricted, fields already there and new ones alike.
    update = {"type": name, "attributes": {"content": {"en1": "still secret", "en3": "2024-01-02"}}}
    target = {"targetId": handle, "operationId": "0.DOIP.EXTEND/Op.Update.Non.Overlay"}
    idhub(http.post("/api/v1/doip", params=target, json=update, headers=auth))
    assert not {"en1", "en3"} & set(resolve(server, handle))
    assert {"en1", "en3"} <= read_as(PARTNER)
    # Through the SDK's path too; revoking takes it back.
    revoke = {"handle": handle, "grantType": 2, "readerScope": 2, "delHandleUserReaders": [PARTNER]}
    idhub(http.post("/api/v1/open/single-handle/authorization", json=revoke, headers=auth))
    assert "en1" not in read_as(PARTNER)
    # grantType 1: back to its template's levels (public).
    idhub(
        http.post(
            "/api/v1/single-handle/authorization",
            json={"handle": handle, "grantType": 1},
            headers=auth,
        )
    )
    assert "en1" in resolve(server, handle)
    bad = {"handle": handle, "grantType": 3}
    assert "grantType" in idhub(
        http.post("/api/v1/single-handle/authorization", json=bad, headers=auth), 106
    )
    # Only the record's administrators may grant.
    other = bearer(app_token(http, OTHER))
    idhub(http.post("/api/v1/single-handle/authorization", json=grant, headers=other), 403)


def test_template_grants_restrict_who_makes_records(http: httpx.Client) -> None:
    auth = bearer(app_token(http, APP))
    name = unique("88.100.1/META_g")
    idhub(http.post("/api/v1/open/meta/create", json=_meta(name), headers=auth))
    grant = {"scope": 2, "metaHandle": name, "handleList": [PARTNER]}
    idhub(http.post("/api/v1/open/meta/grant-info", json=grant, headers=auth))
    create = {"type": name, "attributes": {"content": {"en1": "x"}}}
    target = {"targetId": unique("88.100.1/g"), "operationId": "0.DOIP/Op.Create"}
    other = bearer(app_token(http, OTHER))
    assert "not granted" in idhub(
        http.post("/api/v1/doip", params=target, json=create, headers=other), 403
    )
    # Its prefix's administrators still may.
    idhub(http.post("/api/v1/doip", params=target, json=create, headers=auth))


def test_baseon_create_copies_a_template(http: httpx.Client) -> None:
    auth = bearer(app_token(http, APP))
    source = unique("88.100.1/META_src")
    idhub(http.post("/api/v1/open/meta/create", json=_meta(source), headers=auth))
    body = {"baseonHandle": source, "baseInfo": {"metaCode": "copy1", "classifyCode": "sp"}}
    copy = idhub(http.post("/api/v1/open/meta/baseon-create", json=body, headers=auth))
    assert copy["metaHandle"].startswith("88.100.1/META_")
    info = idhub(
        http.get("/api/v1/open/meta/info", params={"metaHandle": copy["metaHandle"]}, headers=auth)
    )
    assert info["isQuote"] == 1
    assert info["metaCode"] == "copy1"
    assert [i["englishName"] for i in info["itemVOS"]] == ["en1", "en2", "en3"]
    items = {"metaHandle": copy["metaHandle"], "metaItemDTOS": _meta(source)["metaItemCreateDTOS"]}
    assert "copied" in idhub(
        http.put("/api/v1/open/meta/update-item", json=items, headers=auth), 601
    )


def test_errors_are_envelopes_not_crashes(http: httpx.Client, snms_token: str) -> None:
    auth = bearer(snms_token)
    assert "not JSON" in snms(http.post("/identityv2/data", content=b"{", headers=auth), -2)
    assert "non-empty JSON array" in snms(
        http.post("/identityv2/data/batchCreate", json={"x": 1}, headers=auth), -2
    )
    assert "handle" in snms(http.get("/identityv2/data/detail", headers=auth), -2)
    nested = b"[" * 5000 + b"]" * 5000
    assert "not JSON" in snms(http.post("/identityv2/data", content=nested, headers=auth), -2)
    assert "targetId" in idhub(
        http.get("/api/v1/doip", params={"operationId": "0.DOIP/Op.Retrieve"}), 106
    )


def test_one_template_through_both_apis_keeps_what_the_other_set(
    http: httpx.Client, snms_token: str
) -> None:
    """An SNMS v5 modify of a template made in IDHub: a withdrawn one stays withdrawn,
    a number item stays a number item."""
    auth = bearer(app_token(http, APP))
    code = unique("both")
    name = f"88.100.1/META_{code}"
    idhub(http.post("/api/v1/open/meta/create", json=_meta(name), headers=auth))
    withdraw = {"metaHandleList": [name], "opType": "withdraw"}
    idhub(http.put("/api/v1/open/meta/publish-or-withdraw", json=withdraw, headers=auth))
    change = {
        "prefix": "88.100.1",
        "version": code,
        "items": [
            {
                "name": "功率",
                "idType": "en2",
                "idIndex": 2001,
                "required": True,
                "metadata": {"type": "string", "minLength": 1, "maxLength": 3},
            }
        ],
    }
    assert snms(http.put("/snms/api/v5/template", json=change, headers=bearer(snms_token)))
    info = idhub(http.get("/api/v1/open/meta/info", params={"metaHandle": name}, headers=auth))
    assert info["metaState"] == 0
    assert info["metaName"] == "水泵"
    en2 = next(i for i in info["itemVOS"] if i["englishName"] == "en2")
    assert en2["itemSchemaVO"]["dataType"] == 2
    assert en2["required"] == 1


def test_records_are_changed_only_through_their_own_template(
    http: httpx.Client, snms_token: str
) -> None:
    auth = bearer(snms_token)
    first, second = unique("own."), unique("own.")
    for version in (first, second):
        snms(
            http.post(
                "/snms/api/v5/template",
                json=_snms_template("88.100.1", version, v5=True),
                headers=auth,
            )
        )
    handle = unique("88.100.1/own")
    record = {"handle": handle, "templateVersion": first, "value": [_value(2000, "name", "a")]}
    snms(http.post("/identityv2/data", json=record, headers=auth))
    other = {**record, "templateVersion": second, "value": [_value(2000, "name", "b")]}
    assert "was made from" in snms(http.put("/identityv2/data", json=other, headers=auth), -2)


def test_idhub_refusals(http: httpx.Client) -> None:
    auth = bearer(app_token(http, APP))
    source = unique("88.100.1/META_r")
    idhub(http.post("/api/v1/open/meta/create", json=_meta(source), headers=auth))
    # A grant's users are a list, never a string taken letter by letter.
    grant = {"scope": 2, "metaHandle": source, "handleUsers": OTHER}
    assert "lists of handles" in idhub(
        http.post("/api/v1/open/meta/grant/info", json=grant, headers=auth), 106
    )
    # A copy's items cannot be changed through DOIP either.
    body = {"baseonHandle": source, "baseInfo": {"metaCode": "c", "classifyCode": "sp"}}
    copy = idhub(http.post("/api/v1/open/meta/baseon-create", json=body, headers=auth))
    change = {
        "type": "0.TYPE/DO.DOIPMETA",
        "attributes": {"content": {"metaItemDTOS": _meta(source)["metaItemCreateDTOS"][:1]}},
    }
    target = {"targetId": copy["metaHandle"], "operationId": "0.DOIP/Op.Update"}
    assert "copied" in idhub(
        http.post("/api/v1/doip", params=target, json=change, headers=auth), 601
    )
    assert "not JSON" in idhub(
        http.post("/api/v1/open/meta/create", content=b"{", headers=auth), 106
    )
