"""Per-source UDP rate limiting: the token buckets, and a server that applies them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from idnode.client import HandleClient
from idnode.config import PUBLIC_UDP_RATE_LIMIT, Config
from idnode.errors import ConfigError
from idnode.handle.codec import decode_message, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import Message, ResolutionRequest, SiteInfoRequest
from idnode.server.ratelimit import Decision, RateLimiter
from tests.conftest import running


def test_burst_then_refill_at_the_rate() -> None:
    limiter = RateLimiter(rate=2, burst=3, slip=0)
    decisions = [limiter.check("192.0.2.1", 0.0) for _ in range(5)]
    assert decisions == [Decision.ANSWER] * 3 + [Decision.DROP] * 2
    assert limiter.check("192.0.2.1", 0.5) is Decision.ANSWER  # one token back after 0.5 s
    assert limiter.check("192.0.2.1", 0.5) is Decision.DROP
    assert limiter.check("192.0.2.1", 10.0) is Decision.ANSWER  # refilled, capped at burst


def test_sources_are_limited_separately() -> None:
    limiter = RateLimiter(rate=1, slip=0)
    assert limiter.check("192.0.2.1", 0.0) is Decision.ANSWER
    assert limiter.check("192.0.2.1", 0.0) is Decision.DROP
    assert limiter.check("192.0.2.2", 0.0) is Decision.ANSWER


def test_every_second_refusal_slips_a_truncated_answer() -> None:
    limiter = RateLimiter(rate=1, slip=2)
    limiter.check("a", 0.0)
    assert [limiter.check("a", 0.0) for _ in range(4)] == [
        Decision.DROP,
        Decision.TRUNCATE,
        Decision.DROP,
        Decision.TRUNCATE,
    ]


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1, max_sources=10)
    for n in range(100):
        limiter.check(f"10.0.0.{n}", 0.0)
    assert len(limiter._buckets) == 10


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate=0)


def test_server_limits_udp_answers_per_source_but_not_tcp(demo_dir: Path) -> None:
    config = Config(data_dir=demo_dir, handle_port=0, http_port=0, udp_rate_limit=5)
    with running(config) as node, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for n in range(30):
            request = Message(
                OpCode.RESOLUTION, ResolutionRequest("88.100.1/PUMP-0001"), request_id=n + 1
            )
            sock.sendto(encode_message(request), ("127.0.0.1", node.ports.handle))
        answered = truncated = 0
        while True:
            try:
                reply = decode_message(sock.recv(4096))
            except TimeoutError:
                break
            if reply.truncated:
                truncated += 1
                assert len(encode_message(reply)) == 48
            else:
                answered += 1
        assert 5 <= answered <= 7  # the burst, plus what refilled while sending
        assert truncated >= 10  # half of the refused ones slip through as "use TCP"
        tcp = HandleClient("127.0.0.1", node.ports.handle).resolve(
            "88.100.1/PUMP-0001", transport="tcp"
        )
        assert tcp.response_code == ResponseCode.SUCCESS


@pytest.mark.parametrize(
    ("host", "setting", "effective"),
    [
        ("127.0.0.1", -1.0, 0.0),
        ("::1", -1.0, 0.0),
        ("localhost", -1.0, 0.0),
        ("0.0.0.0", -1.0, PUBLIC_UDP_RATE_LIMIT),
        ("192.0.2.7", -1.0, PUBLIC_UDP_RATE_LIMIT),
        ("0.0.0.0", 0.0, 0.0),  # an operator's explicit choice stands
        ("0.0.0.0", 20.0, 20.0),
    ],
)
def test_a_public_node_limits_udp_answers_by_default(
    host: str, setting: float, effective: float
) -> None:
    assert Config(host=host, udp_rate_limit=setting).effective_udp_rate_limit == effective


def test_a_negative_rate_other_than_automatic_is_refused() -> None:
    with pytest.raises(ConfigError, match="udp_rate_limit"):
        Config().replace(udp_rate_limit=-2)


def test_a_node_on_all_addresses_is_no_amplifier_by_default(demo_dir: Path) -> None:
    """Issue 20 item 8: bound to every address, with no setting, a flood of requests
    from one source gets about the rate limit's worth of answers back."""
    config = Config(data_dir=demo_dir, host="0.0.0.0", handle_port=0, http_port=0)
    with running(config) as node, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sent = 400
        for n in range(sent):
            request = Message(OpCode.GET_SITE_INFO, SiteInfoRequest(), request_id=n + 1)
            sock.sendto(encode_message(request), ("127.0.0.1", node.ports.handle))
        answered = 0
        while True:
            try:
                reply = decode_message(sock.recv(4096))
            except TimeoutError:
                break
            answered += not reply.truncated
        assert 0 < answered <= PUBLIC_UDP_RATE_LIMIT * 1.5
