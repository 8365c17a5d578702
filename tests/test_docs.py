"""The documentation covers every command, option and setting the code has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from idnode.cli import app
from idnode.config import Config

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Typer ships its own copy of click, so the command tree is read by duck typing.
COMMANDS: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    rest = text[start + len(heading) :]
    end = rest.find("\n### ")
    return rest if end < 0 else rest[:end]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_option_is_documented(name: str) -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    heading = f"### `idnode {name}`"
    assert heading in text, f"docs/cli.md has no section {heading}"
    section = _section(text, heading)
    command = COMMANDS[name]
    # A group (``idnode prefix ...``) is documented in one section with its subcommands.
    params = [p for sub in getattr(command, "commands", {}).values() for p in sub.params]
    for param in [*command.params, *params]:
        if param.param_type_name != "option" or param.name == "help":
            continue
        flag = max(param.opts, key=len)
        assert f"`{flag}" in section, f"{flag} of idnode {name} is not documented"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, re.MULTILINE))
    assert documented == set(Config.setting_names())


def test_readme_quick_start_has_the_two_commands() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    quick = readme[readme.index("## Quick start") :].split("\n## ", 1)[0]
    assert "make run" in quick
    assert "make test" in quick
