"""``idnode resolve``: a handle over the Handle protocol, from any Handle server."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from idnode.cli.common import (
    HashedSecret,
    credentials_from,
    fail,
    fail_with,
    out,
    parse_server,
    positive,
)
from idnode.errors import IdnodeError, NotResponsible, Referral, RemoteProtocolError, SessionFailed
from idnode.handle.codes import OpCode, ResponseCode

if TYPE_CHECKING:
    # The client, the resolver and the codec are imported where they are used: a
    # resolution asked of one --server needs no resolver, a failed one no table.
    from idnode.client import Credentials, Transport
    from idnode.domain import HandleRecord
    from idnode.handle.messages import Message

__all__ = ["resolve"]


def resolve(
    handle: Annotated[str, typer.Argument(help="Handle to resolve, e.g. 88.100.1/PUMP-0001.")],
    server: Annotated[
        str | None,
        typer.Option(
            help="Ask this Handle server only, host[:port]; default: resolve from --root."
        ),
    ] = None,
    root: Annotated[
        str,
        typer.Option(
            envvar="IDNODE_ROOT_SERVERS",
            help="Root servers global resolution starts from, address[:port][,...].",
        ),
    ] = "127.0.0.1:2641",
    index: Annotated[list[int] | None, typer.Option(help="Only values with this index.")] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="Only values of this type ('X.' = subtypes).")
    ] = None,
    transport: Annotated[
        str, typer.Option(help="auto (UDP, TCP if truncated), udp or tcp.")
    ] = "auto",
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for an answer (above 0).", callback=positive)
    ] = 3.0,
    auth: Annotated[
        str | None,
        typer.Option(
            help="Read as this identity, INDEX:HANDLE (needs --server): non-public values too."
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="PEM private key of the --auth identity's HS_PUBKEY.")
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="File holding the --auth identity's secret key (else $IDNODE_SECRET)."),
    ] = None,
    hashed_secret: HashedSecret = False,
    certify: Annotated[
        bool,
        typer.Option(
            help="Ask --server to sign its answer and check the signature with the key its"
            " site information names."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print Handle.Net-style JSON.")] = False,
) -> None:
    """Resolve a handle over the Handle protocol (works against any Handle server).

    Without --server the handle is resolved globally: its prefix handle from the root
    servers, then the handle from the prefix's site, following referrals. With --auth
    the server is asked for every value the identity may read, over TCP, answering its
    challenge with the identity's key.
    """
    secret = (secret_file, hashed_secret)
    chosen, credentials = _options(transport, server, auth, key, secret, certify)
    indexes, types = tuple(index or ()), tuple(type_ or ())
    try:
        if credentials is not None:
            assert server is not None
            record = _resolve_as(server, handle, indexes, types, credentials, timeout)
        elif server is None:
            from idnode.resolver import Resolver
            from idnode.sites import parse_endpoints

            resolver = Resolver.from_endpoints(parse_endpoints(root), timeout=timeout)
            record = resolver.resolve(handle, indexes, types)
        else:
            record = _resolve_at(server, handle, indexes, types, chosen, timeout, certify)
    except IdnodeError as exc:
        if as_json:
            out.print_json(
                data={
                    "responseCode": int(exc.response_code),
                    "handle": handle,
                    "message": exc.message,
                }
            )
        fail_with(exc, hint=_hint(exc, handle, server, root))
    from rich.table import Table

    from idnode.jsonformat import record_to_json, value_to_json

    if as_json:
        out.print_json(data={"responseCode": 1} | record_to_json(record))
        return
    table = Table(title=record.handle, title_justify="left")
    for column in ("index", "type", "data", "ttl", "permissions"):
        # Data is folded, never cut with an ellipsis: a truncated URL is useless.
        table.add_column(column, overflow="fold")
    for value in record.values:
        shown = value_to_json(value)["data"]["value"]
        table.add_row(
            str(value.index),
            value.type,
            shown if isinstance(shown, str) else json.dumps(shown),
            str(value.ttl),
            value.permissions.bit_string(),
        )
    out.print(table)


def _hint(exc: IdnodeError, handle: str, server: str | None, root: str) -> str:
    """What to try next when ``handle`` could not be resolved as asked."""
    from idnode.client import ServerUnreachable

    if isinstance(exc, NotResponsible):
        prefix = exc.prefix or handle.partition("/")[0]
        if server is not None:
            return (
                f"{server} does not hold prefix {prefix}: ask the node that does with"
                f" --server HOST:PORT, or resolve globally with --root (without --server)"
            )
        return (
            f"resolution started at --root {root}, which does not lead to prefix {prefix}:"
            f" give the root servers of the network that holds it with --root HOST:PORT"
            f" (or $IDNODE_ROOT_SERVERS), or the node that holds it with --server HOST:PORT"
        )
    if isinstance(exc, ServerUnreachable):
        asked = f"--server {server}" if server is not None else f"--root {root}"
        return f"is a node running at {asked}? Give another with --server or --root"
    return ""


def _options(
    transport: str,
    server: str | None,
    auth: str | None,
    key: Path | None,
    secret: tuple[Path | None, bool],
    certify: bool,
) -> tuple[Transport, Credentials | None]:
    """The transport and credentials ``idnode resolve`` was given, or exit code 2."""
    if transport not in ("auto", "udp", "tcp"):
        fail("--transport must be auto, udp or tcp", 2)
    credentials = None
    if auth is not None:
        if server is None:
            fail("--auth needs --server: an identity proves itself to one server", 2)
        credentials = credentials_from(auth, key, *secret)
    if certify and (server is None or credentials is not None):
        fail("--certify needs --server (and no --auth)", 2)
    return transport, credentials  # type: ignore[return-value]


def _resolve_at(
    server: str,
    handle: str,
    indexes: tuple[int, ...],
    types: tuple[str, ...],
    transport: Transport,
    timeout: float,
    certify: bool = False,
) -> HandleRecord:
    from idnode.client import HandleClient

    host, port = parse_server(server)
    client = HandleClient(host, port, timeout=timeout)
    key = client.server_key() if certify else None
    reply = client.resolve(handle, indexes, types, transport, certified_by=key)
    if reply.truncated:
        fail("the answer did not fit in a UDP packet (truncated); use --transport tcp or auto")
    return _record_of(reply)


def _resolve_as(
    server: str,
    handle: str,
    indexes: tuple[int, ...],
    types: tuple[str, ...],
    credentials: Credentials,
    timeout: float,
) -> HandleRecord:
    """Resolution without PUBLIC_ONLY, answering the server's challenge as
    ``credentials``: in a session, where a server that answers anonymous reads with
    the public values (idnode's default, for IDIS clients) challenges such a read."""
    from idnode.client import HandleClient
    from idnode.handle.messages import ResolutionRequest

    host, port = parse_server(server)
    client = HandleClient(host, port, timeout=timeout)
    request = ResolutionRequest(handle, indexes, types)
    with contextlib.suppress(SessionFailed):
        # A server without sessions challenges the read outside one, if at all.
        client.open_session()
    try:
        return _record_of(client.authenticated(OpCode.RESOLUTION, request, credentials)[0])
    finally:
        if client.session is not None:
            client.close_session()


def _record_of(reply: Message) -> HandleRecord:
    from idnode.client import answer_error
    from idnode.domain import HandleRecord
    from idnode.handle.messages import ReferralResponse, ResolutionResponse
    from idnode.sites import addresses, sites_in

    body = reply.body
    if isinstance(body, ResolutionResponse) and reply.response_code == ResponseCode.SUCCESS:
        return HandleRecord(body.handle, body.values)
    if isinstance(body, ReferralResponse):
        where = ", ".join(a for site in sites_in(body.values) for a in addresses(site))
        text = f"ask the site of {body.handle} ({where or 'no address given'})"
        raise Referral(text, body.handle, body.values)
    if reply.response_code == ResponseCode.SUCCESS:
        raise RemoteProtocolError("the server answered without the handle's values")
    raise answer_error(reply)
