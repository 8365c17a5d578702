"""`idnode --version`, `--help` and `resolve` start without importing what they do not
use (the command modules are loaded lazily: idnode.cli.COMMANDS)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main

from idnode.cli import COMMANDS, app, load_command

# What a node, its storage or its servers need; none of it is needed to resolve.
NODE_ONLY = {"idnode.node", "idnode.service", "idnode.storage", "biip", "jwt", "httpx", "starlette"}
NODE_ONLY |= {"uvicorn", "psycopg"}


def _imported(*args: str) -> set[str]:
    """The modules `idnode ARGS` has imported when it exits."""
    script = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        f"sys.argv = ['idnode', *{list(args)!r}]\n"
        "from idnode.cli import main\n"
        "main()\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    return set(json.loads(run.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    """`idnode --help` shows COMMANDS' one-line help without loading the command;
    it must say what the command's docstring (or its group's help) says."""
    command = load_command(name)
    assert command.name == name
    assert (command.help or "").split("\n\n")[0].replace("\n", " ") == COMMANDS[name][2]


def test_the_lazy_group_builds_what_typer_would() -> None:
    group = typer.main.get_command(app)
    assert list(group.commands) == list(COMMANDS)  # type: ignore[attr-defined]
    assert group.commands["resolve"].params  # type: ignore[attr-defined]


def test_version_imports_no_command() -> None:
    imported = _imported("--version")
    assert not {m for m in imported if m.startswith("idnode.cli.")} - {"idnode.cli.help"}
    assert "rich" not in imported
    assert "pydantic" not in imported


def test_help_imports_no_command() -> None:
    commands = {m for m in _imported("--help") if m.startswith("idnode.cli.")}
    assert not commands - {"idnode.cli.help"}  # how help looks, not a command


def test_resolve_imports_neither_node_nor_signing() -> None:
    imported = _imported("resolve", "88.100.1/X", "--server", "127.0.0.1:9", "--timeout", "0.2")
    assert "idnode.cli.resolve" in imported
    assert not {m for m in imported if m.split(".")[0] in NODE_ONLY or m in NODE_ONLY}
    assert "idnode.resolver" not in imported  # one --server: no global resolution
    assert "cryptography" not in imported  # no --auth, no --certify: nothing is signed
