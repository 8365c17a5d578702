"""Global resolution: from the root's site to the server that holds a handle.

How ``P/S`` is found, as Handle.Net clients do it, plus idnode's referrals:

1. The sites of prefix ``P`` are the HS_SITE values of the prefix handle ``0.NA/P``
   (or the HS_SITE values of the handles its HS_SERV values name). Prefix handles are
   asked of the root sites.
2. The handle is asked at the first of those sites (primary sites first) whose server
   answers; within a site, the site's hash option picks the server.
3. A referral (302/303) says "ask these sites instead": its values are read like a
   prefix handle's. An answer holding an HS_ALIAS value says "resolve that handle".

Every referral, service handle and alias is a hop; more than ``max_hops`` in one
resolution, or the same question put to the same server twice, ends it with
:class:`RecursionTooDeep` instead of going round for ever. Answers are kept in a
bounded cache for their values' TTL (the shortest one), and "not found" answers for
``negative_seconds``, so the prefix handles on the way are asked once per TTL.

Theory of operation. A resolution is one state machine, written once as a generator
(as h11 and dnspython's ``_Resolution`` keep the protocol apart from the I/O): it
yields each :class:`Question` it needs put to a server and is sent the reply (or has
the failure thrown in), until it returns the record. Two drivers put the questions:
:meth:`Resolver.resolve` with the blocking client, for the CLI and threads, and
:meth:`Resolver.resolve_async` with the asyncio client, for the servers, so that a
server waiting on another goes on answering its own clients.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from idnode import client_asyncio
from idnode.client import (
    HandleClient,
    ServerTimedOut,
    ServerUnreachable,
    Transport,
    answer_error,
    verified,
)
from idnode.domain import HandleRecord
from idnode.errors import (
    HandleNotFound,
    IdnodeError,
    NotResponsible,
    RecursionTooDeep,
    RemoteProtocolError,
    ServerError,
    ValuesNotFound,
)
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import (
    Body,
    ErrorResponse,
    Message,
    ReferralResponse,
    ResolutionRequest,
    ResolutionResponse,
    VerifyChallengeRequest,
)
from idnode.handle.values import HandleValue, TTLType, ValueReference
from idnode.handle.valuetypes import Alias, SiteInfo
from idnode.names import NA_PREFIX, handle_key, split_handle
from idnode.sites import Endpoint, endpoint, server_for, service_handles, site_of, sites_in

__all__ = ["AnswerCache", "Question", "Resolver"]

_Key = tuple[str, tuple[int, ...], tuple[str, ...]]
_T = TypeVar("_T")
# What a resolution may answer, relayed as it is; any other failure is the server's.
_RELAYED = frozenset(
    (
        ResponseCode.HANDLE_NOT_FOUND,
        ResponseCode.VALUES_NOT_FOUND,
        ResponseCode.INVALID_HANDLE,
        ResponseCode.SERVER_NOT_RESPONSIBLE,
        ResponseCode.RECURSION_COUNT_TOO_HIGH,
    )
)


@dataclass(frozen=True)
class _Entry:
    expires: float
    record: HandleRecord | None
    # A remembered "not found": its class and message. Raised as a new exception each
    # time, since raising one instance again would grow its traceback without end.
    error: tuple[type[IdnodeError], str] | None


class AnswerCache:
    """Answers by (handle, indexes, types), each kept until its TTL runs out.

    Least recently used entries go first once ``max_entries`` are held. Thread-safe,
    so one resolver can serve several threads; each worker process has its own.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        negative_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._max = max_entries
        self._negative = negative_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: _Key) -> HandleRecord | None:
        """The cached answer, None when there is none; a cached "not found" is raised."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        if entry.error is not None:
            kind, message = entry.error
            raise kind(message)
        return entry.record

    def put(self, key: _Key, record: HandleRecord) -> None:
        now = self._clock()
        seconds = min((_seconds_left(v, now) for v in record.values), default=self._negative)
        self._store(key, _Entry(now + seconds, record, None))

    def put_error(self, key: _Key, error: IdnodeError) -> None:
        self._store(key, _Entry(self._clock() + self._negative, None, (type(error), error.message)))

    def _store(self, key: _Key, entry: _Entry) -> None:
        if self._max == 0 or entry.expires <= self._clock():
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _seconds_left(value: HandleValue, now: float) -> float:
    if value.ttl_type == TTLType.ABSOLUTE:
        return max(0.0, value.ttl - now)
    return float(value.ttl)


class _Trail:
    """The hops of one resolution, to stop loops and overlong chains."""

    def __init__(self, max_hops: int) -> None:
        self._max = max_hops
        self._steps: list[str] = []
        self._asked: set[tuple[Endpoint, str]] = set()

    def hop(self, step: str) -> None:
        self._steps.append(step)
        if len(self._steps) > self._max:
            raise RecursionTooDeep(
                f"gave up after {self._max} referrals, service handles and aliases: "
                + " -> ".join(self._steps[-4:])
            )

    def ask(self, where: Endpoint, handle: str) -> None:
        question = (where, handle_key(handle))
        if question in self._asked:
            raise RecursionTooDeep(
                f"referral loop: {handle} would be asked of {where[0]}:{where[1]} again"
                + (f" (after {' -> '.join(self._steps[-4:])})" if self._steps else "")
            )
        self._asked.add(question)


class ServerHealth:
    """The servers that failed to answer lately, so that resolutions ask them last.

    A server is never skipped, only put behind the others for ``down_seconds`` after it
    failed (until it answers again): a resolution still succeeds when every server is
    marked down, and a server that came back is used again soon. Thread-safe; one per
    resolver (so one per worker process).
    """

    MAX_REMEMBERED = 4096

    def __init__(
        self, down_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._down_seconds = down_seconds
        self._clock = clock
        self._down: dict[Endpoint, float] = {}
        self._lock = threading.Lock()

    def failed(self, where: Endpoint) -> None:
        now = self._clock()
        with self._lock:
            if len(self._down) >= self.MAX_REMEMBERED:
                self._down = {w: until for w, until in self._down.items() if until > now}
            if len(self._down) < self.MAX_REMEMBERED:
                self._down[where] = now + self._down_seconds

    def answered(self, where: Endpoint) -> None:
        with self._lock:
            self._down.pop(where, None)

    def is_down(self, where: Endpoint) -> bool:
        with self._lock:
            until = self._down.get(where)
        return until is not None and until > self._clock()


@dataclass(frozen=True, slots=True)
class Question:
    """A request a resolution needs put to one server, and how to send it: within
    ``timeout`` seconds (None: the resolver's), in ``udp_attempts`` datagrams."""

    where: Endpoint
    opcode: OpCode
    body: Body
    transport: Transport = "auto"
    timeout: float | None = None
    udp_attempts: int = 3


#: A resolution step by step: yields questions, is sent their replies, returns ``_T``.
Steps = Generator[Question, Message, _T]
# What a driver throws into a resolution when a server cannot be asked.
_UNANSWERED = (ServerUnreachable, RemoteProtocolError)


class Resolver:
    """Resolves any handle, starting from the root sites (see the module docstring)."""

    def __init__(
        self,
        root: Sequence[SiteInfo],
        *,
        cache: AnswerCache | None = None,
        timeout: float = 2.0,
        max_hops: int = 16,
        first_try: float = 0.4,
        health: ServerHealth | None = None,
    ) -> None:
        """``timeout``: what a server is given to answer (over UDP, then as much again
        over TCP) once every server has had its ``first_try``: one datagram, answered
        within that many seconds, before the next server (a mirror) is asked."""
        if not root:
            raise ValueError("a resolver needs at least one root site")
        self._root = list(root)
        self.cache = cache if cache is not None else AnswerCache()
        self._timeout = timeout
        self._max_hops = max_hops
        self._first_try = min(first_try, timeout)
        self.health = health if health is not None else ServerHealth()
        #: Requests sent to servers (not answered from the cache), for statistics.
        self.queries = 0

    @classmethod
    def from_endpoints(cls, endpoints: Sequence[Endpoint], **kwargs: object) -> Resolver:
        """A resolver whose root is the servers at ``endpoints``, each a mirror of the
        others (tried in order when one does not answer)."""
        return cls([site_of([e]) for e in endpoints], **kwargs)  # type: ignore[arg-type]

    # -- the two drivers -------------------------------------------------------------

    def resolve(
        self, handle: str, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord:
        """The handle's public values; raises what the responsible server answered
        (HandleNotFound, ValuesNotFound, ...), ServerUnreachable when no server of the
        responsible site answers, RecursionTooDeep for loops and overlong chains."""
        return self._run(self._resolution(handle, indexes, types))

    async def resolve_async(
        self, handle: str, indexes: Sequence[int] = (), types: Sequence[str] = ()
    ) -> HandleRecord:
        """:meth:`resolve` on an event loop."""
        return await self._run_async(self._resolution(handle, indexes, types))

    def verify_challenge(
        self, identity: ValueReference, nonce: bytes, digest: bytes, answer: bytes
    ) -> bool:
        """Ask the server responsible for ``identity``'s handle (opcode 201) whether
        ``answer`` proves its secret key; the first site that answers decides.
        ServerUnreachable when none does."""
        return self._run(self._verification(identity, nonce, digest, answer))

    async def verify_challenge_async(
        self, identity: ValueReference, nonce: bytes, digest: bytes, answer: bytes
    ) -> bool:
        """:meth:`verify_challenge` on an event loop."""
        return await self._run_async(self._verification(identity, nonce, digest, answer))

    def _run(self, steps: Steps[_T]) -> _T:
        try:
            question = next(steps)
            while True:
                client = HandleClient(
                    *question.where,
                    timeout=question.timeout or self._timeout,
                    udp_attempts=question.udp_attempts,
                )
                try:
                    reply = client.request(question.opcode, question.body, question.transport)
                except _UNANSWERED as exc:
                    question = steps.throw(exc)
                else:
                    question = steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _run_async(self, steps: Steps[_T]) -> _T:
        try:
            question = next(steps)
            while True:
                host, port = question.where
                try:
                    reply = await client_asyncio.request(
                        host,
                        port,
                        question.opcode,
                        question.body,
                        question.transport,
                        timeout=question.timeout or self._timeout,
                        udp_attempts=question.udp_attempts,
                    )
                except _UNANSWERED as exc:
                    question = steps.throw(exc)
                else:
                    question = steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # -- the state machine -----------------------------------------------------------

    def _resolution(
        self, handle: str, indexes: Sequence[int], types: Sequence[str]
    ) -> Steps[HandleRecord]:
        split_handle(handle)  # InvalidHandle before any network traffic
        return self._resolve(handle, tuple(indexes), tuple(types), _Trail(self._max_hops))

    def _verification(
        self, identity: ValueReference, nonce: bytes, digest: bytes, answer: bytes
    ) -> Steps[bool]:
        trail = _Trail(self._max_hops)
        sites = yield from self._sites_for(identity.handle, trail)
        question = VerifyChallengeRequest(identity.handle, identity.index, nonce, digest, answer)
        reply, where = yield from self._first_answer(
            sites, identity.handle, trail, OpCode.VERIFY_RESPONSE, question, "tcp"
        )
        return verified(reply, f"{where[0]}:{where[1]}", identity)

    def _resolve(
        self, handle: str, indexes: tuple[int, ...], types: tuple[str, ...], trail: _Trail
    ) -> Steps[HandleRecord]:
        key = (handle_key(handle), indexes, types)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        try:
            record = yield from self._fetch(handle, indexes, types, trail)
        except (HandleNotFound, ValuesNotFound) as exc:
            self.cache.put_error(key, exc)
            raise
        self.cache.put(key, record)
        return record

    def _sites_for(self, handle: str, trail: _Trail) -> Steps[list[SiteInfo]]:
        """The sites responsible for ``handle``: the root's for prefix handles, else
        those its prefix handle names."""
        prefix, _ = split_handle(handle)
        if handle_key(prefix) == NA_PREFIX:
            return self._root
        delegation = yield from self._resolve(f"{NA_PREFIX}/{prefix}", (), (), trail)
        return (yield from self._sites(delegation.values, trail, f"prefix {prefix}"))

    def _fetch(
        self, handle: str, indexes: tuple[int, ...], types: tuple[str, ...], trail: _Trail
    ) -> Steps[HandleRecord]:
        sites = yield from self._sites_for(handle, trail)
        record = yield from self._ask(sites, handle, indexes, types, trail)
        if Alias.TYPE not in types:
            for value in record.values:
                if value.type == Alias.TYPE:
                    target = Alias.from_bytes(value.data).handle
                    trail.hop(f"alias {handle} -> {target}")
                    return (yield from self._resolve(target, indexes, types, trail))
        return record

    def _sites(
        self, values: Sequence[HandleValue], trail: _Trail, what: str
    ) -> Steps[list[SiteInfo]]:
        sites = sites_in(values)
        for service in service_handles(values):
            trail.hop(f"service handle {service}")
            found = yield from self._resolve(service, (), (), trail)
            sites += sites_in(found.values)
        if not sites:
            raise NotResponsible(f"{what} names no site (no HS_SITE or HS_SERV values)")
        return sites

    def _ask(
        self,
        sites: Sequence[SiteInfo],
        handle: str,
        indexes: tuple[int, ...],
        types: tuple[str, ...],
        trail: _Trail,
    ) -> Steps[HandleRecord]:
        question = ResolutionRequest(handle, indexes, types)
        reply, where = yield from self._first_answer(
            sites, handle, trail, OpCode.RESOLUTION, question
        )
        return (yield from self._answer(reply, where, handle, indexes, types, trail))

    def _first_answer(
        self,
        sites: Sequence[SiteInfo],
        handle: str,
        trail: _Trail,
        opcode: OpCode,
        body: Body,
        transport: Transport = "auto",
    ) -> Steps[tuple[Message, Endpoint]]:
        """Ask the server of each site for ``handle`` (the next is a mirror) until one
        answers; ServerUnreachable naming why none did.

        Two rounds, so that a server that neither answers nor refuses (a host down, a
        hung process, a firewall that drops) delays a resolution by ``first_try``, not
        by its whole timeout: first one datagram to each server in turn, waiting
        ``first_try`` for it (a refusal moves on at once); then, if none answered,
        each as usual (UDP, then TCP), which networks that drop UDP need. Servers
        that failed lately are asked last (:class:`ServerHealth`)."""
        failures: list[str] = []
        servers: list[Endpoint] = []
        for site in sites:
            where = endpoint(server_for(site, handle))
            if where is None:
                failures.append("a server without a query interface")
            elif where not in servers:
                servers.append(where)
        servers.sort(key=self.health.is_down)  # stable: the others keep their order
        later = servers
        if transport != "tcp":
            later = []
            for where in servers:
                trail.ask(where, handle)
                reply = yield from self._quick(where, opcode, body, transport, failures, later)
                if reply is not None:
                    return reply, where
        else:
            for where in servers:
                trail.ask(where, handle)
        timed_out = not failures
        for where in later:
            self.queries += 1
            try:
                reply = yield Question(where, opcode, body, transport)
            except _UNANSWERED as exc:
                failures.append(exc.message)
                timed_out = timed_out and isinstance(exc, ServerTimedOut)
                self.health.failed(where)
            else:
                self.health.answered(where)
                return reply, where
        why = ServerTimedOut if timed_out and failures else ServerUnreachable
        raise why(f"no server answered for {handle}: {'; '.join(failures)}")

    def _quick(
        self,
        where: Endpoint,
        opcode: OpCode,
        body: Body,
        transport: Transport,
        failures: list[str],
        later: list[Endpoint],
    ) -> Steps[Message | None]:
        """One datagram to ``where``, waiting ``first_try``: its reply (over TCP if it
        came truncated), or None, with ``where`` added to ``later`` when it may still
        answer with more time (or over TCP) and its failure to ``failures`` if not."""
        self.queries += 1
        try:
            reply = yield Question(where, opcode, body, "udp", self._first_try, 1)
            if reply.truncated and transport == "auto":
                self.queries += 1
                reply = yield Question(where, opcode, body, "tcp")
        except ServerTimedOut:
            later.append(where)  # slow or gone: asked again, with time, later
            return None
        except _UNANSWERED as exc:  # refused, or no Handle server there
            self.health.failed(where)
            if transport == "auto" and not isinstance(exc, RemoteProtocolError):
                later.append(where)  # it may speak TCP only
            else:
                failures.append(exc.message)
            return None
        self.health.answered(where)
        for slow in later:
            self.health.failed(slow)
        return reply

    def _answer(
        self,
        reply: Message,
        where: Endpoint,
        handle: str,
        indexes: tuple[int, ...],
        types: tuple[str, ...],
        trail: _Trail,
    ) -> Steps[HandleRecord]:
        body, code = reply.body, reply.response_code
        if code == ResponseCode.SUCCESS and isinstance(body, ResolutionResponse):
            return HandleRecord(body.handle, tuple(body.values))
        if isinstance(body, ReferralResponse):
            trail.hop(f"{where[0]}:{where[1]} refers {handle} to {body.handle}")
            referred = yield from self._sites(body.values, trail, f"referral {body.handle}")
            return (yield from self._ask(referred, handle, indexes, types, trail))
        message = body.message if isinstance(body, ErrorResponse) else code.name
        if code == ResponseCode.SERVER_NOT_RESPONSIBLE:
            # Relayed, naming who said so: a person reading it learns where to look.
            prefix, _, suffix = handle.partition("/")
            prefix = suffix if handle_key(prefix) == NA_PREFIX else prefix
            raise NotResponsible(
                f"{where[0]}:{where[1]} does not hold {handle}: {message}", prefix=prefix
            )
        if code in _RELAYED:
            raise answer_error(reply)
        raise ServerError(f"{where[0]}:{where[1]} answered {code.name} for {handle}: {message}")
