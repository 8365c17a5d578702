"""Password accounts: hashes, the service's rules, and the `idnode account` commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.auth.passwords import check_password, hash_password
from idnode.errors import AuthenticationFailed, InvalidValue, NoSuchResource
from idnode.handle.values import ValueReference
from idnode.node import Node
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
