"""How the ``idnode`` command's help screens look: shared by every command group, and
light enough for ``idnode --help`` (typer alone, no rich console, no idnode module)."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

__all__ = ["HELP_MARKUP", "Commands"]

#: Help screens in click's plain layout: rich's panels showed flags as "<bool>", cut
#: long option values off with "...", and kept a docstring's line breaks mid-sentence.
HELP_MARKUP = None


class Commands(TyperGroup):
    """A command group whose help lists each command with its whole summary, wrapped
    to the terminal, where click cuts it off with "..." at the first line's end."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
