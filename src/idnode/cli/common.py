"""What every command shares: the consoles, how a failure is reported, and the option
groups several commands take.

An option group is a decorator (as sqlite-utils' ``output_options``): it replaces one
parameter of a command, typed with the group's result, by the group's options, and
hands the command the object built from them. So ``--data-dir`` and opening the node,
or the seven options that say which server to administer as whom, are written once.

Exit codes: 0 success; 1 the operation failed (the message says why: handle not
found, server unreachable, rejected input, ...); 2 the command line was wrong.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from idnode.errors import IdnodeError
from idnode.handle.codes import OpCode, OpFlag, ResponseCode

if TYPE_CHECKING:
    # Imported where they are used, not here: every command imports this module, and
    # `idnode resolve` should not pay for the node, its storage and its service.
    from rich.progress import Progress

    from idnode.client import Credentials
    from idnode.config import Config
    from idnode.domain import HandleRecord
    from idnode.handle.messages import Body, Message
    from idnode.node import Node

__all__ = [
    "AsJson",
    "DataDir",
    "HashedSecret",
    "Target",
    "advancing",
    "config_of",
    "credentials_from",
    "err",
    "fail",
    "fail_with",
    "local_node",
    "out",
    "parse_server",
    "progress_bars",
    "target_options",
]

_F = TypeVar("_F", bound=Callable[..., Any])

# soft_wrap: messages are not broken at the terminal width, so they stay greppable.
# No markup: what is printed holds values, handles and messages a user wrote, and a
# "[/]" in one would be read as a style tag (or fail to be: a traceback).
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", "-d", envvar="IDNODE_DATA_DIR", help="Node data directory."),
]
HashedSecret = Annotated[
    bool,
    typer.Option(
        "--hashed-secret",
        help="The secret is a passphrase; the identity's HS_SECKEY holds its SHA-1"
        " (Handle.Net's hashed secret keys, as 'idnode keygen --secret' makes them).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(Text.assemble(("error:", "bold red"), f" {message}"), highlight=False)
    raise typer.Exit(code)


def fail_with(exc: IdnodeError, code: int = 1, *, hint: str = "") -> NoReturn:
    """Report ``exc``, naming its response code unless it is the generic ERROR (a
    server's refusal reads "handle not found (100): ..."), and ``hint``, what to try."""
    response = exc.response_code
    said = "" if exc.message == response.name else exc.message
    if response == ResponseCode.ERROR:
        text = exc.message
    else:
        text = f"{response.name.lower().replace('_', ' ')} ({int(response)}): {said}".rstrip(": ")
    fail(f"{text}\nhint: {hint}" if hint else text, code)


def config_of(data_dir: Path, **overrides: Any) -> Config:
    from idnode.config import load_config

    try:
        return load_config(data_dir, overrides)
    except IdnodeError as exc:
        fail(exc.message)


def parse_server(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep:
        return server, 2641
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        fail(f"--server must be host or host:port, got {server!r}", 2)


def credentials_from(
    auth: str, key: Path | None, secret_file: Path | None, hashed: bool = False
) -> Credentials:
    """The identity ``--auth INDEX:HANDLE`` and what proves it: ``--key`` (a private
    key), ``--secret-file``, or the IDNODE_SECRET variable (never the command line,
    where other users could read it). With ``hashed`` the secret is a passphrase whose
    hash the identity's HS_SECKEY value holds (see :func:`idnode.keys.hashed_secret`)."""
    from idnode.client import Credentials
    from idnode.handle.values import ValueReference
    from idnode.keys import hashed_secret, load_private_key

    index, sep, handle = auth.partition(":")
    if not sep or not index.isdigit() or not handle:
        fail(f"--auth must be INDEX:HANDLE, got {auth!r}", 2)
    identity = ValueReference(handle, int(index))
    if key is not None:
        try:
            return Credentials(identity, private_key=load_private_key(key))
        except IdnodeError as exc:
            fail(exc.message, 2)
    if secret_file is not None:
        try:
            secret = secret_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            fail(f"cannot read {secret_file}: {exc.strerror}", 2)
    else:
        env = os.environ.get("IDNODE_SECRET")
        if not env:
            fail("give --key, --secret-file or IDNODE_SECRET to prove the --auth identity", 2)
        secret = env.encode()
    return Credentials(identity, secret=hashed_secret(secret) if hashed else secret)


def progress_bars() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )


def advancing(
    progress: Progress, description: str, records: Iterable[HandleRecord]
) -> Iterator[HandleRecord]:
    """``records``, counted on a progress line as they are consumed."""
    task = progress.add_task(description, total=None)
    for record in records:
        progress.advance(task)
        yield record


# -- option groups ----------------------------------------------------------------


def _option_group(
    name: str, options: list[inspect.Parameter], build: Callable[..., Any]
) -> Callable[[_F], _F]:
    """A decorator replacing the command's parameter ``name`` by ``options``; the
    command gets ``build(**their values)`` there (a generator: the value it yields,
    and it finishes when the command does)."""

    def decorate(command: _F) -> _F:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != name]
        taken = {p.name for p in options}

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in taken}
            with contextmanager(build)(**given) as value:
                return command(*args, **kwargs, **{name: value})

        params = [*kept, *options]
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def local_node(parameter: str = "node") -> Callable[[_F], _F]:
    """``--data-dir``, and the command gets the node opened there (closed after it;
    a directory that is not a node's exits with its reason)."""

    def open_at(data_dir: Path) -> Iterator[Node]:
        from idnode.node import open_node

        try:
            node = open_node(config_of(data_dir))
        except IdnodeError as exc:
            fail(exc.message)
        try:
            yield node
        finally:
            node.close()

    return _option_group(parameter, [_keyword("data_dir", DataDir, Path(".idnode"))], open_at)


@dataclass(frozen=True)
class Target:
    """A Handle server to administer handles at, and the identity to do it as."""

    server: str
    timeout: float
    credentials: Credentials
    as_json: bool

    def send(self, opcode: OpCode, body: Body, flags: OpFlag = OpFlag.NONE) -> list[Message]:
        """The server's replies to an authenticated request; a refusal exits 1 with
        the server's response code and message."""
        from idnode.client import HandleClient, answer_error

        host, port = parse_server(self.server)
        try:
            replies = HandleClient(host, port, timeout=self.timeout).authenticated(
                opcode, body, self.credentials, flags
            )
            if replies[0].response_code != ResponseCode.SUCCESS:
                raise answer_error(replies[0])
        except IdnodeError as exc:
            fail_with(exc)
        return replies

    def done(self, handle: str, text: str) -> None:
        if self.as_json:
            out.print_json(data={"responseCode": 1, "handle": handle})
        else:
            out.print(text, highlight=False)


def positive(value: float) -> float:
    """A number of seconds given on the command line, refused unless above 0."""
    if value <= 0:
        raise typer.BadParameter(f"must be above 0, not {value}")
    return value


def target_options(timeout: float = 10.0, parameter: str = "target") -> Callable[[_F], _F]:
    """``--server``, ``--auth`` with ``--key``/``--secret-file``/``--hashed-secret``,
    ``--timeout`` and ``--json``: the command gets a :class:`Target`."""

    def build(
        auth: str,
        key: Path | None,
        secret_file: Path | None,
        hashed_secret: bool,
        server: str,
        timeout: float,
        as_json: bool,
    ) -> Iterator[Target]:
        yield Target(
            server, timeout, credentials_from(auth, key, secret_file, hashed_secret), as_json
        )

    options = [
        _keyword(
            "auth",
            Annotated[
                str,
                typer.Option("--auth", help="Identity INDEX:HANDLE, e.g. 300:0.NA/88.100.1."),
            ],
            inspect.Parameter.empty,
        ),
        _keyword(
            "key",
            Annotated[
                Path | None,
                typer.Option("--key", help="PEM private key of the identity's HS_PUBKEY."),
            ],
            None,
        ),
        _keyword(
            "secret_file",
            Annotated[
                Path | None,
                typer.Option(help="File holding the identity's secret key (else $IDNODE_SECRET)."),
            ],
            None,
        ),
        _keyword("hashed_secret", HashedSecret, False),
        _keyword(
            "server",
            Annotated[
                str, typer.Option(envvar="IDNODE_SERVER", help="Handle server, host[:port].")
            ],
            "127.0.0.1:2641",
        ),
        _keyword(
            "timeout",
            Annotated[
                float,
                typer.Option(help="Seconds to wait for an answer (above 0).", callback=positive),
            ],
            timeout,
        ),
        _keyword(
            "as_json",
            Annotated[bool, typer.Option("--json", help="Print the result as JSON.")],
            False,
        ),
    ]
    return _option_group(parameter, options, build)
