"""``idnode account``: password accounts, for clients that log in with a user name.

CAICT's ID-SDK logs in with a user name and password (opcode 2000) instead of a key.
An account stands for one identity (``INDEX:HANDLE``) and has exactly its
permissions. These commands act on the local node's data directory; a running server
sees a change at the next login.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from idnode.cli.common import fail, local_node, out
from idnode.cli.help import HELP_MARKUP, Commands
from idnode.errors import IdnodeError
from idnode.handle.values import ValueReference
from idnode.node import Node

account_app = typer.Typer(
    help="Password accounts (user name logins: CAICT's ID-SDK, opcode 2000; SNMS API).",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    cls=Commands,
)


def _password(password_file: Path | None) -> str:
    """The password from a file, $IDNODE_PASSWORD, or asked for twice on a terminal:
    never from the command line, where other users see it."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {password_file}: {exc}", 2)
        if not lines:
            fail(f"{password_file} is empty: its first line is the password", 2)
        return lines[0]
    if "IDNODE_PASSWORD" in os.environ:
        return os.environ["IDNODE_PASSWORD"]
    if not sys.stdin.isatty():
        fail("give the password with --password-file or $IDNODE_PASSWORD", 2)
    first = typer.prompt("password", hide_input=True)
    if typer.prompt("again", hide_input=True) != first:
        fail("the two passwords differ", 2)
    return str(first)


@account_app.command("add")
@local_node()
def add(
    name: Annotated[str, typer.Argument(help="The user name clients log in with.")],
    identity: Annotated[
        str, typer.Option(help="The identity it acts as, INDEX:HANDLE, e.g. 300:0.NA/88.100.1.")
    ],
    node: Node,
    password_file: Annotated[
        Path | None, typer.Option(help="File holding the password (else $IDNODE_PASSWORD).")
    ] = None,
    date_digest: Annotated[
        bool,
        typer.Option(
            "--date-digest",
            help="Also let it log in to SNMS's /identity/token/v1, which needs an unsalted"
            " SHA-256 of the password kept (weaker: see docs/idis-api.md).",
        ),
    ] = False,
) -> None:
    """Create an account, or set an existing one's identity and password. Accounts log
    in with opcode 2000 (CAICT's ID-SDK) and to the SNMS API (/identity/token)."""
    index, sep, handle = identity.partition(":")
    if not sep or not index.isdigit():
        fail(f"the identity is INDEX:HANDLE, got {identity!r}", 2)
    try:
        node.service.accounts.add(
            name,
            ValueReference(handle, int(index)),
            _password(password_file),
            date_digest=date_digest,
        )
    except IdnodeError as exc:
        fail(exc.message)
    out.print(f"account {name} acts as {identity}", highlight=False)


@account_app.command("remove")
@local_node()
def remove(
    name: Annotated[str, typer.Argument(help="The account's user name.")], node: Node
) -> None:
    """Delete an account: its logins stop at once (connections already logged in keep
    their identity until they close)."""
    try:
        node.service.accounts.remove(name)
    except IdnodeError as exc:
        fail(exc.message)
    out.print(f"removed account {name}", highlight=False)


@account_app.command("list")
@local_node()
def list_(node: Node) -> None:
    """The accounts and the identities they act as (never the password hashes)."""
    accounts = node.service.accounts.all()
    if not accounts:
        out.print("no accounts (add one with `idnode account add`)")
        return
    table = Table("name", "identity", "created")
    for account in accounts:
        who = account.identity
        created = datetime.fromtimestamp(account.created, UTC).strftime("%Y-%m-%d %H:%M UTC")
        table.add_row(account.name, f"{who.index}:{who.handle}", created)
    out.print(table)
