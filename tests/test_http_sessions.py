"""HTTP API sessions and authenticated reads, over a real server (Handle.Net's scheme).

The client side here is written from the scheme as deployed clients use it: sign
``server nonce + client nonce`` with the identity's key, send the result in
``Authorization: Handle``, then name the session alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from idnode.config import Config
from idnode.demo import demo_records
from idnode.domain import AuditQuery, HandleRecord
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.node import ADMIN_KEY_FILE, open_node
from tests.conftest import RunningNode, add_secret_admin, make_node, rsa_key, running

ADMIN = "300:0.NA/88.100.1"
SECRET = b"session-s3cret"
KEEPER = "300:88.100.1/KEEPER"


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("http-sessions")
    node = make_node(path)
    node.service.bulk.register_many(demo_records(5), replace=True)
    prefix = node.storage.get("0.NA/88.100.1")
    assert prefix is not None
    keeper_grant = HandleValue(
        101,
        "HS_ADMIN",
        AdminValue(AdminPermission.ALL, ValueReference("88.100.1/KEEPER", 300)).to_bytes(),
    )
    node.service.prefixes.put_record(HandleRecord(prefix.handle, (*prefix.values, keeper_grant)))
    node.service.prefixes.put_record(
        HandleRecord(
            "88.100.1/KEEPER",
            (HandleValue(300, "HS_SECKEY", SECRET, permissions=Permission.ADMIN_READ),),
        )
    )
    node.close()
    return path


@pytest.fixture(scope="module")
def server(node_dir: Path) -> Iterator[RunningNode]:
    with running(Config(data_dir=node_dir, handle_port=0, http_port=0)) as node:
        yield node


@pytest.fixture(scope="module")
def admin_key(node_dir: Path) -> rsa.RSAPrivateKey:
    return rsa_key(node_dir / ADMIN_KEY_FILE)


@pytest.fixture
def http(server: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


def open_session(http: httpx.Client) -> tuple[str, bytes]:
    r = http.post("/api/sessions")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["authenticated"] is False
    nonce = base64.b64decode(body["nonce"])
    assert len(nonce) == 16
    return body["sessionId"], nonce


def signed_header(session_id: str, nonce: bytes, key: rsa.RSAPrivateKey, who: str = ADMIN) -> str:
    cnonce = os.urandom(16)
    signature = key.sign(nonce + cnonce, padding.PKCS1v15(), hashes.SHA256())
    return (
        f'Handle sessionId="{session_id}", id="{who}", type="HS_PUBKEY", '
        f'cnonce="{base64.b64encode(cnonce).decode()}", alg="SHA256", '
        f'signature="{base64.b64encode(signature).decode()}"'
    )


def session_header(session_id: str) -> dict[str, str]:
    return {"Authorization": f'Handle sessionId="{session_id}"'}


def test_public_key_session_authenticates_once_then_writes(
    http: httpx.Client, admin_key: rsa.RSAPrivateKey, node_dir: Path, server: RunningNode
) -> None:
    session_id, nonce = open_session(http)
    r = http.put(
        "/api/sessions/this",
        headers={"Authorization": signed_header(session_id, nonce, admin_key)},
    )
    assert r.status_code == 200, r.text
    assert r.json()["authenticated"] is True
    assert r.json()["id"] == ADMIN
    status = http.get("/api/sessions/this", headers=session_header(session_id)).json()
    assert status["authenticated"] is True
    assert status["sessionId"] == session_id

    for n in (1, 2):
        r = http.put(
            f"/api/handles/88.100.1/SESSION-{n}",
            json={"values": [{"index": 1, "type": "URL", "data": "https://example.com"}]},
            headers=session_header(session_id),
        )
        assert r.status_code == 201, r.text
    node = open_node(Config(data_dir=node_dir))
    try:
        entries = node.service.writes.audit_log(AuditQuery(handle="88.100.1/SESSION-2"))
    finally:
        node.close()
    assert [(e.actor, e.origin.split()[0]) for e in entries] == [(ADMIN, "http")]


def test_a_bad_signature_leaves_the_session_unauthenticated(
    http: httpx.Client, admin_key: rsa.RSAPrivateKey
) -> None:
    session_id, nonce = open_session(http)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = http.put(
        "/api/sessions/this", headers={"Authorization": signed_header(session_id, nonce, other)}
    )
    assert r.status_code == 403
    assert r.json()["responseCode"] == 403
    # Signing someone else's session nonce proves nothing either.
    _other_id, other_nonce = open_session(http)
    r = http.put(
        "/api/sessions/this",
        headers={"Authorization": signed_header(session_id, other_nonce, admin_key)},
    )
    assert r.status_code == 403
    assert (
        http.get("/api/sessions/this", headers=session_header(session_id)).json()["authenticated"]
        is False
    )
    r = http.delete("/api/handles/88.100.1/PUMP-0001", headers=session_header(session_id))
    assert r.status_code == 401


@pytest.mark.parametrize("alg", ["SHA256", "HMAC-SHA256", "HMAC-SHA1", "PBKDF2-HMAC-SHA1"])
def test_secret_key_session(http: httpx.Client, alg: str) -> None:
    session_id, nonce = open_session(http)
    cnonce = os.urandom(16)
    signed = nonce + cnonce
    extra = ""
    if alg == "SHA256":
        signature = hashlib.sha256(SECRET + signed + SECRET).digest()
    elif alg == "HMAC-SHA256":
        signature = hmac.new(SECRET, signed, hashlib.sha256).digest()
    elif alg == "HMAC-SHA1":
        signature = hmac.new(SECRET, signed, hashlib.sha1).digest()
    else:
        salt = os.urandom(16)
        key = hashlib.pbkdf2_hmac("sha1", SECRET, salt, 1000, 20)
        signature = hmac.new(key, signed, hashlib.sha1).digest()
        extra = f', salt="{base64.b64encode(salt).decode()}", iterations="1000", length="160"'
    header = (
        f'Handle sessionId="{session_id}", id="{KEEPER}", type="HS_SECKEY", '
        f'cnonce="{base64.b64encode(cnonce).decode()}", alg="{alg}", '
        f'signature="{base64.b64encode(signature).decode()}"{extra}'
    )
    r = http.post("/api/sessions/this", headers={"Authorization": header})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == KEEPER


def test_the_401_challenge_carries_a_session_to_answer_in(
    http: httpx.Client, admin_key: rsa.RSAPrivateKey
) -> None:
    r = http.delete("/api/handles/88.100.1/PUMP-0002")
    assert r.status_code == 401
    offered = r.headers.get_list("www-authenticate")[1]
    match = re.fullmatch(r'Handle sessionId="([^"]+)", nonce="([^"]+)"', offered)
    assert match is not None
    session_id, nonce = match.group(1), base64.b64decode(match.group(2))
    # The full header on the write itself authenticates it, no separate step needed.
    r = http.delete(
        "/api/handles/88.100.1/PUMP-0002",
        headers={"Authorization": signed_header(session_id, nonce, admin_key)},
    )
    assert r.status_code == 200, r.text
    assert http.get("/api/handles/88.100.1/PUMP-0002").status_code == 404


def test_basic_credentials_open_an_authenticated_session(http: httpx.Client) -> None:
    user = KEEPER.replace(":", "%3A", 1)
    token = base64.b64encode(f"{user}:{SECRET.decode()}".encode()).decode()
    r = http.post("/api/sessions", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 201
    assert r.json()["authenticated"] is True
    assert r.json()["id"] == KEEPER


def test_closed_and_unknown_sessions_are_refused(
    http: httpx.Client, admin_key: rsa.RSAPrivateKey
) -> None:
    session_id, nonce = open_session(http)
    http.put(
        "/api/sessions/this",
        headers={"Authorization": signed_header(session_id, nonce, admin_key)},
    )
    assert http.delete("/api/sessions/this", headers=session_header(session_id)).status_code == 204
    r = http.get("/api/sessions/this", headers=session_header(session_id))
    assert r.status_code == 401
    r = http.put(
        "/api/handles/88.100.1/PUMP-0003",
        json={"values": []},
        headers=session_header("no-such-session"),
    )
    assert r.status_code == 401
    assert "POST /api/sessions" in r.json()["message"]


@pytest.mark.parametrize(
    "header",
    [
        'Handle sessionId="x", id="300:0.NA/88.100.1", type="HS_PUBKEY"',  # no signature
        'Handle sessionId="x", id=300:0.NA/88.100.1, type="HS_WHAT", signature="AA=="',
        'Handle sessionId="x" id="broken',
        'Handle version="7", sessionId="x"',
        "Bearer abc",
    ],
)
def test_malformed_authorization_gets_a_precise_problem(http: httpx.Client, header: str) -> None:
    r = http.put(
        "/api/handles/88.100.1/PUMP-0003", json={"values": []}, headers={"Authorization": header}
    )
    assert r.status_code in (401, 403)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["message"]


def test_authenticated_reads_show_values_the_identity_may_read(
    http: httpx.Client, admin_key: rsa.RSAPrivateKey
) -> None:
    handle = "/api/handles/88.100.1/PUMP-0004"
    anonymous = {v["type"] for v in http.get(handle).json()["values"]}
    assert "CUSTOMER" not in anonymous
    r = http.get(handle, params={"publicOnly": "false"})
    assert r.status_code == 401  # asked for more than the public values, anonymously

    session_id, nonce = open_session(http)
    header = {"Authorization": signed_header(session_id, nonce, admin_key)}
    shown = {v["type"] for v in http.get(handle, headers=header).json()["values"]}
    assert shown == anonymous | {"BATCH", "CUSTOMER"}
    r = http.get(handle, params={"publicOnly": "true"}, headers=session_header(session_id))
    assert {v["type"] for v in r.json()["values"]} == anonymous


def test_failed_authentications_are_limited_per_address(tmp_path: Path) -> None:
    """Issue 20: an address that keeps failing to authenticate is refused (429) before
    its credentials are checked, and a 401 offers it no more database sessions."""
    node = make_node(tmp_path / "node")
    add_secret_admin(node, ValueReference("88.100.1/LIMITED", 300), "right-secret")
    node.close()
    config = Config(data_dir=tmp_path / "node", handle_port=0, http_port=0, http_auth_failures=5)
    wrong = base64.b64encode(b"300%3A88.100.1/LIMITED:wrong-secret").decode()
    right = base64.b64encode(b"300%3A88.100.1/LIMITED:right-secret").decode()
    url = "/api/handles?prefix=88.100.1"
    with running(config) as served, httpx.Client(base_url=served.http, timeout=10) as http:
        assert http.get(url, headers={"Authorization": f"Basic {right}"}).status_code == 200
        statuses = [
            http.get(url, headers={"Authorization": f"Basic {wrong}"}).status_code for _ in range(7)
        ]
        assert statuses[:5] == [403] * 5  # a wrong secret
        assert statuses[5:] == [429, 429]
        # Now even the right secret waits, and a 401 opens no session.
        assert http.get(url, headers={"Authorization": f"Basic {right}"}).status_code == 429
        anonymous = http.get(url)
        assert anonymous.status_code == 401
        assert "sessionId" not in anonymous.headers.get("www-authenticate", "")
        # The SNMS and IDHub logins and tokens count against the same allowance.
        login = http.post("/identity/token", json={"username": "x", "password": "y"})
        assert login.json()["status"] == -2
        assert "too many failed authentications" in login.json()["message"]
