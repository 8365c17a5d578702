"""The service layer: what a node does, whichever front end asked.

The Handle UDP/TCP servers, the HTTP API and the CLI all call these operations and
turn their results or :mod:`idnode.errors` exceptions into their own wire formats.
Nothing else talks to storage.

:class:`NodeService` is a small facade: one object per concern, all built on one
:class:`~idnode.service.core.ServiceCore` that holds the storage and the rules they
share (who is responsible for a handle, who administers it, what a caller may do):

==============================  =====================================================
``service.reads``               resolve, GS1 keys, search, site information
``service.auth``                challenge answers, passwords, certificates, opcode 201
``service.accounts``            password accounts (user name logins, opcode 2000)
``service.sessions``            HTTP API sessions and Handle protocol sessions
``service.challenges``          Handle protocol challenges, shared by every worker
``service.writes``              create, delete, add/modify/remove values, listing, audit
``service.templates``           metadata templates
``service.history``             a record's versions, restoring one
``service.prefixes``            homing and delegating prefixes (the node's operator)
``service.bulk``                bulk registration, staged then written
``service.statistics``          counts per prefix and hour, reports between nodes
``service.trace``               EPCIS events: capture, queries, genealogy, recalls
``service.trace_subscriptions`` named EPCIS queries, subscriptions pushing new events
==============================  =====================================================

Every operation is synchronous: it may wait on the database or, on a recursive node,
on other servers. Front ends on an event loop call them through
:class:`~idnode.service.offloop.OffLoop`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from idnode.handle.values import ValueReference
from idnode.handle.valuetypes import SiteInfo
from idnode.service.accounts import Accounts
from idnode.service.authentication import Authentication
from idnode.service.bulk import BulkResult, BulkWrites, StagedLoad
from idnode.service.challenges import HandleChallenges
from idnode.service.core import ANONYMOUS, Caller, ServiceCore, Upstream
from idnode.service.history import History
from idnode.service.prefixes import ADMIN_VALUE_INDEX, Prefixes
from idnode.service.reads import Reads
from idnode.service.sessions import Sessions
from idnode.service.statistics import Statistics
from idnode.service.templates import Templates
from idnode.service.trace import Traceability
from idnode.service.trace_subscriptions import TraceSubscriptions
from idnode.service.writes import Writes
from idnode.sites import Share
from idnode.stats import StatsRecorder
from idnode.storage.base import Storage

__all__ = [
    "ADMIN_VALUE_INDEX",
    "ANONYMOUS",
    "BulkResult",
    "Caller",
    "NodeService",
    "StagedLoad",
    "Upstream",
]


class NodeService:
    """Resolution and record management over one storage backend.

    ``clock`` returns monotonic seconds; tests pass their own to step time. ``share``
    is this server's part of a site whose servers divide the handles; None: all.
    ``gs1_prefix``: the prefix GS1 codes map to (docs/gs1.md), so that an event naming
    a GS1 key reaches that identifier's record.
    ``token_secret`` signs the bearer tokens of the SNMS and IDHub APIs: the same in
    every worker of a node (:func:`idnode.node.token_secret`); none: a random one.
    """

    def __init__(
        self,
        storage: Storage,
        site: SiteInfo,
        clock: Callable[[], float] = time.monotonic,
        stats: StatsRecorder | None = None,
        admins: Sequence[ValueReference] = (),
        wall_clock: Callable[[], float] = time.time,
        upstream: Upstream | None = None,
        recursive: bool = False,
        share: Share | None = None,
        token_secret: bytes = b"",
        gs1_prefix: str = "",
    ) -> None:
        self.core = core = ServiceCore(
            storage,
            site,
            clock=clock,
            wall_clock=wall_clock,
            stats=stats,
            admins=admins,
            upstream=upstream,
            recursive=recursive,
            share=share,
        )
        self.reads = Reads(core)
        self.auth = Authentication(core)
        self.accounts = Accounts(core)
        self.sessions = Sessions(core, token_secret)
        self.challenges = HandleChallenges(core)
        self.templates = Templates(core)
        self.writes = Writes(core, self.templates)
        self.history = History(core)
        self.prefixes = Prefixes(core)
        self.bulk = BulkWrites(core)
        self.statistics = Statistics(core)
        self.trace = Traceability(core, gs1_prefix)
        self.trace_subscriptions = TraceSubscriptions(core, self.trace)
