"""The ``idnode`` command. Each command builds a Config or opens the node, and calls
the library; none talks to storage.

Every command is registered here, explicitly, from the module that holds it, in
:data:`COMMANDS`: :mod:`~idnode.cli.setup` (init, serve, migrate),
:mod:`~idnode.cli.records` (import, export, demo), :mod:`~idnode.cli.resolve`,
:mod:`~idnode.cli.admin` (the commands that administer handles over the protocol,
and keygen), :mod:`~idnode.cli.history` (history, audit), :mod:`~idnode.cli.search`,
:mod:`~idnode.cli.stats`, :mod:`~idnode.cli.prefix`, :mod:`~idnode.cli.template` and
:mod:`~idnode.cli.account`. What they share (consoles, failure reporting, option
groups) is in :mod:`~idnode.cli.common`.

A command's module is imported only when that command runs (or its help is shown):
``idnode --version`` and ``idnode --help`` import none of them, ``idnode resolve``
only :mod:`~idnode.cli.resolve`. So this module imports typer and nothing heavier,
and the one-line help ``idnode --help`` lists is kept here, in :data:`COMMANDS`
(tests/test_cli.py checks it against each command's docstring).

Exit codes: 0 success; 1 the operation failed (the message says why: handle not
found, server unreachable, rejected input, ...); 2 the command line was wrong.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperCommand

from idnode import __version__
from idnode.cli.help import HELP_MARKUP, Commands

__all__ = ["COMMANDS", "app", "main"]

# name: (module in idnode.cli, its attribute: a command function or a Typer group,
# the one-line help `idnode --help` shows). In the order `idnode --help` lists them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": (
        "setup",
        "init",
        "Create a node: database, homed prefix, server key and an admin key pair.",
    ),
    "serve": ("setup", "serve", "Serve the node over Handle UDP/TCP and HTTP until interrupted."),
    "resolve": (
        "resolve",
        "resolve",
        "Resolve a handle over the Handle protocol (works against any Handle server).",
    ),
    "import": (
        "records",
        "import_",
        "Register records in bulk from CSV or JSONL: checked first, then written.",
    ),
    "export": ("records", "export", "Write records as JSONL, in the format `idnode import` reads."),
    "demo": (
        "records",
        "demo",
        "Load the demo: a pump manufacturer under 88.100.1 (models, pumps, parts, ...).",
    ),
    "stats": (
        "stats",
        "stats",
        "Resolutions and registrations per prefix and hour, from all processes.",
    ),
    "report-stats": (
        "stats",
        "report_stats",
        "Send this node's statistics, and its children's, to the parent node now.",
    ),
    "migrate": (
        "setup",
        "migrate",
        "Copy the node's database to another (SQLite <-> PostgreSQL), verified by checksum.",
    ),
    "backup": (
        "setup",
        "backup",
        "Back up the node while it serves: database, keys and configuration, checksummed.",
    ),
    "restore": (
        "setup",
        "restore",
        "Restore a backup into a new or empty data directory, verified by checksum.",
    ),
    "create": ("admin", "create", "Create a handle with the given values."),
    "add": ("admin", "add", "Add values to a handle at unused indexes."),
    "modify": ("admin", "modify", "Replace values of a handle, matched by index."),
    "remove": ("admin", "remove", "Remove values of a handle by index."),
    "delete": ("admin", "delete", "Delete a handle and all its values."),
    "list": ("admin", "list_", "List the handles under a prefix (needs LIST_HANDLES)."),
    "keygen": (
        "admin",
        "keygen",
        "Make a key for an identity and print the value to store in its handle.",
    ),
    "audit": (
        "history",
        "audit",
        "Show the node's audit log: who wrote what, from where, before and after.",
    ),
    "history": (
        "history",
        "history",
        "The versions of a record: who changed it, when, from where and how.",
    ),
    "search": ("search", "search", "Identifiers whose public values match, in handle order."),
    "admin": (
        "admin",
        "admin_app",
        "Grant or revoke administrators of a handle (HS_ADMIN values).",
    ),
    "identity": (
        "admin",
        "identity_app",
        "Identities: a handle with a key that proves it, and what it may do.",
    ),
    "prefix": (
        "prefix",
        "prefix_app",
        "Prefixes: home them here, delegate them to other nodes, list, unhome.",
    ),
    "template": ("template", "template_app", "Metadata templates: list, show, define."),
    "trace": ("trace", "trace_app", "EPCIS events: capture, query, genealogy, recall."),
    "account": (
        "account",
        "account_app",
        "Password accounts (user name logins: CAICT's ID-SDK, opcode 2000; SNMS API).",
    ),
}


def load_command(name: str) -> Any:
    """The command ``name`` of :data:`COMMANDS`, built as ``app.command(name)`` (or
    ``app.add_typer(group, name=name)``) would have built it, through typer's public
    API; this imports the command's module."""
    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(f"idnode.cli.{module}"), attribute)
    holder = typer.Typer(
        add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=HELP_MARKUP
    )
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
        return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]
    holder.command(name)(target)
    return typer.main.get_command(holder)


class _Commands(MutableMapping[str, Any]):
    """The group's commands by name, each built (and its module imported) the first
    time it is looked up. Iterating gives the names without importing anything."""

    def __init__(self, given: MutableMapping[str, Any]) -> None:
        self._built: dict[str, Any] = dict(given)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = load_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._built.keys())

    def summary(self, name: str) -> Any:
        """The command if it is built, else a stand-in carrying its one-line help."""
        if name in self._built or name not in COMMANDS:
            return self._built.get(name)
        return TyperCommand(name=name, help=COMMANDS[name][2])


class LazyGroup(Commands):
    """The root group: its commands are built when looked up (:class:`_Commands`);
    its help lists them from :data:`COMMANDS` without building any."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.commands)
        self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands: _Commands = self.commands  # type: ignore[assignment]
        return commands.summary(cmd_name) if self._listing else commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    cls=LazyGroup,
    help="idnode: an industrial internet identifier node (Handle protocol, Handle.Net JSON API).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"idnode {__version__}")
        raise typer.Exit


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    # --version is eager: it answers before any other option is read (and before
    # typer builds its pydantic validators for the others).
    return


def main() -> None:
    app()
