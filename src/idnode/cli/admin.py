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

from idnode.cli.common import (
    Target,
    err,
    fail,
    out,
    parse_server,
    target_options,
)
from idnode.cli.help import HELP_MARKUP, Commands
from idnode.client import HandleClient, listed
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
    "identity_app",
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
    value, use = _new_key(path, secret=secret, sm2=sm2, hashed=hashed, index=index)
    if secret:
        err.print(f"prove the identity with {use}", highlight=False)
    err.print(f"wrote {path}; add this value to the identity's handle:", highlight=False)
    out.print(json.dumps(value_to_json(value)), highlight=False)


def _new_key(
    path: Path, *, secret: bool, sm2: bool, hashed: bool, index: int
) -> tuple[HandleValue, str]:
    """Write a new key to ``path`` (never over an existing file): the value for the
    identity's handle, and the options that prove the identity with it."""
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
        return value, f"--secret-file {path}" + (" --hashed-secret" if hashed else "")
    key = generate_key(path, "sm2" if sm2 else "rsa")
    return HandleValue(index, "HS_PUBKEY", handle_public_key(key).to_bytes()), f"--key {path}"


def parse_permissions(text: str) -> AdminPermission:
    """``all``, Handle.Net's twelve 0/1 characters, or permission names separated by
    commas (``add_handle,read_value``); ValueError naming the names there are."""
    if text.strip().lower() == "all":
        return AdminPermission.ALL
    if len(text) == 12 and set(text) <= {"0", "1"}:
        return AdminPermission.from_bit_string(text)
    granted = AdminPermission.NONE
    for name in (part.strip() for part in text.split(",")):
        member = AdminPermission.__members__.get(name.upper().replace("-", "_"))
        if member is None or member in (AdminPermission.NONE, AdminPermission.ALL) or not name:
            raise ValueError(
                f"no permission {name!r}; permissions are 'all', twelve 0/1 characters, or"
                f" names separated by commas: {', '.join(PERMISSION_NAMES)}"
            )
        granted |= member
    return granted


PERMISSION_NAMES = [
    name.lower() for name, flag in AdminPermission.__members__.items() if flag.bit_count() == 1
]


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
        str,
        typer.Option(
            help="Names separated by commas (add_handle,read_value,...), twelve 0/1"
            " characters (Handle.Net order), or 'all'."
        ),
    ] = "all",
) -> None:
    """Add an HS_ADMIN value granting permissions over a handle."""
    who_index, sep, who = admin.partition(":")
    if not sep or not who_index.isdigit():
        fail(f"the administrator is INDEX:HANDLE, got {admin!r}", 2)
    try:
        perms = parse_permissions(permissions)
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


identity_app = typer.Typer(
    help="Identities: a handle with a key that proves it, and what it may do.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    cls=Commands,
)


@identity_app.command("create")
@target_options()
def identity_create(
    handle: Annotated[str, typer.Argument(help="The identity's handle, e.g. 88.100.1/WRITER.")],
    path: Annotated[Path, typer.Argument(help="Where to write its private key or secret (0600).")],
    target: Target,
    secret: Annotated[
        bool, typer.Option(help="A random secret key (stored hashed) instead of a key pair.")
    ] = False,
    sm2: Annotated[bool, typer.Option("--sm2", help="An SM2 key pair instead of RSA.")] = False,
    index: Annotated[int, typer.Option(help="Index of the key value.", min=1)] = 300,
    grant: Annotated[
        str | None,
        typer.Option(help="A handle it may administer, e.g. 0.NA/88.100.1 for its prefix."),
    ] = None,
    permissions: Annotated[
        str | None,
        typer.Option(
            help="With --grant: what it may do, names separated by commas"
            " (add_handle,add_value,modify_value,...) or 'all'."
        ),
    ] = None,
) -> None:
    """Create an identity: make its key, create its handle holding the key and,
    with --grant, give it the named permissions over another handle."""
    if (grant is None) != (permissions is None):
        fail(
            "--grant and --permissions go together: name the handle and what the identity"
            f" may do with it ({', '.join(PERMISSION_NAMES)}, or all)",
            2,
        )
    try:
        granted = None if permissions is None else parse_permissions(permissions)
    except ValueError as exc:
        fail(str(exc), 2)
    value, use = _new_key(path, secret=secret, sm2=sm2, hashed=True, index=index)
    try:
        target.send(OpCode.CREATE_HANDLE, CreateHandleRequest(handle, (value,)))
    except typer.Exit:
        path.unlink()  # the identity does not exist: its key would only confuse
        raise
    who = f"{index}:{handle}"
    err.print(f"created {handle} with its {value.type} at {index}", highlight=False)
    if grant is not None and granted is not None:
        at = _free_admin_index(target, grant)
        data = AdminValue(granted, ValueReference(handle, index)).to_bytes()
        target.send(OpCode.ADD_VALUE, AddValueRequest(grant, (HandleValue(at, "HS_ADMIN", data),)))
        names = [n for n in PERMISSION_NAMES if AdminPermission[n.upper()] in granted]
        err.print(f"granted {', '.join(names)} on {grant} (HS_ADMIN {at})", highlight=False)
    target.done(handle, f"act as it with --auth {who} {use}")


def _free_admin_index(target: Target, handle: str) -> int:
    """The first index from 101 among ``handle``'s public values that none uses (an
    index held by a value nobody may read is refused by the server as taken)."""
    host, port = parse_server(target.server)
    try:
        reply = HandleClient(host, port, timeout=target.timeout).resolve(handle)
    except IdnodeError as exc:
        fail(f"cannot read {handle} to find a free index: {exc.message}")
    used = {v.index for v in getattr(reply.body, "values", ())}
    return next(n for n in range(101, 2**31) if n not in used)
