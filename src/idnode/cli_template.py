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

from idnode.cli import DataDir, _fail, _open, app, out
from idnode.errors import IdnodeError
from idnode.handle.values import ValueReference
from idnode.service import Caller

template_app = typer.Typer(help="Metadata templates: list, show, define.", no_args_is_help=True)
app.add_typer(template_app, name="template")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@template_app.command("list")
def list_(data_dir: DataDir = Path(".idnode"), as_json: AsJson = False) -> None:
    """Every template's latest version."""
    node = _open(data_dir)
    try:
        templates = node.service.templates.templates()
    finally:
        node.close()
    if as_json:
        for t in templates:
            out.print(json.dumps(t.to_json(), ensure_ascii=False), highlight=False, soft_wrap=True)
        return
    table = Table("template", "version", "fields", "title", title_justify="left")
    for t in templates:
        table.add_row(t.name, str(t.version), ", ".join(f.name for f in t.fields), t.title)
    out.print(table)


@template_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Template name, e.g. serial-item.")],
    version: Annotated[int | None, typer.Option(help="A version (default: the latest).")] = None,
    data_dir: DataDir = Path(".idnode"),
    as_json: AsJson = False,
) -> None:
    """A template's fields: type, whether required, and who may read them."""
    node = _open(data_dir)
    try:
        template = node.service.templates.template(name, version)
    except IdnodeError as exc:
        _fail(exc.message)
    finally:
        node.close()
    if as_json:
        out.print(json.dumps(template.to_json(), ensure_ascii=False), highlight=False)
        return
    title = f"{template.name} version {template.version}: {template.title}"
    table = Table("field", "type", "required", "access", "values", title=title)
    for f in template.fields:
        table.add_row(f.name, f.type, "yes" if f.required else "", f.access, ", ".join(f.values))
    out.print(table)


@template_app.command("define")
def define(
    name: Annotated[str, typer.Argument(help="Template name: lower-case letters, digits, -.")],
    source: Annotated[Path, typer.Argument(help='JSON file: {"title", "fields": [...]}.')],
    data_dir: DataDir = Path(".idnode"),
) -> None:
    """Add a template, or a new version of one (records keep the version they used)."""
    try:
        definition = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"{source}: {exc}")
    node = _open(data_dir)
    try:
        config = node.config
        admin = ValueReference(config.admin_handle, config.admin_index)
        caller = Caller(admin if config.admin_handle else None, "cli")
        template = node.service.templates.define_template(name, definition, caller)
    except IdnodeError as exc:
        _fail(exc.message)
    finally:
        node.close()
    out.print(f"defined {template.name} version {template.version}")
