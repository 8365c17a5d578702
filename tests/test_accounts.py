"""Password accounts: hashes, the service's rules, and the `idnode account` commands."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from idnode.auth.passwords import check_password, date_digest, hash_password
from idnode.config import Config
from idnode.domain import HandleRecord
from idnode.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    InvalidCredential,
    InvalidValue,
    NoSuchResource,
)
from idnode.handle.values import HandleValue, ValueReference
from idnode.keys import handle_public_key
from idnode.node import Node, open_node
from idnode.service import Caller
from tests.conftest import idnode, make_node

OPS = ValueReference("0.NA/88.100.1", 300)


def test_hashes_are_salted_and_checked() -> None:
    first, second = hash_password("a long passphrase"), hash_password("a long passphrase")
    assert first != second  # salted
    assert first.startswith("scrypt$14$8$1$")
    assert "a long passphrase" not in first
    assert check_password("a long passphrase", first)
    assert not check_password("a long passphrasE", first)
    assert not check_password("a long passphrase", None)  # no such account


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "bcrypt$14$8$1$AA==$AA==",
        "scrypt$14$8$1$not base64!$AA==",
        "scrypt$40$8$1$AA==$AA==",  # asks for more work than a check may cost
        "scrypt$14$8$1$AA==",
    ],
)
def test_a_malformed_stored_hash_matches_nothing(stored: str) -> None:
    assert not check_password("anything", stored)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path / "node")
    yield made
    made.close()


def test_an_account_logs_in_as_its_identity(node: Node) -> None:
    accounts = node.service.accounts
    accounts.add("ops", OPS, "correct horse battery")
    caller = accounts.log_in("ops", "correct horse battery", "tcp 10.0.0.1:5000")
    assert (caller.identity, caller.origin) == (OPS, "tcp 10.0.0.1:5000")
    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        accounts.log_in("ops", "wrong horse battery", "tcp")
    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        accounts.log_in("nobody", "correct horse battery", "tcp")
    # Added again: a new password, the old one no longer works.
    accounts.add("ops", OPS, "staple battery horse")
    with pytest.raises(AuthenticationFailed):
        accounts.log_in("ops", "correct horse battery", "tcp")
    accounts.remove("ops")
    with pytest.raises(AuthenticationFailed):
        accounts.log_in("ops", "staple battery horse", "tcp")
    with pytest.raises(NoSuchResource):
        accounts.remove("ops")


@pytest.mark.parametrize(
    ("name", "identity", "password", "message"),
    [
        ("ops", OPS, "short", "at least 10 characters"),
        ("", OPS, "long enough password", "1 to 128 characters"),
        ("two words", OPS, "long enough password", "no spaces"),
        ("ops", ValueReference("0.NA/88.100.1", 0), "long enough password", "index > 0"),
    ],
)
def test_accounts_are_checked_before_they_are_stored(
    node: Node, name: str, identity: ValueReference, password: str, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message):
        node.service.accounts.add(name, identity, password)
    assert node.service.accounts.all() == []


def test_the_account_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "node")
    make_node(tmp_path / "node").close()
    where = ("-d", data)
    added = idnode(
        "account",
        "add",
        "ops",
        "--identity",
        "300:0.NA/88.100.1",
        *where,
        password="correct horse battery",
    )
    assert added.returncode == 0, added.stderr
    assert "account ops acts as 300:0.NA/88.100.1" in added.stdout
    secret = tmp_path / "pw"
    secret.write_text("from a file, long enough\n")
    from_file = idnode(
        "account",
        "add",
        "audit",
        "--identity",
        "301:88.100.1/AUDIT",
        "--password-file",
        str(secret),
        *where,
    )
    assert from_file.returncode == 0, from_file.stderr
    listed = idnode("account", "list", *where)
    assert listed.returncode == 0
    assert "ops" in listed.stdout
    assert "300:0.NA/88.100.1" in listed.stdout
    assert "scrypt" not in listed.stdout  # never the hashes
    # No password given and no terminal to ask on: a usage error, nothing stored.
    missing = idnode("account", "add", "x", "--identity", "300:0.NA/88.100.1", *where)
    assert missing.returncode == 2
    assert "--password-file or $IDNODE_PASSWORD" in missing.stderr
    bad = idnode("account", "add", "y", "--identity", "0.NA/88.100.1", *where, password="x" * 12)
    assert bad.returncode == 2
    assert idnode("account", "remove", "ops", *where).returncode == 0
    gone = idnode("account", "remove", "ops", *where)
    assert gone.returncode == 1
    assert "no account named 'ops'" in gone.stderr


def test_date_digest_logins_take_the_day_in_china_and_need_the_kept_sha256(node: Node) -> None:
    accounts = node.service.accounts
    accounts.add("erp", OPS, "correct horse battery", date_digest=True)
    accounts.add("mes", OPS, "correct horse battery")
    kept = {a.name: a.password for a in accounts.all()}
    assert "|sha256$" in kept["erp"]
    assert "|sha256$" not in kept["mes"]
    # 2026-06-30 20:00 UTC is 2026-07-01 04:00 in China: the client sends 2026-07-01.
    node.service.core.wall_clock = lambda: 1_782_849_600.0
    digest = date_digest("correct horse battery", "2026-07-01")
    assert accounts.log_in_with_date_digest("erp", digest.upper(), "http").identity == OPS
    for day in ("2026-06-30", "2026-07-02"):  # not within ten minutes of midnight
        with pytest.raises(AuthenticationFailed):
            accounts.log_in_with_date_digest("erp", date_digest("correct horse battery", day), "")
    with pytest.raises(AuthenticationFailed):  # keeps no SHA-256
        accounts.log_in_with_date_digest("mes", digest, "http")
    with pytest.raises(AuthenticationFailed):
        accounts.log_in_with_date_digest("nobody", digest, "http")
    # Five minutes before midnight in China the next day's digest is taken too.
    node.service.core.wall_clock = lambda: 1_782_921_300.0  # 2026-07-01 23:55 +08:00
    tomorrow = date_digest("correct horse battery", "2026-07-02")
    assert accounts.log_in_with_date_digest("erp", tomorrow, "http").identity == OPS
    # The plain password still logs in (the scrypt part of the stored form).
    assert accounts.log_in("erp", "correct horse battery", "tcp").identity == OPS


def test_tokens_expire_and_can_be_revoked(node: Node) -> None:
    sessions = node.service.sessions
    now = [1_000_000.0]
    node.service.core.wall_clock = lambda: now[0]
    token, expires = sessions.issue_token(Caller(OPS, "http"))
    assert expires == now[0] + 86_400
    assert sessions.token_caller(token, "http x").identity == OPS
    with pytest.raises(AuthenticationNeeded):
        sessions.token_caller(token + "x", "http")
    # A token is not an HTTP API session (nor the other way round).
    with pytest.raises(AuthenticationNeeded):
        sessions.session("token:" + token)
    now[0] += 86_399
    assert sessions.token_caller(token, "http").identity == OPS
    now[0] += 1
    with pytest.raises(AuthenticationNeeded, match="expired"):
        sessions.token_caller(token, "http")
    second, _ = sessions.issue_token(Caller(OPS, "http"))
    assert sessions.revoke_token(second)
    with pytest.raises(AuthenticationNeeded):
        sessions.token_caller(second, "http")
    with pytest.raises(AuthenticationNeeded):
        sessions.issue_token(Caller(None, "http"))
    # A token from an account's login ends when the account is removed or changed.
    node.service.accounts.add("erp", OPS, "correct horse battery")
    node.service.core.wall_clock = lambda: now[0]
    by_account, _ = sessions.issue_token(Caller(OPS, "http"), "erp")
    assert sessions.token_caller(by_account, "http").identity == OPS
    node.service.accounts.add("erp", OPS, "staple battery horse")  # a new password
    with pytest.raises(AuthenticationNeeded, match="account was removed or changed"):
        sessions.token_caller(by_account, "http")
    again, _ = sessions.issue_token(Caller(OPS, "http"), "erp")
    assert sessions.token_caller(again, "http").identity == OPS
    node.service.accounts.remove("erp")
    with pytest.raises(AuthenticationNeeded, match="account was removed or changed"):
        sessions.token_caller(again, "http")


def test_idhub_challenges_expire_and_are_used_once(node: Node) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    app = "88.100.1/App"
    node.service.prefixes.put_record(
        HandleRecord(app, (HandleValue(7, "HS_PUBKEY", handle_public_key(key).to_bytes()),))
    )
    sessions = node.service.sessions
    now = [1_000_000.0]
    node.service.core.wall_clock = lambda: now[0]

    def signed(nonce: str) -> str:
        return base64.b64encode(
            key.sign(nonce.encode(), padding.PKCS1v15(), hashes.SHA256())
        ).decode()

    nonce = sessions.idhub_challenge(app)
    assert sessions.idhub_verify(app, signed(nonce), "http").identity == ValueReference(app, 7)
    with pytest.raises(AuthenticationFailed, match="no challenge"):
        sessions.idhub_verify(app, signed(nonce), "http")
    nonce = sessions.idhub_challenge(app)
    now[0] += 301
    with pytest.raises(AuthenticationFailed, match="expired"):
        sessions.idhub_verify(app, signed(nonce), "http")
    # A new challenge replaces an unanswered one.
    first = sessions.idhub_challenge(app)
    second = sessions.idhub_challenge(app)
    with pytest.raises(AuthenticationFailed, match="not by a key"):
        sessions.idhub_verify(app, signed(first), "http")
    with pytest.raises(AuthenticationFailed, match="no challenge"):
        sessions.idhub_verify(app, signed(second), "http")
    with pytest.raises(InvalidCredential):
        sessions.idhub_challenge("88.100.1/NOBODY")
    # A token from a key login ends when the key value is gone.
    nonce = sessions.idhub_challenge(app)
    token, _ = sessions.issue_token(sessions.idhub_verify(app, signed(nonce), "http"))
    assert sessions.token_caller(token, "http").identity == ValueReference(app, 7)
    node.service.prefixes.put_record(HandleRecord(app, (HandleValue(8, "EMAIL", b"x"),)))
    with pytest.raises(AuthenticationNeeded, match="key is gone"):
        sessions.token_caller(token, "http")


def test_every_worker_of_a_node_takes_its_tokens(tmp_path: Path) -> None:
    """Tokens are signed with a key derived from the server key: another process
    opening the same node (a worker) checks them; a node with another key does not."""
    first = make_node(tmp_path / "a")
    first.service.accounts.add("erp", OPS, "correct horse battery")
    token, _ = first.service.sessions.issue_token(Caller(OPS, "http"), "erp")
    first.close()
    worker = open_node(Config(data_dir=tmp_path / "a"))
    assert worker.service.sessions.token_caller(token, "http").identity == OPS
    assert worker.service.sessions.revoke_token(token)
    with pytest.raises(AuthenticationNeeded, match="revoked"):
        worker.service.sessions.token_caller(token, "http")
    worker.close()
    other = make_node(tmp_path / "b")
    with pytest.raises(AuthenticationNeeded, match="not one this node issued"):
        other.service.sessions.token_caller(token, "http")
    other.close()
