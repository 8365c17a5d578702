"""The administration commands end to end: a real node, real sockets, the real CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.config import Config
from tests.conftest import RunningNode, idnode, make_node, running


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningNode, Path]]:
    path = tmp_path_factory.mktemp("cli-admin")
    make_node(path).close()
    with running(Config(data_dir=path, handle_port=0, http_port=0)) as server:
        yield server, path


def test_administer_handles_with_the_cli(node: tuple[RunningNode, Path], tmp_path: Path) -> None:
    server, data_dir = node
    where = ["--server", f"127.0.0.1:{server.ports.handle}"]
    admin = ["--auth", "300:0.NA/88.100.1", "--key", str(data_dir / "admin_key.pem"), *where]

    made = idnode("create", "88.100.1/CLI-1", "-v", "1:URL:https://e.com/a:b", *admin, "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {"responseCode": 1, "handle": "88.100.1/CLI-1"}
    assert idnode("add", "88.100.1/CLI-1", "-v", "2:EMAIL:ops@e.com", *admin).returncode == 0
    assert idnode("modify", "88.100.1/CLI-1", "-v", "2:EMAIL:new@e.com", *admin).returncode == 0
    resolved = idnode("resolve", "88.100.1/CLI-1", *where, "--json")
    values = {v["index"]: v["data"]["value"] for v in json.loads(resolved.stdout)["values"]}
    assert values == {1: "https://e.com/a:b", 2: "new@e.com"}

    clash = idnode("add", "88.100.1/CLI-1", "-v", "2:EMAIL:x", *admin)
    assert clash.returncode == 1
    assert "value already exists (201)" in clash.stderr

    # A second identity with a secret key, made by keygen and granted rights by admin.
    secret_file = tmp_path / "ops.secret"
    key = idnode("keygen", str(secret_file), "--secret")
    assert key.returncode == 0, key.stderr
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    value = json.loads(key.stdout)
    assert value["type"] == "HS_SECKEY"
    assert value["permissions"] == "1100"
    secret = secret_file.read_text().strip()
    # The value holds the secret's hash (Handle.Net's hashed secret keys), not the secret.
    stored = value["data"]["value"]
    assert stored == hashlib.sha1(secret.encode()).hexdigest()
    created = idnode("create", "88.100.1/OPS", "-v", f"300:HS_SECKEY:{stored}", *admin)
    assert created.returncode == 0, created.stderr
    hidden = idnode("resolve", "88.100.1/OPS", *where, "--json")
    assert json.loads(hidden.stdout)["values"] == []  # the secret is never served
    unhashed = ["--auth", "300:88.100.1/OPS", *where]
    refused = idnode("remove", "88.100.1/CLI-1", "2", *unhashed, secret=secret)
    assert "authentication failed (403)" in refused.stderr
    ops = ["--auth", "300:88.100.1/OPS", "--hashed-secret", *where]
    denied = idnode("remove", "88.100.1/CLI-1", "2", *ops, secret=secret)
    assert denied.returncode == 1
    assert "insufficient permissions (401)" in denied.stderr
    wrong = idnode("remove", "88.100.1/CLI-1", "2", *ops, secret="guess")
    assert "authentication failed (403)" in wrong.stderr

    grant = idnode("admin", "grant", "88.100.1/CLI-1", "300:88.100.1/OPS", *admin)
    assert grant.returncode == 0, grant.stderr
    assert idnode("remove", "88.100.1/CLI-1", "2", *ops, secret=secret).returncode == 0
    assert idnode("admin", "revoke", "88.100.1/CLI-1", "100", *admin).returncode == 0
    again = idnode("add", "88.100.1/CLI-1", "-v", "3:X:y", *ops, secret=secret)
    assert "insufficient permissions (401)" in again.stderr

    listing = idnode("list", "88.100.1", *admin, "--json")
    assert "88.100.1/CLI-1" in json.loads(listing.stdout)["handles"]
    assert idnode("delete", "88.100.1/CLI-1", *admin).returncode == 0
    assert idnode("resolve", "88.100.1/CLI-1", *where).returncode == 1

    audit = idnode("audit", "--data-dir", str(data_dir), "--handle", "88.100.1/CLI-1", "--json")
    assert audit.returncode == 0, audit.stderr
    operations = [json.loads(line)["operation"] for line in audit.stdout.splitlines()]
    assert operations == [
        "create",
        "add-value",
        "modify-value",
        "add-value",
        "remove-value",
        "remove-value",
        "delete",
    ]


def test_cli_refuses_missing_credentials(node: tuple[RunningNode, Path]) -> None:
    server, _ = node
    result = idnode(
        "delete",
        "88.100.1/X",
        "--auth",
        "300:0.NA/88.100.1",
        "--server",
        f"127.0.0.1:{server.ports.handle}",
    )
    assert result.returncode == 2
    assert "--key, --secret-file or IDNODE_SECRET" in result.stderr
    bad = idnode("delete", "88.100.1/X", "--auth", "nonsense", "--key", "k.pem")
    assert bad.returncode == 2


def test_one_command_makes_an_identity_and_grants_it_named_permissions(
    node: tuple[RunningNode, Path], tmp_path: Path
) -> None:
    """Issue 21: no hex copied from keygen into create, no twelve-bit string."""
    server, data_dir = node
    where = ["--server", f"127.0.0.1:{server.ports.handle}"]
    admin = ["--auth", "300:0.NA/88.100.1", "--key", str(data_dir / "admin_key.pem"), *where]
    secret_file = tmp_path / "writer.secret"
    made = idnode(
        "identity", "create", "88.100.1/WRITER", str(secret_file), "--secret",
        "--grant", "0.NA/88.100.1", "--permissions", "add_handle,add_value,read_value",
        *admin,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "granted add_handle, add_value, read_value on 0.NA/88.100.1" in made.stderr
    assert f"--auth 300:88.100.1/WRITER --secret-file {secret_file} --hashed-secret" in (
        " ".join(made.stdout.split())
    )
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    writer = ["--auth", "300:88.100.1/WRITER", "--secret-file", str(secret_file),
              "--hashed-secret", *where]  # fmt: skip
    created = idnode("create", "88.100.1/BY-WRITER", "-v", "1:URL:https://e.com/w", *writer)
    assert created.returncode == 0, created.stderr
    # What was not granted is refused.
    refused = idnode("delete", "88.100.1/BY-WRITER", *writer)
    assert refused.returncode == 1
    assert "insufficient permissions (401)" in refused.stderr

    # A key pair the same way; a name that is no permission is refused before anything.
    bad = idnode("identity", "create", "88.100.1/READER", str(tmp_path / "r.pem"),
                 "--grant", "0.NA/88.100.1", "--permissions", "read", *admin)  # fmt: skip
    assert bad.returncode == 2
    assert "no permission 'read'" in bad.stderr
    assert "read_value" in bad.stderr
    assert not (tmp_path / "r.pem").exists()
    pair = idnode("identity", "create", "88.100.1/READER", str(tmp_path / "r.pem"), *admin)
    assert pair.returncode == 0, pair.stderr
    again = idnode("identity", "create", "88.100.1/READER", str(tmp_path / "r2.pem"), *admin)
    assert again.returncode == 1
    assert "handle already exists" in again.stderr
    assert not (tmp_path / "r2.pem").exists()  # no key left for an identity never made
