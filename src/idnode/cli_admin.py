"""The ``idnode`` commands that administer handles over the Handle protocol.

``create``, ``add``, ``modify``, ``remove``, ``delete``, ``list`` and ``admin
grant|revoke`` speak the protocol to any Handle server (ours or another), proving the
identity given by ``--auth INDEX:HANDLE`` with a private key (``--key``) or a secret
key (``--secret-file``, or the IDNODE_SECRET environment variable; never on the
command line, where other users could read it). ``keygen`` makes keys; ``audit``
reads the local node's audit log.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Annotated

import typer

from idnode.cli import (
    DataDir,
    HashedSecret,
    _fail,
    _open,
    _parse_server,
    app,
    credentials_from,
    err,
    out,
)
from idnode.client import Credentials, HandleClient, listed
from idnode.domain import AuditQuery
from idnode.errors import IdnodeError
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    AddValueRequest,
    Body,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    ErrorResponse,
    ListHandlesRequest,
    Message,
    ModifyValueRequest,
    RemoveValueRequest,
)
from idnode.handle.values import DEFAULT_PERMISSIONS, HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.jsonformat import record_to_json, value_to_json
from idnode.keys import generate_key, handle_public_key, hashed_secret

admin_app = typer.Typer(help="Grant or revoke administrators of a handle (HS_ADMIN values).")
app.add_typer(admin_app, name="admin")

Server = Annotated[str, typer.Option(help="Handle server, host[:port].")]
Auth = Annotated[str, typer.Option("--auth", help="Identity INDEX:HANDLE, e.g. 300:0.NA/88.100.1.")]
Key = Annotated[
    Path | None, typer.Option("--key", help="PEM private key of the identity's HS_PUBKEY.")
]
SecretFile = Annotated[
    Path | None,
    typer.Option(help="File holding the identity's secret key (else $IDNODE_SECRET)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Values = Annotated[
    list[str],
    typer.Option(
        "--value", "-v", help="A value as INDEX:TYPE:DATA, e.g. 1:URL:https://example.com."
    ),
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for an answer.")]
SECRET_PERMISSIONS = Permission.ADMIN_READ | Permission.ADMIN_WRITE


def _parse_value(text: str) -> HandleValue:
    index, sep1, rest = text.partition(":")
    vtype, sep2, data = rest.partition(":")
    if not (sep1 and sep2 and index.isdigit() and vtype):
        _fail(f"a value is INDEX:TYPE:DATA, got {text!r}", 2)
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
        _fail(f"{text!r}: {exc.message}", 2)


def _send(
    server: str,
    timeout: float,
    opcode: OpCode,
    body: Body,
    creds: Credentials,
    flags: OpFlag = OpFlag.NONE,
) -> list[Message]:
    host, port = _parse_server(server)
    try:
        replies = HandleClient(host, port, timeout=timeout).authenticated(
            opcode, body, creds, flags
        )
    except IdnodeError as exc:
        _fail(exc.message)
    reply = replies[0]
    if reply.response_code != ResponseCode.SUCCESS:
        text = reply.body.message if isinstance(reply.body, ErrorResponse) else ""
        code = reply.response_code
        _fail(f"{code.name.lower().replace('_', ' ')} ({int(code)}): {text}".rstrip(": "))
    return replies


def _done(as_json: bool, handle: str, text: str) -> None:
    if as_json:
        out.print_json(data={"responseCode": 1, "handle": handle})
    else:
        out.print(text, highlight=False)


@app.command()
def create(
    handle: Annotated[str, typer.Argument(help="The handle (with --mint: its start).")],
    value: Values,
    auth: Auth,
    key: Key = None,
    secret_file: SecretFile = None,
    hashed_secret: HashedSecret = False,
    server: Server = "127.0.0.1:2641",
    overwrite: Annotated[bool, typer.Option(help="Replace the handle if it exists.")] = False,
    mint: Annotated[bool, typer.Option(help="Let the server append a new suffix.")] = False,
    timeout: Timeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Create a handle with the given values."""
    values = tuple(_parse_value(v) for v in value)
    flags = (OpFlag.OVERWRITE if overwrite else OpFlag.NONE) | (
        OpFlag.MINT_NEW_SUFFIX if mint else OpFlag.NONE
    )
    body = CreateHandleRequest(handle, values)
    creds = credentials_from(auth, key, secret_file, hashed_secret)
    replies = _send(server, timeout, OpCode.CREATE_HANDLE, body, creds, flags)
    reply = replies[0].body
    made = reply.handle if isinstance(reply, CreateHandleResponse) and reply.handle else handle
    _done(as_json, made, f"created {made}")


def _values_command(opcode: OpCode, verb: str, doc: str) -> None:
    def command(
        handle: Annotated[str, typer.Argument(help="The handle.")],
        value: Values,
        auth: Auth,
        key: Key = None,
        secret_file: SecretFile = None,
        hashed_secret: HashedSecret = False,
        server: Server = "127.0.0.1:2641",
        timeout: Timeout = 10.0,
        as_json: AsJson = False,
    ) -> None:
        values = tuple(_parse_value(v) for v in value)
        body: Body = (
            AddValueRequest(handle, values)
            if opcode == OpCode.ADD_VALUE
            else ModifyValueRequest(handle, values)
        )
        creds = credentials_from(auth, key, secret_file, hashed_secret)
        _send(server, timeout, opcode, body, creds)
        _done(as_json, handle, f"{verb} {len(values)} value(s) of {handle}")

    command.__doc__ = doc
    app.command(name="add" if opcode == OpCode.ADD_VALUE else "modify")(command)


_values_command(OpCode.ADD_VALUE, "added", "Add values to a handle at unused indexes.")
_values_command(OpCode.MODIFY_VALUE, "modified", "Replace values of a handle, matched by index.")


@app.command()
def remove(
    handle: Annotated[str, typer.Argument(help="The handle.")],
    index: Annotated[list[int], typer.Argument(help="Indexes of the values to remove.")],
    auth: Auth,
    key: Key = None,
    secret_file: SecretFile = None,
    hashed_secret: HashedSecret = False,
    server: Server = "127.0.0.1:2641",
    timeout: Timeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Remove values of a handle by index."""
    body = RemoveValueRequest(handle, tuple(index))
    creds = credentials_from(auth, key, secret_file, hashed_secret)
    _send(server, timeout, OpCode.REMOVE_VALUE, body, creds)
    _done(as_json, handle, f"removed {len(index)} value(s) of {handle}")


@app.command()
def delete(
    handle: Annotated[str, typer.Argument(help="The handle to delete.")],
    auth: Auth,
    key: Key = None,
    secret_file: SecretFile = None,
    hashed_secret: HashedSecret = False,
    server: Server = "127.0.0.1:2641",
    timeout: Timeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Delete a handle and all its values."""
    body = DeleteHandleRequest(handle)
    creds = credentials_from(auth, key, secret_file, hashed_secret)
    _send(server, timeout, OpCode.DELETE_HANDLE, body, creds)
    _done(as_json, handle, f"deleted {handle}")


@app.command("list")
def list_(
    prefix: Annotated[str, typer.Argument(help="The prefix, e.g. 88.100.1.")],
    auth: Auth,
    key: Key = None,
    secret_file: SecretFile = None,
    hashed_secret: HashedSecret = False,
    server: Server = "127.0.0.1:2641",
    timeout: Timeout = 30.0,
    as_json: AsJson = False,
) -> None:
    """List the handles under a prefix (needs LIST_HANDLES)."""
    body = ListHandlesRequest(f"0.NA/{prefix}")
    creds = credentials_from(auth, key, secret_file, hashed_secret)
    replies = _send(server, timeout, OpCode.LIST_HANDLES, body, creds)
    handles = listed(replies)
    if as_json:
        out.print_json(data={"responseCode": 1, "prefix": prefix, "handles": handles})
        return
    for handle in handles:
        out.print(handle, highlight=False)


@app.command()
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, 0600).")],
    secret: Annotated[
        bool, typer.Option(help="Write a random secret key instead of an RSA key pair.")
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
        _fail(f"{path} exists; not overwriting a key", 1)
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
        value = HandleValue(index, "HS_PUBKEY", handle_public_key(generate_key(path)).to_bytes())
    err.print(f"wrote {path}; add this value to the identity's handle:", highlight=False)
    out.print(json.dumps(value_to_json(value)), highlight=False)


@admin_app.command("grant")
def admin_grant(
    handle: Annotated[str, typer.Argument(help="The handle to administer.")],
    admin: Annotated[str, typer.Argument(help="The administrator, INDEX:HANDLE.")],
    auth: Auth,
    index: Annotated[int, typer.Option(help="Index of the new HS_ADMIN value.")] = 100,
    permissions: Annotated[
        str, typer.Option(help="Twelve 0/1 characters (Handle.Net order) or 'all'.")
    ] = "all",
    key: Key = None,
    secret_file: SecretFile = None,
    hashed_secret: HashedSecret = False,
    server: Server = "127.0.0.1:2641",
    timeout: Timeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Add an HS_ADMIN value granting permissions over a handle."""
    who_index, sep, who = admin.partition(":")
    if not sep or not who_index.isdigit():
        _fail(f"the administrator is INDEX:HANDLE, got {admin!r}", 2)
    try:
        perms = (
            AdminPermission.ALL
            if permissions == "all"
            else AdminPermission.from_bit_string(permissions)
        )
    except ValueError as exc:
        _fail(str(exc), 2)
    data = AdminValue(perms, ValueReference(who, int(who_index))).to_bytes()
    body = AddValueRequest(handle, (HandleValue(index, "HS_ADMIN", data),))
    creds = credentials_from(auth, key, secret_file, hashed_secret)
    _send(server, timeout, OpCode.ADD_VALUE, body, creds)
    _done(as_json, handle, f"granted {perms.bit_string()} on {handle} to {admin}")


@admin_app.command("revoke")
def admin_revoke(
    handle: Annotated[str, typer.Argument(help="The handle administered.")],
    index: Annotated[int, typer.Argument(help="Index of the HS_ADMIN value to remove.")],
    auth: Auth,
    key: Key = None,
    secret_file: SecretFile = None,
    hashed_secret: HashedSecret = False,
    server: Server = "127.0.0.1:2641",
    timeout: Timeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Remove an HS_ADMIN value."""
    body = RemoveValueRequest(handle, (index,))
    creds = credentials_from(auth, key, secret_file, hashed_secret)
    _send(server, timeout, OpCode.REMOVE_VALUE, body, creds)
    _done(as_json, handle, f"revoked HS_ADMIN {index} of {handle}")


@app.command()
def audit(
    data_dir: DataDir = Path(".idnode"),
    handle: Annotated[str | None, typer.Option(help="Only writes to this handle.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only writes by INDEX:HANDLE.")] = None,
    hours: Annotated[int, typer.Option(help="How many hours back, 0 for all.")] = 24,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 1000,
    as_json: AsJson = False,
) -> None:
    """Show the node's audit log: who wrote what, from where, before and after."""
    node = _open(data_dir)
    try:
        since = time.time() - hours * 3600 if hours else 0.0
        entries = node.service.writes.audit_log(AuditQuery(handle, actor, since, limit))
    finally:
        node.close()
    for e in entries:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at))
        if as_json:
            line = {
                "at": when,
                "actor": e.actor,
                "origin": e.origin,
                "operation": e.operation,
                "handle": e.handle,
                "before": None if e.before is None else record_to_json(e.before)["values"],
                "after": None if e.after is None else record_to_json(e.after)["values"],
            }
            out.print(json.dumps(line, ensure_ascii=False), highlight=False, soft_wrap=True)
        else:
            out.print(f"{when}  {e.actor}  {e.origin}  {e.operation}  {e.handle}", highlight=False)
