"""Several nodes on loopback forming the identifier hierarchy, resolved through.

    root (0.NA) ── top-level 88 ── secondary 88.100 (primary A, mirror B) ── enterprise 88.100.1
    recursive node: starts at the root, caches what it learns

Every node is a real server on real UDP/TCP sockets with its own SQLite database; the
delegations are the prefix handles ``idnode prefix delegate`` writes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from idnode.client import HandleClient, ServerUnreachable
from idnode.config import Config
from idnode.demo import demo_records
from idnode.errors import NotResponsible, RecursionTooDeep
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import ReferralResponse, ResolutionRequest, ResolutionResponse
from idnode.handle.values import HandleValue, ValueReference
from idnode.node import init_node, open_node
from idnode.resolver import AnswerCache, Resolver, ServerHealth
from idnode.service import Caller
from idnode.sites import HASH_BY_SUFFIX, Endpoint, site_of, sites_in
from tests.clock import Clock
from tests.conftest import RunningNode

DELEGATION_TTL = 60


@dataclass
class Hierarchy:
    tmp: Path
    nodes: dict[str, RunningNode] = field(default_factory=dict)

    def start(self, name: str, role: str, prefix: str | None, **settings: object) -> Endpoint:
        config = Config(data_dir=self.tmp / name, handle_port=0, http_port=0, role=role).replace(
            **settings
        )
        init_node(
            config, prefix, {"handle_port": 0, "http_port": 0, "role": role} | settings
        ).close()
        self.nodes[name] = RunningNode(config)
        return self.at(name)

    def at(self, name: str) -> Endpoint:
        return ("127.0.0.1", self.nodes[name].ports.handle)

    def delegate(
        self, name: str, prefix: str, site: Endpoint, *mirrors: Endpoint, ttl: int = 86400
    ) -> None:
        node = open_node(self.nodes[name].config)
        try:
            sites = [site_of([site])] + [site_of([m], primary=False) for m in mirrors]
            node.service.prefixes.delegate_prefix(prefix, sites, ttl)
        finally:
            node.close()

    def load_demo(self, name: str) -> None:
        node = open_node(self.nodes[name].config)
        try:
            node.service.bulk.register_many(demo_records(20), replace=True)
        finally:
            node.close()

    def stop(self, name: str) -> None:
        self.nodes[name].stop()

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def hierarchy(tmp_path: Path) -> Iterator[Hierarchy]:
    h = Hierarchy(tmp_path)
    try:
        enterprise = h.start("enterprise", "enterprise", "88.100.1")
        h.load_demo("enterprise")
        secondary_a = h.start("secondary-a", "secondary", "88.100")
        secondary_b = h.start("secondary-b", "secondary", "88.100")
        for mirror in ("secondary-a", "secondary-b"):
            h.delegate(mirror, "88.100.1", enterprise, ttl=DELEGATION_TTL)
        top = h.start("top", "top-level", "88")
        h.delegate("top", "88.100", secondary_a, secondary_b)
        root = h.start("root", "root", None)
        h.delegate("root", "88", top)
        h.start("recursive", "recursive", None, root_servers=f"{root[0]}:{root[1]}")
        yield h
    finally:
        h.stop_all()


def _values(record_or_reply: object) -> list[tuple[int, str, bytes]]:
    values = getattr(record_or_reply, "values", ())
    return sorted((v.index, v.type, v.data) for v in values)


def test_a_handle_resolves_through_the_whole_chain_and_then_from_cache(
    hierarchy: Hierarchy,
) -> None:
    direct = HandleClient(*hierarchy.at("enterprise")).resolve("88.100.1/PUMP-0001")
    assert isinstance(direct.body, ResolutionResponse)

    # Through the recursive node, over the Handle protocol, as any client would.
    via_recursive = HandleClient(*hierarchy.at("recursive")).resolve("88.100.1/PUMP-0001")
    assert via_recursive.response_code == ResponseCode.SUCCESS
    assert _values(via_recursive.body) == _values(direct.body)

    # The same walk in-process: root, top-level, secondary for 0.NA/88.100.1, then the
    # enterprise for the handle: four questions; asked again, none.
    resolver = Resolver.from_endpoints([hierarchy.at("root")])
    record = resolver.resolve("88.100.1/PUMP-0001")
    assert _values(record) == _values(direct.body)
    assert resolver.queries == 4
    assert _values(resolver.resolve("88.100.1/PUMP-0001")) == _values(direct.body)
    assert resolver.queries == 4

    # The recursive node answers from its cache with every upstream node gone.
    for name in ("enterprise", "secondary-a", "secondary-b", "top", "root"):
        hierarchy.stop(name)
    again = HandleClient(*hierarchy.at("recursive")).resolve("88.100.1/PUMP-0001")
    assert _values(again.body) == _values(direct.body)
    # ...and only from its cache: a handle it has not seen finds nobody upstream.
    unseen = HandleClient(*hierarchy.at("recursive")).resolve("88.100.1/PUMP-0002")
    assert unseen.response_code == ResponseCode.ERROR


def test_a_silent_primary_costs_one_short_try_then_is_asked_last(
    hierarchy: Hierarchy, silent: tuple[Endpoint, socket.socket]
) -> None:
    """Issue 21: failing over took the primary's whole timeout, UDP and then TCP."""
    where, udp = silent
    health = ServerHealth()
    # With a minute of timeout, waiting it out would take two: the test would fail.
    resolver = Resolver.from_endpoints(
        [where, hierarchy.at("root")], timeout=60.0, first_try=0.2, health=health
    )
    found: list[str] = []
    done = threading.Thread(
        target=lambda: found.append(resolver.resolve("88.100.1/PUMP-0001").handle), daemon=True
    )
    done.start()
    done.join(timeout=20)
    assert found == ["88.100.1/PUMP-0001"]
    assert health.is_down(where)
    # Another resolver sharing what this worker learnt asks the silent server last:
    # the mirror answers, and the silent one hears nothing more.
    again = Resolver.from_endpoints(
        [where, hierarchy.at("root")], timeout=60.0, first_try=0.2, health=health
    )
    assert again.resolve("88.100.1/PUMP-0002").handle == "88.100.1/PUMP-0002"
    udp.setblocking(False)
    heard = 0
    while True:
        try:
            udp.recv(65536)
        except BlockingIOError:
            break
        heard += 1
    assert heard == 1


def test_resolution_fails_over_to_the_mirror_site(hierarchy: Hierarchy) -> None:
    hierarchy.stop("secondary-a")
    resolver = Resolver.from_endpoints([hierarchy.at("root")], timeout=1.0)
    record = resolver.resolve("88.100.1/PUMP-0002")
    assert record.handle == "88.100.1/PUMP-0002"
    # The recursive node, which has not seen this prefix yet, fails over the same way.
    reply = HandleClient(*hierarchy.at("recursive")).resolve("88.100.1/PUMP-0003")
    assert reply.response_code == ResponseCode.SUCCESS


def test_a_moved_prefix_is_followed_once_its_ttl_has_run_out(hierarchy: Hierarchy) -> None:
    clock = Clock(1_000_000.0)
    resolver = Resolver.from_endpoints(
        [hierarchy.at("root")], cache=AnswerCache(clock=clock), timeout=1.0
    )
    assert resolver.resolve("88.100.1/PUMP-0004").handle == "88.100.1/PUMP-0004"

    # The enterprise moves to a new server; its parents are told.
    hierarchy.stop("enterprise")
    moved = hierarchy.start("enterprise-new", "enterprise", "88.100.1")
    hierarchy.load_demo("enterprise-new")
    for mirror in ("secondary-a", "secondary-b"):
        hierarchy.delegate(mirror, "88.100.1", moved, ttl=DELEGATION_TTL)

    # Within the delegation's TTL the resolver still goes to the old server...
    with pytest.raises(ServerUnreachable):
        resolver.resolve("88.100.1/PUMP-0005")
    # ...after it, to the new one.
    clock.now += DELEGATION_TTL + 1
    assert resolver.resolve("88.100.1/PUMP-0005").handle == "88.100.1/PUMP-0005"


def test_a_referral_loop_ends_in_a_clear_error(hierarchy: Hierarchy) -> None:
    # 88.200 is delegated by the top-level node back to the root, which sends every
    # 88.* question to the top-level node again.
    hierarchy.delegate("top", "88.200", hierarchy.at("root"))
    resolver = Resolver.from_endpoints([hierarchy.at("root")], timeout=1.0)
    with pytest.raises(RecursionTooDeep, match="loop"):
        resolver.resolve("88.200/ANYTHING")
    reply = HandleClient(*hierarchy.at("recursive")).resolve("88.200/ANYTHING")
    assert reply.response_code == ResponseCode.RECURSION_COUNT_TOO_HIGH


def test_an_overlong_chain_ends_in_a_clear_error(hierarchy: Hierarchy) -> None:
    resolver = Resolver.from_endpoints([hierarchy.at("root")], max_hops=1)
    with pytest.raises(RecursionTooDeep, match="gave up after 1"):
        resolver.resolve("88.100.1/PUMP-0001")


def test_nodes_refer_to_the_delegation_they_hold(hierarchy: Hierarchy) -> None:
    reply = HandleClient(*hierarchy.at("root")).resolve("88.100.1/PUMP-0001")
    assert reply.response_code == ResponseCode.SERVICE_REFERRAL
    assert isinstance(reply.body, ReferralResponse)
    assert reply.body.handle == "0.NA/88"
    (site,) = sites_in(reply.body.values)
    assert site.servers[0].interfaces[0].port == hierarchy.at("top")[1]

    # The secondary holds the enterprise's prefix handle and serves it as a record.
    prefix = HandleClient(*hierarchy.at("secondary-b")).resolve("0.NA/88.100.1")
    assert prefix.response_code == ResponseCode.SUCCESS

    # A client that asks not to be referred gets "not responsible" instead.
    no_referral = HandleClient(*hierarchy.at("top")).request(
        OpCode.RESOLUTION, ResolutionRequest("88.100.1/PUMP-0001"), flags=OpFlag.DO_NOT_REFER
    )
    assert no_referral.response_code == ResponseCode.SERVER_NOT_RESPONSIBLE

    # A handle under a prefix nobody delegated: not found where the search ends.
    unknown = HandleClient(*hierarchy.at("top")).resolve("0.NA/88.999")
    assert unknown.response_code == ResponseCode.HANDLE_NOT_FOUND


def test_a_site_of_two_servers_divides_the_handles_between_them(tmp_path: Path) -> None:
    h = Hierarchy(tmp_path)
    try:
        shares = {
            name: h.start(name, "enterprise", "88.100.1", site_share=share, site_hash="suffix")
            for name, share in (("server-1", "1/2"), ("server-2", "2/2"))
        }
        for name in shares:
            h.load_demo(name)  # each keeps its own share of the same records
        parent = h.start("secondary", "secondary", "88.100")
        node = open_node(h.nodes["secondary"].config)
        try:
            site = site_of(list(shares.values()), hash_option=HASH_BY_SUFFIX)
            node.service.prefixes.delegate_prefix("88.100.1", [site], DELEGATION_TTL)
        finally:
            node.close()

        handles = [r.handle for r in demo_records(20) if r.handle.startswith("88.100.1/")]
        held: dict[str, set[str]] = {}
        for name, at in shares.items():
            codes = {handle: HandleClient(*at).resolve(handle).response_code for handle in handles}
            held[name] = {handle for handle, code in codes.items() if code == ResponseCode.SUCCESS}
            others = set(handles) - held[name]
            assert all(codes[o] == ResponseCode.SERVER_NOT_RESPONSIBLE for o in others)
        assert held["server-1"]
        assert held["server-2"]
        assert held["server-1"].isdisjoint(held["server-2"])
        assert held["server-1"] | held["server-2"] == set(handles)

        # Writes keep to the share too: another server's handle is refused, a minted
        # suffix is always one of this server's.
        node = open_node(h.nodes["server-1"].config)
        try:
            admin = Caller(ValueReference("0.NA/88.100.1", 300))
            url = [HandleValue(1, "URL", b"https://example.com/")]
            with pytest.raises(NotResponsible, match="another server of this site"):
                node.service.writes.create_handle(sorted(held["server-2"])[0], url, admin)
            for _ in range(10):
                minted = node.service.writes.create_handle("88.100.1", url, admin, mint_suffix=True)
                assert (
                    HandleClient(*shares["server-1"]).resolve(minted).response_code
                    == ResponseCode.SUCCESS
                )
        finally:
            node.close()

        # A resolver goes to the server holding each handle, by the site's hash option.
        resolver = Resolver.from_endpoints([parent])
        for handle in handles:
            assert resolver.resolve(handle).handle == handle
        assert resolver.queries == 1 + len(handles)  # 0.NA/88.100.1 once, then each handle
    finally:
        h.stop_all()
