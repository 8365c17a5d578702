"""The ``idnode`` command. Each command builds a Config or opens the node, and calls
the library; none talks to storage.

Every command is registered here, explicitly, from the module that holds it:
:mod:`~idnode.cli.setup` (init, serve, migrate), :mod:`~idnode.cli.records` (import,
export, demo), :mod:`~idnode.cli.resolve`, :mod:`~idnode.cli.admin` (the commands that
administer handles over the protocol, and keygen), :mod:`~idnode.cli.history`
(history, audit), :mod:`~idnode.cli.search`, :mod:`~idnode.cli.stats`,
:mod:`~idnode.cli.prefix`, :mod:`~idnode.cli.template` and
:mod:`~idnode.cli.account`. What they share (consoles, failure reporting, option
groups) is in :mod:`~idnode.cli.common`.

Exit codes: 0 success; 1 the operation failed (the message says why: handle not
found, server unreachable, rejected input, ...); 2 the command line was wrong.
"""

from __future__ import annotations

from typing import Annotated

import typer

from idnode import __version__
from idnode.cli import (
    account,
    admin,
    history,
    prefix,
    records,
    resolve,
    search,
    setup,
    stats,
    template,
)
from idnode.cli.common import HELP_MARKUP, Commands, out

__all__ = ["app", "main"]

app = typer.Typer(
    help="idnode: an industrial internet identifier node (Handle protocol, Handle.Net JSON API).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
    cls=Commands,
)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"idnode {__version__}")
        raise typer.Exit


for command, name in (
    (setup.init, "init"),
    (setup.serve, "serve"),
    (resolve.resolve, "resolve"),
    (records.import_, "import"),
    (records.export, "export"),
    (records.demo, "demo"),
    (stats.stats, "stats"),
    (stats.report_stats, "report-stats"),
    (setup.migrate, "migrate"),
    (admin.create, "create"),
    (admin.add, "add"),
    (admin.modify, "modify"),
    (admin.remove, "remove"),
    (admin.delete, "delete"),
    (admin.list_, "list"),
    (admin.keygen, "keygen"),
    (history.audit, "audit"),
    (history.history, "history"),
    (search.search, "search"),
):
    app.command(name)(command)
app.add_typer(admin.admin_app, name="admin")
app.add_typer(admin.identity_app, name="identity")
app.add_typer(prefix.prefix_app, name="prefix")
app.add_typer(template.template_app, name="template")
app.add_typer(account.account_app, name="account")


def main() -> None:
    app()
