"""Sending this node's statistics to its parent node.

A node reports over the parent's HTTP API (``POST /api/stats/reports``), proving its
administrator identity (``admin_handle``, ``admin_index``, ``admin_key.pem``) in a Handle
session, the way any Handle.Net JSON API client authenticates with a key pair. The
parent accepts the rows if that identity administers the prefix handle the parent
holds for each prefix reported: ``idnode prefix delegate --admin-key`` sets that up.

A report holds the hour-by-hour totals of the last ``hours`` hours: this node's own
for the prefixes it homes, and what its children reported to it, so that totals
travel up the hierarchy. The parent replaces the rows it had for the same source,
prefix and hour, so sending again, or twice, never counts anything twice.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import httpx

from idnode.auth.signatures import sign
from idnode.config import Config
from idnode.errors import ConfigError, IdnodeError
from idnode.handle.messages import PROTOCOL_VERSION
from idnode.handle.values import ValueReference
from idnode.keys import PrivateKey, load_private_key
from idnode.node import ADMIN_KEY_FILE, Node
from idnode.stats import ReportedRow, hours_since, report_to_json

__all__ = ["REPORT_HOURS", "ReportFailed", "post_report", "report_rows", "send_report"]

#: How far back the reports of ``idnode serve`` go: a parent away for less than this
#: misses nothing once it is back.
REPORT_HOURS = 48


class ReportFailed(IdnodeError):
    """The parent could not be reached or refused the report."""


def report_rows(node: Node, hours: int) -> list[ReportedRow]:
    """What this node reports: totals from the start of the hour ``hours - 1`` hours
    ago (all there are with ``hours`` 0)."""
    return node.service.statistics.report(node.config.source_name, hours_since(hours, time.time()))


def send_report(config: Config, rows: Sequence[ReportedRow], timeout: float = 10.0) -> int:
    """Send ``rows`` to ``config.parent_url`` as this node's administrator; returns how
    many rows the parent stored. Blocking: servers call it from a thread."""
    return int(post_report(config, report_to_json(rows), timeout).get("stored", 0))


def post_report(config: Config, document: object, timeout: float = 10.0) -> dict[str, Any]:
    """Post a report document to the parent in a session authenticated as this node's
    administrator; the parent's answer, or ReportFailed with its message."""
    if not config.parent_url:
        raise ConfigError("no parent node to report to: set parent_url")
    if not config.admin_handle:
        raise ConfigError("reporting needs this node's administrator identity (admin_handle)")
    identity = ValueReference(config.admin_handle, config.admin_index)
    key = load_private_key(config.data_dir / ADMIN_KEY_FILE)
    try:
        with httpx.Client(base_url=config.parent_url, timeout=timeout) as http:
            opened = _answer(http.post("/api/sessions"), "open a session")
            header = _signed(opened, identity, key)
            try:
                reply = http.post(
                    "/api/stats/reports", json=document, headers={"Authorization": header}
                )
                return _answer(reply, "store the report")
            finally:
                # Close the session rather than leave it to expire on the parent; the
                # report stands whether or not that works.
                with suppress(httpx.HTTPError):
                    http.delete("/api/sessions/this", headers={"Authorization": _session(opened)})
    except httpx.HTTPError as exc:
        raise ReportFailed(f"cannot reach the parent node at {config.parent_url}: {exc}") from exc


def _answer(reply: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ReportFailed(f"the parent node did not {what}: HTTP {reply.status_code}")
    if reply.is_error:
        message = body.get("message") or body.get("detail") or reply.reason_phrase
        raise ReportFailed(f"the parent node did not {what}: {message} (HTTP {reply.status_code})")
    return body


def _session(opened: dict[str, Any]) -> str:
    return f'Handle sessionId="{opened.get("sessionId", "")}"'


def _signed(opened: dict[str, Any], identity: ValueReference, key: PrivateKey) -> str:
    """The Authorization header proving ``identity`` in the session just opened: a
    signature (RSA or SM2) over the server's nonce and one of ours."""
    try:
        nonce = base64.b64decode(str(opened["nonce"]), validate=True)
        session_id = str(opened["sessionId"])
    except (KeyError, ValueError) as exc:
        raise ReportFailed("the parent node's session has no usable nonce") from exc
    cnonce = os.urandom(16)
    name, signature = sign(key, nonce + cnonce, PROTOCOL_VERSION)
    alg = "SHA256" if name == b"SHA-256" else name.decode()
    return (
        f'Handle sessionId="{session_id}", id="{identity.index}:{identity.handle}", '
        f'type="HS_PUBKEY", cnonce="{base64.b64encode(cnonce).decode()}", alg="{alg}", '
        f'signature="{base64.b64encode(signature).decode()}"'
    )
