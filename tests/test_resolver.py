"""The resolver's parts that need no network: its cache, site selection, referral bodies."""

from __future__ import annotations

import pytest

from idnode.config import Config
from idnode.domain import HandleRecord
from idnode.errors import ConfigError, HandleNotFound
from idnode.handle.codec import decode_message, encode_message
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import Message, ReferralResponse
from idnode.handle.values import HandleValue, TTLType
from idnode.resolver import AnswerCache, ServerHealth
from idnode.sites import (
    HASH_BY_HANDLE,
    HASH_BY_PREFIX,
    HASH_BY_SUFFIX,
    parse_endpoints,
    server_for,
    site_of,
    sites_in,
)
from tests.clock import Clock


def _record(*ttls: int, absolute: bool = False) -> HandleRecord:
    kind = TTLType.ABSOLUTE if absolute else TTLType.RELATIVE
    return HandleRecord(
        "88.1/X",
        tuple(HandleValue(i, "URL", b"u", ttl=t, ttl_type=kind) for i, t in enumerate(ttls, 1)),
    )


def test_answers_live_for_their_shortest_ttl() -> None:
    clock = Clock(1_000_000.0)
    cache = AnswerCache(clock=clock)
    key = ("88.1/X", (), ())
    cache.put(key, _record(300, 30))
    clock.now += 29
    assert cache.get(key) is not None
    clock.now += 1
    assert cache.get(key) is None


def test_absolute_ttls_are_points_in_time() -> None:
    clock = Clock(1_000_000.0)
    cache = AnswerCache(clock=clock)
    key = ("88.1/X", (), ())
    cache.put(key, _record(int(clock.now) + 10, absolute=True))
    clock.now += 9
    assert cache.get(key) is not None
    clock.now += 1
    assert cache.get(key) is None


def test_not_found_is_remembered_briefly() -> None:
    clock = Clock(1_000_000.0)
    cache = AnswerCache(negative_seconds=5, clock=clock)
    key = ("88.1/GONE", (), ())
    cache.put_error(key, HandleNotFound("handle 88.1/GONE not found"))
    with pytest.raises(HandleNotFound):
        cache.get(key)
    clock.now += 5
    assert cache.get(key) is None


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = AnswerCache(max_entries=2, clock=Clock(1_000_000.0))
    for name in ("A", "B"):
        cache.put((name, (), ()), _record(60))
    assert cache.get(("A", (), ())) is not None  # A is now the most recent
    cache.put(("C", (), ()), _record(60))
    assert len(cache) == 2
    assert cache.get(("B", (), ())) is None
    assert cache.get(("A", (), ())) is not None
    off = AnswerCache(max_entries=0, clock=Clock(1_000_000.0))
    off.put(("A", (), ()), _record(60))
    assert len(off) == 0


def test_hash_options_spread_handles_over_a_sites_servers() -> None:
    endpoints = [(f"10.0.0.{n}", 2641) for n in range(1, 5)]
    by_prefix = site_of(endpoints, hash_option=HASH_BY_PREFIX)
    by_suffix = site_of(endpoints, hash_option=HASH_BY_SUFFIX)
    by_handle = site_of(endpoints, hash_option=HASH_BY_HANDLE)
    handles = [f"88.100.1/PUMP-{n:04d}" for n in range(200)]
    # By prefix: one prefix, one server.
    assert len({server_for(by_prefix, h).server_id for h in handles}) == 1
    # By handle: every server gets a share; the same handle in other case, the same one.
    assert len({server_for(by_handle, h).server_id for h in handles}) == 4
    assert server_for(by_handle, "88.100.1/pump-0007") == server_for(
        by_handle, "88.100.1/PUMP-0007"
    )
    # By suffix: the same suffix under another prefix lands on the same server.
    for h in handles[:20]:
        other = "99.9/" + h.partition("/")[2]
        assert server_for(by_suffix, h) == server_for(by_suffix, other)


def test_primary_sites_come_first() -> None:
    mirror = site_of([("10.0.0.2", 2641)], primary=False)
    primary = site_of([("10.0.0.1", 2641)])
    values = [
        HandleValue(1, "HS_SITE", mirror.to_bytes()),
        HandleValue(2, "HS_SITE", primary.to_bytes()),
        HandleValue(3, "HS_SITE", b"not a site"),
    ]
    assert sites_in(values) == [primary, mirror]


def test_referral_bodies_round_trip() -> None:
    site = site_of([("10.0.0.1", 2641)])
    message = Message(
        OpCode.RESOLUTION,
        ReferralResponse("0.NA/88", (HandleValue(1, "HS_SITE", site.to_bytes()),)),
        response_code=ResponseCode.SERVICE_REFERRAL,
        op_flags=OpFlag.AUTHORITATIVE,
        request_id=7,
    )
    decoded = decode_message(encode_message(message))
    assert isinstance(decoded.body, ReferralResponse)
    assert decoded.body.handle == "0.NA/88"
    assert sites_in(decoded.body.values) == [site]


def test_root_servers_and_roles_are_checked() -> None:
    assert parse_endpoints("10.0.0.1:2700, [::1]:2641 ,10.0.0.2") == [
        ("10.0.0.1", 2700),
        ("::1", 2641),
        ("10.0.0.2", 2641),
    ]
    # Bare IPv6 addresses take the default port: "::1" is not "::" on port 1.
    assert parse_endpoints("::1, 2001:db8::7, [2001:db8::8]:2700, [::2]") == [
        ("::1", 2641),
        ("2001:db8::7", 2641),
        ("2001:db8::8", 2700),
        ("::2", 2641),
    ]
    for bad in ("pumps.example:2641", "10.0.0.1:0", "10.0.0.1:x", "[::1]:x", "[::1"):
        with pytest.raises(ConfigError):
            parse_endpoints(bad)
    with pytest.raises(ConfigError, match="role must be one of"):
        Config(role="leaf").replace()
    with pytest.raises(ConfigError, match="needs root_servers"):
        Config().replace(role="recursive")
    assert Config().replace(role="recursive", root_servers="10.0.0.1").root_endpoints == [
        ("10.0.0.1", 2641)
    ]


def test_a_failed_server_is_down_for_a_while_and_up_once_it_answers() -> None:
    clock = Clock(1_000.0)
    health = ServerHealth(down_seconds=30, clock=clock)
    a, b = ("10.0.0.1", 2641), ("10.0.0.2", 2641)
    health.failed(a)
    assert health.is_down(a)
    assert not health.is_down(b)
    assert sorted([a, b], key=health.is_down) == [b, a]
    clock.now += 30
    assert not health.is_down(a)
    health.failed(b)
    health.answered(b)
    assert not health.is_down(b)


def test_the_down_list_is_bounded() -> None:
    clock = Clock(1_000.0)
    health = ServerHealth(down_seconds=30, clock=clock)
    for n in range(ServerHealth.MAX_REMEMBERED + 10):
        health.failed(("10.0.0.1", n))
    assert health.is_down(("10.0.0.1", 0))
    assert not health.is_down(("10.0.0.1", ServerHealth.MAX_REMEMBERED + 5))  # no room
    clock.now += 31
    health.failed(("10.0.0.9", 1))  # the expired ones make room
    assert health.is_down(("10.0.0.9", 1))
