"""Homing and delegating prefixes: the service rules, referrals, and ``idnode prefix``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from idnode.cli import app
from idnode.domain import HandleRecord
from idnode.errors import HandleNotFound, InvalidValue, NotResponsible, Referral
from idnode.handle.values import HandleValue
from idnode.sites import site_of, sites_in
from tests.conftest import make_node

runner = CliRunner()
CHILD_SITE = site_of([("10.0.0.7", 2641)])


def test_a_delegation_is_served_and_referred_to(tmp_path: Path) -> None:
    node = make_node(tmp_path / "n", role="secondary")  # homes 88.100.1 in make_node
    service = node.service
    service.prefixes.home_prefix("88.100")
    record = service.prefixes.delegate_prefix("88.100.9", [CHILD_SITE], ttl=120)
    assert [s.servers[0].address.exploded for s in sites_in(record.values)] == ["10.0.0.7"]
    # The prefix handle is served as a record (a parent of its prefix is homed here)...
    assert service.reads.resolve("0.NA/88.100.9").values == record.values
    # ...and a handle under the delegated prefix is referred to it.
    with pytest.raises(Referral) as referral:
        service.reads.resolve("88.100.9/ANY")
    assert referral.value.handle == "0.NA/88.100.9"
    assert {v.type for v in referral.value.values} == {"HS_SITE"}
    # Below the delegated prefix too: 88.100.9.2 is found through 0.NA/88.100.9.
    with pytest.raises(Referral):
        service.reads.resolve("0.NA/88.100.9.2")
    # A homed prefix is its own authority: a missing handle is not found, not referred.
    with pytest.raises(HandleNotFound):
        service.reads.resolve("88.100/MISSING")
    # Nothing known about 77: not responsible.
    with pytest.raises(NotResponsible):
        service.reads.resolve("77/X")
    assert [r.handle for r in service.prefixes.delegations()] == ["0.NA/88.100.9"]
    node.close()


def test_delegating_again_moves_the_sites_and_keeps_other_values(tmp_path: Path) -> None:
    node = make_node(tmp_path / "n")
    service = node.service
    service.prefixes.home_prefix("88.100")
    service.prefixes.put_record(
        HandleRecord(
            "0.NA/88.100.9",
            (
                HandleValue(1, "HS_SITE", site_of([("10.0.0.1", 2641)]).to_bytes()),
                HandleValue(100, "HS_ADMIN", b"kept as it is"),
            ),
        )
    )
    moved = service.prefixes.delegate_prefix(
        "88.100.9", [CHILD_SITE, site_of([("10.0.0.8", 2641)], primary=False)], ttl=60
    )
    assert [(v.index, v.type) for v in moved.values] == [
        (1, "HS_SITE"),
        (2, "HS_SITE"),
        (100, "HS_ADMIN"),
    ]
    assert [v.ttl for v in moved.values if v.type == "HS_SITE"] == [60, 60]
    primary, mirror = sites_in(moved.values)
    assert str(primary.servers[0].address) == "10.0.0.7"
    assert str(mirror.servers[0].address) == "10.0.0.8"
    node.close()


def test_only_prefixes_below_a_homed_one_can_be_delegated(tmp_path: Path) -> None:
    node = make_node(tmp_path / "n")
    with pytest.raises(NotResponsible, match="not below a prefix homed here"):
        node.service.prefixes.delegate_prefix("99.1", [CHILD_SITE], ttl=60)
    with pytest.raises(InvalidValue, match="homed at this node"):
        node.service.prefixes.delegate_prefix("88.100.1", [CHILD_SITE], ttl=60)
    assert node.service.prefixes.delegations() == []
    node.close()


def test_root_and_recursive_roles(tmp_path: Path) -> None:
    root = make_node(tmp_path / "root", role="root")
    assert root.service.reads.homed_prefixes() == ["0.NA"]
    assert root.config.admin_handle == "0.NA/0.NA"
    root.service.prefixes.delegate_prefix("88", [CHILD_SITE], ttl=60)  # any prefix, on a root
    with pytest.raises(Referral):
        root.service.reads.resolve("88.100.1/PUMP-0001")
    root.close()


def test_prefix_commands(tmp_path: Path) -> None:
    d = str(tmp_path / "node")
    assert (
        runner.invoke(app, ["init", "-d", d, "--role", "top-level", "--prefix", "88"]).exit_code
        == 0
    )
    done = runner.invoke(
        app,
        [
            "prefix",
            "delegate",
            "88.100",
            "-d",
            d,
            "--site",
            "10.0.1.1:2702",
            "--mirror",
            "10.0.2.1",
            "--ttl",
            "300",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "primary 10.0.1.1:2702; mirror 10.0.2.1:2641" in done.output
    listed = runner.invoke(app, ["prefix", "list", "-d", d, "--json"])
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert rows == [
        {"prefix": "88", "state": "homed", "sites": "this node", "ttl": None},
        {
            "prefix": "88.100",
            "state": "delegated",
            "sites": "primary 10.0.1.1:2702; mirror 10.0.2.1:2641",
            "ttl": 300,
        },
    ]
    bad = runner.invoke(app, ["prefix", "delegate", "88.100", "-d", d, "--site", "pumps.example"])
    assert bad.exit_code == 2
    assert "not an IP address" in bad.output
    assert runner.invoke(app, ["prefix", "register", "88.5", "-d", d]).exit_code == 0
    assert runner.invoke(app, ["prefix", "unhome", "88.5", "-d", d]).exit_code == 0
    again = runner.invoke(app, ["prefix", "unhome", "88.5", "-d", d])
    assert again.exit_code == 1
    assert "not homed" in again.output


def test_init_roles_on_the_command_line(tmp_path: Path) -> None:
    rec = runner.invoke(app, ["init", "-d", str(tmp_path / "r"), "--role", "recursive"])
    assert rec.exit_code == 1
    assert "needs root_servers" in rec.output
    ok = runner.invoke(
        app,
        [
            "init",
            "-d",
            str(tmp_path / "r"),
            "--role",
            "recursive",
            "--root-servers",
            "127.0.0.1:2700",
        ],
    )
    assert ok.exit_code == 0, ok.output
    toml = (tmp_path / "r" / "idnode.toml").read_text()
    assert 'role = "recursive"' in toml
    assert 'root_servers = "127.0.0.1:2700"' in toml
    wrong = runner.invoke(app, ["init", "-d", str(tmp_path / "w"), "--role", "leaf"])
    assert wrong.exit_code == 1
    assert "role must be one of" in wrong.output
