"""The ``idnode`` commands that administer handles over the Handle protocol.

``create``, ``add``, ``modify``, ``remove``, ``delete``, ``list`` and ``admin
grant|revoke`` speak the protocol to any Handle server (ours or another), proving the
identity given by ``--auth INDEX:HANDLE`` with a private key (``--key``) or a secret
key (``--secret-file``, or the IDNODE_SECRET environment variable; never on the
command line, where other users could read it); those options are one group,
:func:`~idnode.cli.common.target_options`. ``keygen`` makes keys.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from idnode.cli.common import HELP_MARKUP, Commands, Target, err, fail, out, target_options
from idnode.client import listed
from idnode.errors import IdnodeError
from idnode.handle.codes import OpCode, OpFlag
from idnode.handle.messages import (
    AddValueRequest,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    ListHandlesRequest,
    ModifyValueRequest,
    RemoveValueRequest,
)
from idnode.handle.values import DEFAULT_PERMISSIONS, HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.jsonformat import value_to_json
from idnode.keys import generate_key, handle_public_key, hashed_secret

__all__ = [
    "add",
    "admin_app",
    "create",
    "delete",
    "keygen",
    "list_",
    "modify",
    "remove",
]

Values = Annotated[
    list[str],
    typer.Option(
        "--value", "-v", help="A value as INDEX:TYPE:DATA, e.g. 1:URL:https://example.com."
    ),
]
Handle = Annotated[str, typer.Argument(help="The handle.")]
SECRET_PERMISSIONS = Permission.ADMIN_READ | Permission.ADMIN_WRITE


def _parse_value(text: str) -> HandleValue:
    index, sep1, rest = text.partition(":")
    vtype, sep2, data = rest.partition(":")
    if not (sep1 and sep2 and index.isdigit() and vtype):
        fail(f"a value is INDEX:TYPE:DATA, got {text!r}", 2)
    # A secret key is for administrators' eyes only; every other value is public.
    private = vtype.upper() == "HS_SECKEY"
    try:
        return HandleValue(
            int(index),
            vtype,
            data.encode("utf-8"),
            permissions=SECRET_PERMISSIONS if private else DEFAULT_PERMISSIONS,
        )
    except IdnodeError as exc:
        fail(f"{text!r}: {exc.message}", 2)


@target_options()
def create(
    handle: Annotated[str, typer.Argument(help="The handle (with --mint: its start).")],
    value: Values,
    target: Target,
    overwrite: Annotated[bool, typer.Option(help="Replace the handle if it exists.")] = False,
    mint: Annotated[bool, typer.Option(help="Let the server append a new suffix.")] = False,
) -> None:
    """Create a handle with the given values."""
    values = tuple(_parse_value(v) for v in value)
    flags = (OpFlag.OVERWRITE if overwrite else OpFlag.NONE) | (
        OpFlag.MINT_NEW_SUFFIX if mint else OpFlag.NONE
    )
    replies = target.send(OpCode.CREATE_HANDLE, CreateHandleRequest(handle, values), flags)
    reply = replies[0].body
    made = reply.handle if isinstance(reply, CreateHandleResponse) and reply.handle else handle
    target.done(made, f"created {made}")


@target_options()
def add(handle: Handle, value: Values, target: Target) -> None:
    """Add values to a handle at unused indexes."""
    values = tuple(_parse_value(v) for v in value)
    target.send(OpCode.ADD_VALUE, AddValueRequest(handle, values))
    target.done(handle, f"added {len(values)} value(s) of {handle}")


@target_options()
def modify(handle: Handle, value: Values, target: Target) -> None:
    """Replace values of a handle, matched by index."""
    values = tuple(_parse_value(v) for v in value)
    target.send(OpCode.MODIFY_VALUE, ModifyValueRequest(handle, values))
    target.done(handle, f"modified {len(values)} value(s) of {handle}")


@target_options()
def remove(
    handle: Handle,
    index: Annotated[list[int], typer.Argument(help="Indexes of the values to remove.")],
    target: Target,
) -> None:
    """Remove values of a handle by index."""
    target.send(OpCode.REMOVE_VALUE, RemoveValueRequest(handle, tuple(index)))
    target.done(handle, f"removed {len(index)} value(s) of {handle}")


@target_options()
def delete(
    handle: Annotated[str, typer.Argument(help="The handle to delete.")], target: Target
) -> None:
    """Delete a handle and all its values."""
    target.send(OpCode.DELETE_HANDLE, DeleteHandleRequest(handle))
    target.done(handle, f"deleted {handle}")


@target_options(timeout=30.0)
def list_(
    prefix: Annotated[str, typer.Argument(help="The prefix, e.g. 88.100.1.")], target: Target
) -> None:
    """List the handles under a prefix (needs LIST_HANDLES)."""
    replies = target.send(OpCode.LIST_HANDLES, ListHandlesRequest(f"0.NA/{prefix}"))
    handles = listed(replies)
    if target.as_json:
        out.print_json(data={"responseCode": 1, "prefix": prefix, "handles": handles})
        return
    for handle in handles:
        out.print(handle, highlight=False)


def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, 0600).")],
    secret: Annotated[
        bool, typer.Option(help="Write a random secret key instead of an RSA key pair.")
    ] = False,
    sm2: Annotated[
        bool,
        typer.Option(
            "--sm2", help="An SM2 key pair (the national algorithm) instead of an RSA one."
        ),
    ] = False,
    hashed: Annotated[
        bool,
        typer.Option(
            help="With --secret: the value holds the secret's SHA-1, not the secret"
            " (prove it with --hashed-secret)."
        ),
    ] = True,
    index: Annotated[int, typer.Option(help="Index for the printed value.")] = 300,
) -> None:
    """Make a key for an identity and print the value to store in its handle."""
    if path.exists():
        fail(f"{path} exists; not overwriting a key", 1)
    if secret and sm2:
        fail("--secret and --sm2 exclude each other: a secret key has no algorithm", 2)
    if secret:
        text = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        value = HandleValue(
            index,
            "HS_SECKEY",
            hashed_secret(text.encode()) if hashed else text.encode(),
            permissions=Permission.ADMIN_READ | Permission.ADMIN_WRITE,
        )
        use = f"--secret-file {path}" + (" --hashed-secret" if hashed else "")
        err.print(f"prove the identity with {use}", highlight=False)
    else:
        key = generate_key(path, "sm2" if sm2 else "rsa")
        value = HandleValue(index, "HS_PUBKEY", handle_public_key(key).to_bytes())
    err.print(f"wrote {path}; add this value to the identity's handle:", highlight=False)
    out.print(json.dumps(value_to_json(value)), highlight=False)


admin_app = typer.Typer(
    help="Grant or revoke administrators of a handle (HS_ADMIN values).",
    rich_markup_mode=HELP_MARKUP,
    cls=Commands,
)


@admin_app.command("grant")
@target_options()
def admin_grant(
    handle: Annotated[str, typer.Argument(help="The handle to administer.")],
    admin: Annotated[str, typer.Argument(help="The administrator, INDEX:HANDLE.")],
    target: Target,
    index: Annotated[int, typer.Option(help="Index of the new HS_ADMIN value.")] = 100,
    permissions: Annotated[
        str, typer.Option(help="Twelve 0/1 characters (Handle.Net order) or 'all'.")
    ] = "all",
) -> None:
    """Add an HS_ADMIN value granting permissions over a handle."""
    who_index, sep, who = admin.partition(":")
    if not sep or not who_index.isdigit():
        fail(f"the administrator is INDEX:HANDLE, got {admin!r}", 2)
    try:
        perms = (
            AdminPermission.ALL
            if permissions == "all"
            else AdminPermission.from_bit_string(permissions)
        )
    except ValueError as exc:
        fail(str(exc), 2)
    data = AdminValue(perms, ValueReference(who, int(who_index))).to_bytes()
    target.send(OpCode.ADD_VALUE, AddValueRequest(handle, (HandleValue(index, "HS_ADMIN", data),)))
    target.done(handle, f"granted {perms.bit_string()} on {handle} to {admin}")


@admin_app.command("revoke")
@target_options()
def admin_revoke(
    handle: Annotated[str, typer.Argument(help="The handle administered.")],
    index: Annotated[int, typer.Argument(help="Index of the HS_ADMIN value to remove.")],
    target: Target,
) -> None:
    """Remove an HS_ADMIN value."""
    target.send(OpCode.REMOVE_VALUE, RemoveValueRequest(handle, (index,)))
    target.done(handle, f"revoked HS_ADMIN {index} of {handle}")
