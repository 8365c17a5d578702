"""A node's data directory: creating one (``idnode init``) and opening it to serve.

Layout of the data directory::

    idnode.toml       settings written by init (see docs/configuration.md)
    idnode.db         the SQLite database (unless ``database`` names another)
    server_key.pem    the server's private key; its public half is in HS_SITE
    admin_key.pem     the administrator's private key; public half in 0.NA/<prefix>
    admin_pub.pem     that public half as PEM, for the parent node (prefix delegate
                      --admin-key), so that it recognises this node's reports
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from idnode.auth import signatures
from idnode.config import CONFIG_FILE, Config, dump_toml
from idnode.domain import HandleRecord
from idnode.errors import ConfigError, IdnodeError
from idnode.handle.codec import Signer
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import (
    AdminPermission,
    AdminValue,
    Interface,
    InterfaceType,
    ServerInfo,
    SiteInfo,
    TransportProtocol,
)
from idnode.keys import (
    KeyType,
    PrivateKey,
    generate_key,
    handle_public_key,
    load_private_key,
    write_public_key,
)
from idnode.names import NA_PREFIX, validate_prefix
from idnode.resolver import AnswerCache, Resolver
from idnode.service import ADMIN_VALUE_INDEX, NodeService
from idnode.storage import Storage, open_storage
from idnode.storage.cache import CachingStorage
from idnode.storage.transfer import Fingerprint, copy_storage

__all__ = [
    "ADMIN_KEY_FILE",
    "ADMIN_PUBLIC_KEY_FILE",
    "SERVER_KEY_FILE",
    "Node",
    "init_node",
    "migrate_node",
    "open_node",
    "server_signer",
]

log = logging.getLogger("idnode")

SERVER_KEY_FILE = "server_key.pem"
ADMIN_KEY_FILE = "admin_key.pem"
ADMIN_PUBLIC_KEY_FILE = "admin_pub.pem"
SITE_VALUE_INDEX = 1


@dataclass
class Node:
    config: Config
    storage: Storage
    service: NodeService

    def close(self) -> None:
        """Flush this process's statistics, then close the database."""
        try:
            self.service.statistics.flush()
        except IdnodeError as exc:
            log.warning("statistics since the last flush are lost: %s", exc.message)
        finally:
            self.storage.close()


def _with_cache(storage: Storage, config: Config) -> Storage:
    """Put a cache in front of backends that announce changes (PostgreSQL)."""
    listen = getattr(storage, "listen", None)
    if listen is None or config.cache_entries == 0:
        return storage
    cache = CachingStorage(storage, max_entries=config.cache_entries, max_age=config.cache_max_age)
    listen(cache)
    return cache


def build_site(config: Config) -> SiteInfo:
    """This node's HS_SITE: one server, reachable over UDP and TCP on the Handle port."""
    key = load_private_key(config.data_dir / SERVER_KEY_FILE)
    try:
        address = ipaddress.ip_address(config.advertised_address)
    except ValueError as exc:
        raise ConfigError(
            f"public_address must be an IP address, got {config.advertised_address!r}"
        ) from exc
    return SiteInfo(
        servers=(
            ServerInfo(
                server_id=1,
                address=address,
                public_key=handle_public_key(key).to_bytes(),
                interfaces=(
                    Interface(
                        InterfaceType.ADMIN_AND_QUERY, TransportProtocol.TCP, config.handle_port
                    ),
                    Interface(InterfaceType.QUERY, TransportProtocol.UDP, config.handle_port),
                ),
            ),
        ),
        attributes=(("desc", "idnode"),),
    )


def server_signer(config: Config) -> Signer:
    """Signs this server's answers to requests that ask for it (CERTIFY), with the
    key whose public half its HS_SITE carries."""
    key = load_private_key(config.data_dir / SERVER_KEY_FILE)
    return functools.partial(signatures.sign, key)


def token_secret(config: Config) -> bytes:
    """The key that signs the node's bearer tokens (SNMS, IDHub): derived from the
    server's private key, so every worker has the same one without storing another
    secret, and a new server key ends every token."""
    material = (config.data_dir / SERVER_KEY_FILE).read_bytes()
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"idnode bearer tokens").derive(material)


def build_resolver(config: Config) -> Resolver | None:
    """The resolver starting at the configured root servers; None when none are set."""
    if not config.root_servers:
        return None
    cache = AnswerCache(config.resolver_cache_entries, config.resolver_negative_seconds)
    return Resolver.from_endpoints(
        config.root_endpoints, cache=cache, max_hops=config.resolver_max_hops
    )


def open_node(config: Config) -> Node:
    if not (config.data_dir / CONFIG_FILE).exists():
        raise ConfigError(
            f"{config.data_dir} is not an idnode data directory; run `idnode init` first"
        )
    return _open(config)


def _open(config: Config) -> Node:
    storage = _with_cache(open_storage(config.database_url, replicas=config.replica_urls), config)
    try:
        admins = (
            (ValueReference(config.admin_handle, config.admin_index),)
            if config.admin_handle
            else ()
        )
        service = NodeService(
            storage,
            build_site(config),
            admins=admins,
            upstream=build_resolver(config),
            recursive=config.role == "recursive",
            share=config.share,
            token_secret=token_secret(config),
            gs1_prefix=config.gs1_prefix,
        )
        return Node(config, storage, service)
    except BaseException:
        storage.close()
        raise


def init_node(
    config: Config,
    prefix: str | None,
    settings: dict[str, object],
    key_type: KeyType = "rsa",
) -> Node:
    """Create a data directory serving ``prefix``, with fresh server and admin keys
    (RSA, or SM2 for nodes whose clients use the national algorithms).

    A root node homes 0.NA (every prefix handle is asked of it first); a recursive node
    homes nothing, so ``prefix`` is None for it.
    """
    if config.role == "root":
        prefix = NA_PREFIX
    if config.role == "recursive":
        prefix = None
    elif prefix is None:
        raise ConfigError(f"a {config.role} node needs the prefix it serves")
    else:
        validate_prefix(prefix)
    directory = config.data_dir
    if (directory / CONFIG_FILE).exists():
        raise ConfigError(f"{directory} is already initialised ({CONFIG_FILE} exists)")
    directory.mkdir(parents=True, exist_ok=True)
    admin_handle = f"{NA_PREFIX}/{prefix}" if prefix else ""
    try:
        generate_key(directory / SERVER_KEY_FILE, key_type)
        admin_key = generate_key(directory / ADMIN_KEY_FILE, key_type)
        write_public_key(directory / ADMIN_PUBLIC_KEY_FILE, admin_key)
    except FileExistsError as exc:
        raise ConfigError(
            f"{exc.filename} exists but {CONFIG_FILE} does not: an earlier init did not "
            "finish; remove the directory and run init again"
        ) from exc
    config = config.replace(admin_handle=admin_handle)
    node = _open(config)
    if prefix is not None:
        _home(node, prefix, admin_handle, admin_key)
    # Written last: its presence is what marks the directory as initialised.
    toml = dump_toml(
        {k: v for k, v in settings.items() if v is not None}
        | {"admin_handle": admin_handle, "role": config.role}
    )
    (directory / CONFIG_FILE).write_text(toml, encoding="utf-8")
    return node


def _home(node: Node, prefix: str, admin_handle: str, admin_key: PrivateKey) -> None:
    """Home ``prefix`` with its prefix handle: this node's site, the admin and its key."""
    config = node.config
    now = int(time.time())
    node.service.prefixes.home_prefix(prefix)
    node.service.prefixes.put_record(
        HandleRecord(
            admin_handle,
            (
                HandleValue(
                    SITE_VALUE_INDEX,
                    "HS_SITE",
                    node.service.reads.site_info().to_bytes(),
                    timestamp=now,
                ),
                HandleValue(
                    ADMIN_VALUE_INDEX,
                    "HS_ADMIN",
                    AdminValue(
                        AdminPermission.ALL, ValueReference(admin_handle, config.admin_index)
                    ).to_bytes(),
                    timestamp=now,
                ),
                HandleValue(
                    config.admin_index,
                    "HS_PUBKEY",
                    handle_public_key(admin_key).to_bytes(),
                    timestamp=now,
                    permissions=Permission.ADMIN_READ
                    | Permission.ADMIN_WRITE
                    | Permission.PUBLIC_READ,
                ),
            ),
        )
    )


def migrate_node(
    config: Config, target_url: str, *, switch: bool, progress: Callable[[int], None]
) -> Fingerprint:
    """Copy the node's database to ``target_url`` (empty), verify it, optionally switch.

    With ``switch`` the node's idnode.toml is rewritten to use the new database; the
    old one is left untouched either way, as the way back.
    """
    node = open_node(config)
    try:
        target = open_storage(target_url)
        try:
            result = copy_storage(node.storage, target, progress)
        finally:
            target.close()
    finally:
        node.close()
    if switch:
        path = config.data_dir / CONFIG_FILE
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
        settings["database"] = target_url
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(dump_toml(settings), encoding="utf-8")
        tmp.replace(path)
    return result
