"""Service sites: which server of a site holds a handle, and where to reach it.

An HS_SITE value lists a site's servers; when there are several, each holds a share of
the handles, chosen by the site's hash option (RFC 3651 §3.2.2: 0 by prefix, 1 by
suffix, 2 by the whole handle). The share is the last four bytes of the MD5 digest of
the upper-cased part, as a signed 32-bit integer made non-negative, modulo the number
of servers: the arithmetic of Handle.Net's ``SiteInfo.determineServerNum``, so that
idnode and Handle.Net clients pick the same server.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from idnode.errors import ConfigError, IdnodeError
from idnode.handle.values import HandleValue
from idnode.handle.valuetypes import (
    Interface,
    InterfaceType,
    ServerInfo,
    ServiceHandle,
    SiteInfo,
    TransportProtocol,
)
from idnode.names import NA_PREFIX, handle_key

__all__ = [
    "HASH_BY_HANDLE",
    "HASH_BY_PREFIX",
    "HASH_BY_SUFFIX",
    "HASH_OPTIONS",
    "SITE_TYPES",
    "Endpoint",
    "Share",
    "addresses",
    "endpoint",
    "parse_endpoints",
    "server_for",
    "service_handles",
    "site_of",
    "sites_in",
]

HASH_BY_PREFIX = 0
HASH_BY_SUFFIX = 1
HASH_BY_HANDLE = 2
#: The hash options by the names the CLI and the settings use.
HASH_OPTIONS = {"prefix": HASH_BY_PREFIX, "suffix": HASH_BY_SUFFIX, "handle": HASH_BY_HANDLE}
#: Value types that describe sites: HS_SITE for a prefix's own handles, and
#: HS_SITE.PREFIX, with which Handle.Net delegates derived prefixes (88.100 under 88).
SITE_TYPES = ("HS_SITE", "HS_SITE.PREFIX")

Endpoint = tuple[str, int]


def server_for(site: SiteInfo, handle: str) -> ServerInfo:
    """The server of ``site`` that holds ``handle``."""
    if len(site.servers) == 1:
        return site.servers[0]
    if not site.servers:
        raise IdnodeError("HS_SITE lists no servers")
    return site.servers[_bucket(handle, site.hash_option, len(site.servers))]


def _bucket(handle: str, hash_option: int, count: int) -> int:
    prefix, _, suffix = handle.partition("/")
    if hash_option == HASH_BY_PREFIX:
        part = prefix
    elif hash_option == HASH_BY_SUFFIX:
        part = suffix
    elif hash_option == HASH_BY_HANDLE:
        part = handle
    else:
        raise IdnodeError(f"HS_SITE has an unknown hash option {hash_option}")
    digest = hashlib.md5(handle_key(part).encode("utf-8"), usedforsecurity=False).digest()
    # Handle.Net: Math.abs(the digest's last four bytes as a signed int) % count. (For
    # -2**31, where Java's abs stays negative and the index is out of range, any
    # server will do.)
    return abs(int.from_bytes(digest[-4:], "big", signed=True)) % count


@dataclass(frozen=True, slots=True)
class Share:
    """The part of a site's handles one of its servers holds: that server's number
    (from 1, in the order of the site's HS_SITE) of ``servers``, by ``hash_option``.

    Each server of such a site stores and answers only its share; the others are
    answered "not responsible" (301), as resolvers pick the server by the same hash.
    """

    number: int
    servers: int
    hash_option: int

    @classmethod
    def parse(cls, text: str, hash_name: str) -> Share:
        """``"2/3"`` and ``"suffix"``: the second of three servers, hashing by suffix."""
        number, sep, servers = text.partition("/")
        try:
            share = cls(int(number), int(servers), HASH_OPTIONS[hash_name])
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"a share is N/M (server N of M) hashed by prefix, suffix or handle; "
                f"got {text!r} by {hash_name!r}"
            ) from exc
        if not sep or not 1 <= share.number <= share.servers:
            raise ConfigError(f"share {text!r}: N/M needs 1 <= N <= M")
        return share

    def holds(self, handle: str) -> bool:
        """Whether ``handle`` is this server's. Prefix handles (0.NA/...) describe the
        site itself and are on all its servers."""
        if handle_key(handle).startswith(NA_PREFIX + "/"):
            return True
        return _bucket(handle, self.hash_option, self.servers) == self.number - 1

    def __str__(self) -> str:
        return f"{self.number}/{self.servers}"


def endpoint(server: ServerInfo) -> Endpoint | None:
    """Address and port to resolve at: a query interface, UDP preferred (TCP on the
    same port is what the client falls back to)."""
    query = [
        i
        for i in server.interfaces
        if i.type in (InterfaceType.QUERY, InterfaceType.ADMIN_AND_QUERY)
        and i.protocol in (TransportProtocol.UDP, TransportProtocol.TCP)
    ]
    if not query:
        return None
    chosen = min(query, key=lambda i: i.protocol != TransportProtocol.UDP)
    return str(server.address), chosen.port


def addresses(site: SiteInfo) -> list[str]:
    """``address:port`` of each of the site's servers that can be queried."""
    return [f"{e[0]}:{e[1]}" for e in (endpoint(s) for s in site.servers) if e is not None]


def sites_in(values: Iterable[HandleValue]) -> list[SiteInfo]:
    """The sites an answer's HS_SITE values describe, primary sites first.

    Values that do not parse are skipped: one bad value must not hide the good ones.
    """
    sites = []
    for value in values:
        if value.type in SITE_TYPES:
            try:
                sites.append(SiteInfo.from_bytes(value.data))
            except IdnodeError:
                continue
    return sorted(sites, key=lambda s: not s.primary_mask & SiteInfo.PRIMARY)


def service_handles(values: Iterable[HandleValue]) -> list[str]:
    """The HS_SERV handles in an answer: "the sites are in that handle's HS_SITE"."""
    found = []
    for value in values:
        if value.type == ServiceHandle.TYPE:
            try:
                found.append(ServiceHandle.from_bytes(value.data).handle)
            except IdnodeError:
                continue
    return found


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_endpoints(text: str, default_port: int = 2641) -> list[Endpoint]:
    """``"10.0.0.1:2641, 10.0.0.2, [2001:db8::1]:2641, ::1"`` as a list of (address,
    port); ConfigError if malformed."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.startswith("["):  # an IPv6 address with a port: "[::1]:2641"
            host, close, rest = item[1:].partition("]")
            if not close or (rest and not rest.startswith(":")):
                raise ConfigError(f"{item!r} is not [IPv6 address] with an optional :port")
            port = rest[1:] or str(default_port)
        elif _is_address(item):
            # A bare address, IPv6 ones too: "::1" is an address, not "::" port 1.
            host, port = item, str(default_port)
        else:
            host, _, port = item.rpartition(":")
        try:
            ipaddress.ip_address(host)
            number = int(port)
        except ValueError as exc:
            raise ConfigError(f"{item!r} is not an IP address with an optional :port") from exc
        if not 0 < number <= 65535:
            raise ConfigError(f"{item!r}: port out of range")
        found.append((host, number))
    return found


def site_of(
    endpoints: Sequence[Endpoint],
    *,
    public_key: bytes = b"",
    primary: bool = True,
    hash_option: int = HASH_BY_HANDLE,
    description: str = "",
) -> SiteInfo:
    """An HS_SITE for servers at ``endpoints`` (UDP and TCP on each one's port)."""
    if not endpoints:
        raise ConfigError("a site needs at least one server address")
    servers = tuple(
        ServerInfo(
            server_id=n,
            address=ipaddress.ip_address(host),
            public_key=public_key,
            interfaces=(
                Interface(InterfaceType.ADMIN_AND_QUERY, TransportProtocol.TCP, port),
                Interface(InterfaceType.QUERY, TransportProtocol.UDP, port),
            ),
        )
        for n, (host, port) in enumerate(endpoints, start=1)
    )
    return SiteInfo(
        servers=servers,
        primary_mask=SiteInfo.PRIMARY if primary else 0,
        hash_option=hash_option,
        attributes=(("desc", description),) if description else (),
    )
