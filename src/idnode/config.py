"""One typed configuration, loadable from a TOML file, a mapping and the environment.

Precedence, lowest first: defaults, ``<data dir>/idnode.toml``, ``IDNODE_*`` environment
variables, then explicit overrides (the CLI's options). Every setting is documented in
``docs/configuration.md``; a test checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idnode.errors import ConfigError

if TYPE_CHECKING:
    from idnode.sites import Share

__all__ = ["CONFIG_FILE", "ROLES", "Config", "dump_toml", "load_config"]

CONFIG_FILE = "idnode.toml"
ROLES = ("root", "top-level", "secondary", "enterprise", "recursive")
ENV_PREFIX = "IDNODE_"


@dataclass(frozen=True)
class Config:
    #: Directory holding the database, keys and idnode.toml.
    data_dir: Path = Path(".idnode")
    #: Database URL; empty means ``sqlite:///<data_dir>/idnode.db``.
    database: str = ""
    #: Comma-separated URLs of PostgreSQL streaming replicas to read from.
    database_replicas: str = ""
    #: Address the servers bind to.
    host: str = "127.0.0.1"
    #: Address published in this node's HS_SITE; empty means ``host`` (or 127.0.0.1
    #: when ``host`` is a wildcard).
    public_address: str = ""
    #: Handle protocol port, for both UDP and TCP.
    handle_port: int = 2641
    #: HTTP port (Handle.Net JSON API, proxy pages, /healthz).
    http_port: int = 8000
    #: Worker processes sharing the ports through SO_REUSEPORT.
    workers: int = 1
    #: Largest UDP reply; bigger answers are sent truncated so the client uses TCP.
    udp_max_response: int = 512
    #: UDP answers per second to one source address (per worker); 0 means no limit.
    #: Over it, requests are dropped, and every second one gets a truncated answer.
    #: The default (-1) is automatic: PUBLIC_UDP_RATE_LIMIT when ``host`` is not a
    #: loopback address (a public node must not be usable to amplify floods), else none.
    udp_rate_limit: float = -1.0
    #: What an anonymous resolution that does not set PUBLIC_ONLY gets, for a record
    #: holding values that are not public: ``public``, its public values (what
    #: China's IDIS SDKs, which never answer such a challenge, need); ``challenge``, a
    #: challenge to authenticate first (Handle.Net's behaviour). In a MACed Handle
    #: session such a read is challenged either way.
    anonymous_reads: str = "public"
    #: The cipher of encrypted sessions the IDIS SDKs set up (key exchange mode 3):
    #: ``sm4`` (the national algorithm) or ``aes``.
    session_cipher: str = "sm4"
    #: Connections a worker serves at once over TCP; more are closed at once.
    tcp_max_connections: int = 1024
    #: Seconds an idle TCP connection is kept open.
    tcp_idle_timeout: float = 30.0
    #: TCP connections one address may hold open (per worker).
    tcp_max_per_address: int = 64
    #: Seconds a TCP request may take to arrive whole, from its first byte.
    tcp_request_timeout: float = 10.0
    #: Seconds an HTTP request's head (request line and headers) may take to arrive.
    http_header_timeout: float = 10.0
    #: Failed authentications one address may make over HTTP per minute (per worker);
    #: over it, its requests with credentials get 429 until the allowance refills.
    http_auth_failures: float = 30.0
    #: Handle session set-ups (a key agreement each) one address may make per minute
    #: (per worker); more are answered SERVER_TOO_BUSY.
    session_setups_per_minute: float = 60.0
    #: Handle challenges (a database write each: the answer may reach another worker)
    #: one address may cause per minute (per worker); more are answered SERVER_TOO_BUSY.
    challenges_per_minute: float = 600.0
    #: Records each process caches in memory when the database can announce changes
    #: (PostgreSQL); 0 turns the cache off. SQLite nodes never cache.
    cache_entries: int = 10_000
    #: Megabytes of encoded answers each worker keeps to send again to anonymous
    #: resolutions asked three times or more, over the Handle protocol and as much again
    #: over HTTP (see idnode.server.answers); 0: none.
    answer_cache_mb: int = 64
    #: Minutes after its last request that a web console session ends.
    console_idle_minutes: int = 30
    #: Seconds a cached record may be served at most, even if no change was announced.
    cache_max_age: float = 300.0
    #: Seconds between each worker's additions of its counts to the shared statistics.
    stats_flush_seconds: float = 10.0
    #: The prefix GS1 codes map to (``88.100.1``: GTIN 09506000134352 with serial 12
    #: is ``88.100.1/01/09506000134352/21/12``), served at the GS1 Digital Link
    #: paths (``/01/...``); empty: GS1 resolution is off.
    gs1_prefix: str = ""
    #: Base URL of the parent node's HTTP API (``http://10.0.0.1:8000``) that
    #: ``idnode serve`` reports this node's statistics to; empty: no reporting.
    parent_url: str = ""
    #: Seconds between reports to the parent node.
    stats_report_seconds: float = 300.0
    #: The name this node's rows carry in reports; empty means
    #: ``<public address>:<handle port>``.
    node_name: str = ""
    #: Log level for the servers: debug (a line per request), info (a line per
    #: write), warning, error.
    log_level: str = "info"
    #: text, or json: one JSON object per line, for a log collector.
    log_format: str = "text"
    #: PEM certificate (chain) and private key for HTTPS; empty: plain HTTP.
    tls_cert: str = ""
    tls_key: str = ""
    #: PEM file of the CAs (or self-signed client certificates) whose client
    #: certificates the HTTP API accepts as identities; empty: none are asked for.
    tls_client_ca: str = ""
    #: What this node is in the hierarchy: root, top-level, secondary, enterprise (all
    #: answer for the prefixes they home and refer for those they delegate) or
    #: recursive (answers for every handle, through the resolver). Set by ``idnode init``.
    role: str = "enterprise"
    #: Comma-separated ``address:port`` of the root servers the resolver starts from
    #: (each a mirror of the others). Needed by recursive nodes; on other nodes it lets
    #: the proxy pages show handles held elsewhere.
    root_servers: str = ""
    #: Answers the resolver keeps (least recently used go first); 0 turns caching off.
    resolver_cache_entries: int = 10_000
    #: Seconds the resolver remembers "not found" answers.
    resolver_negative_seconds: float = 60.0
    #: Referrals, service handles and aliases one resolution may follow.
    resolver_max_hops: int = 16
    #: This server's share when its site has several servers that divide the handles:
    #: ``N/M``, server N (from 1, in the order of the site's HS_SITE) of M. It then
    #: stores and answers only the handles that hash to it. Empty: it holds them all.
    site_share: str = ""
    #: What the site's servers hash to divide handles: prefix, suffix or handle (the
    #: HS_SITE's hash option; it must match the delegation's ``--hash``).
    site_hash: str = "handle"
    #: Handle that holds this node's administrator key (set by ``idnode init``).
    admin_handle: str = ""
    #: Index of the administrator's HS_PUBKEY value.
    admin_index: int = 300

    @property
    def root_endpoints(self) -> list[tuple[str, int]]:
        from idnode.sites import parse_endpoints

        return parse_endpoints(self.root_servers)

    @property
    def share(self) -> Share | None:
        from idnode.sites import Share

        return Share.parse(self.site_share, self.site_hash) if self.site_share else None

    @property
    def source_name(self) -> str:
        return self.node_name or f"{self.advertised_address}:{self.handle_port}"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.data_dir / 'idnode.db').resolve()}"

    @property
    def replica_urls(self) -> list[str]:
        return [u.strip() for u in self.database_replicas.split(",") if u.strip()]

    @property
    def effective_udp_rate_limit(self) -> float:
        """``udp_rate_limit``, the automatic default resolved by the bind address."""
        if self.udp_rate_limit >= 0:
            return self.udp_rate_limit
        loopback = self.host in ("localhost", "") or _is_loopback(self.host)
        return 0.0 if loopback else PUBLIC_UDP_RATE_LIMIT

    @property
    def advertised_address(self) -> str:
        if self.public_address:
            return self.public_address
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> Config:
        return _build(dataclasses.asdict(self) | changes)


#: Answers per second to one source when ``udp_rate_limit`` is automatic and the
#: node binds an address other hosts reach.
PUBLIC_UDP_RATE_LIMIT = 100.0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _coerce(name: str, raw: Any, target: Any) -> Any:
    kind = type(target)
    try:
        if kind is Path:
            return Path(raw)
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
        if kind in (int, float, str):
            return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {raw!r} as {kind.__name__}") from exc
    return raw


def _build(values: Mapping[str, Any]) -> Config:
    defaults = Config()
    known = set(Config.setting_names())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    kwargs = {
        name: _coerce(name, values[name], getattr(defaults, name))
        for name in known
        if name in values
    }
    config = Config(**kwargs)
    _validate(config)
    return config


#: Settings that take one of a few words.
_CHOICES = {"anonymous_reads": ("public", "challenge"), "session_cipher": ("sm4", "aes")}
_RANGES = {
    "handle_port": (0, 65535),
    "http_port": (0, 65535),
    "answer_cache_mb": (0, 65536),
    "console_idle_minutes": (1, 24 * 60),
}


def _validate(config: Config) -> None:
    _validate_limits(config)
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            raise ConfigError(
                f"{name} must be {' or '.join(choices)}, got {getattr(config, name)!r}"
            )
    if config.stats_flush_seconds <= 0 or config.stats_report_seconds <= 0:
        raise ConfigError("stats_flush_seconds and stats_report_seconds must be positive")
    if config.parent_url and not config.parent_url.startswith(("http://", "https://")):
        raise ConfigError(f"parent_url must be an http:// or https:// URL: {config.parent_url}")
    if config.cache_entries < 0 or config.cache_max_age < 0:
        raise ConfigError("cache_entries and cache_max_age must not be negative")
    for name, (low, high) in _RANGES.items():
        if not low <= getattr(config, name) <= high:
            raise ConfigError(f"{name} must be {low} to {high}, got {getattr(config, name)}")
    if config.workers < 1:
        raise ConfigError(f"workers must be at least 1, got {config.workers}")
    if not 64 <= config.udp_max_response <= 65507:
        raise ConfigError("udp_max_response must be between 64 and 65507 bytes")
    _validate_tls(config)
    _validate_hierarchy(config)
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level must be debug, info, warning or error: {config.log_level}")
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be text or json, got {config.log_format!r}")


def _validate_limits(config: Config) -> None:
    if config.http_header_timeout <= 0 or config.tcp_request_timeout <= 0:
        raise ConfigError("http_header_timeout and tcp_request_timeout must be above 0")
    if min(config.http_auth_failures, config.session_setups_per_minute) <= 0:
        raise ConfigError("http_auth_failures and session_setups_per_minute must be above 0")
    if config.challenges_per_minute <= 0:
        raise ConfigError("challenges_per_minute must be above 0")
    if config.tcp_max_per_address < 1:
        raise ConfigError("tcp_max_per_address must be 1 or more")
    if config.udp_rate_limit < 0 and config.udp_rate_limit != -1:
        raise ConfigError("udp_rate_limit must be 0 or more (or -1: automatic)")


def _validate_tls(config: Config) -> None:
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("tls_cert and tls_key go together: set both or neither")
    if config.tls_client_ca and not config.tls_cert:
        raise ConfigError("tls_client_ca needs TLS: set tls_cert and tls_key too")


def _validate_hierarchy(config: Config) -> None:
    if config.role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {config.role!r}")
    if config.root_servers:
        config.root_endpoints  # noqa: B018 - raises ConfigError when malformed
    if config.role == "recursive" and not config.root_servers:
        raise ConfigError("a recursive node needs root_servers: where resolution starts")
    if config.resolver_cache_entries < 0 or config.resolver_negative_seconds < 0:
        raise ConfigError(
            "resolver_cache_entries and resolver_negative_seconds must not be negative"
        )
    if config.resolver_max_hops < 1:
        raise ConfigError("resolver_max_hops must be at least 1")
    if config.site_hash not in ("prefix", "suffix", "handle"):
        raise ConfigError(f"site_hash must be prefix, suffix or handle, got {config.site_hash!r}")
    config.share  # noqa: B018 - raises ConfigError when malformed


def load_config(
    data_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    env_values = {
        key[len(ENV_PREFIX) :].lower(): val
        for key, val in env.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in Config.setting_names()
    }
    directory = data_dir or Path(env_values.get("data_dir", Config.data_dir))
    path = directory / CONFIG_FILE
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    values.update(env_values)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values["data_dir"] = directory
    return _build(values)


def dump_toml(values: Mapping[str, Any]) -> str:
    """Write simple settings (str, int, float, bool) as TOML for ``idnode init``."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
    return "\n".join(lines) + "\n"
