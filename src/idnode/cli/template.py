"""``idnode template``: the metadata templates of the local node.

Built-in templates (product-model, serial-item, part, batch, machine) are always there;
``define`` adds a template, or a new version of one, as the node's administrator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from idnode.cli.common import AsJson, fail, local_node, out
from idnode.cli.help import HELP_MARKUP, Commands
from idnode.errors import IdnodeError
from idnode.handle.values import ValueReference
from idnode.node import Node
from idnode.service import Caller

template_app = typer.Typer(
    help="Metadata templates: list, show, define.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    cls=Commands,
)


@template_app.command("list")
@local_node()
def list_(node: Node, as_json: AsJson = False) -> None:
    """Every template's latest version."""
    templates = node.service.templates.templates()
    if as_json:
        for t in templates:
            out.print(json.dumps(t.to_json(), ensure_ascii=False), highlight=False, soft_wrap=True)
        return
    table = Table("template", "version", "fields", "title", title_justify="left")
    for t in templates:
        table.add_row(t.name, str(t.version), ", ".join(f.name for f in t.fields), t.title)
    out.print(table)


@template_app.command("show")
@local_node()
def show(
    name: Annotated[str, typer.Argument(help="Template name, e.g. serial-item.")],
    node: Node,
    version: Annotated[int | None, typer.Option(help="A version (default: the latest).")] = None,
    as_json: AsJson = False,
) -> None:
    """A template's fields: type, whether required, and who may read them."""
    try:
        template = node.service.templates.template(name, version)
    except IdnodeError as exc:
        fail(exc.message)
    if as_json:
        out.print(json.dumps(template.to_json(), ensure_ascii=False), highlight=False)
        return
    title = f"{template.name} version {template.version}: {template.title}"
    table = Table("field", "type", "required", "access", "values", title=title)
    for f in template.fields:
        table.add_row(f.name, f.type, "yes" if f.required else "", f.access, ", ".join(f.values))
    out.print(table)


@template_app.command("define")
@local_node()
def define(
    name: Annotated[
        str,
        typer.Argument(help="Template name: letters, digits, '.', '_', '-' (or PREFIX/META_CODE)."),
    ],
    source: Annotated[Path, typer.Argument(help='JSON file: {"title", "fields": [...]}.')],
    node: Node,
) -> None:
    """Add a template, or a new version of one (records keep the version they used)."""
    try:
        definition = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{source}: {exc}")
    except RecursionError:
        fail(f"{source}: JSON nested too deep")
    try:
        config = node.config
        admin = ValueReference(config.admin_handle, config.admin_index)
        caller = Caller(admin if config.admin_handle else None, "cli")
        template = node.service.templates.define_template(name, definition, caller)
    except IdnodeError as exc:
        fail(exc.message)
    out.print(f"defined {template.name} version {template.version}")
