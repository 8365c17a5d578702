"""Pushing subscribed events: to webhooks from every worker, and over WebSockets.

Each worker looks every second for subscriptions with something to deliver; it takes
a lease in the database before it posts, so one worker delivers each batch, and it
moves the subscription's cursor only after the destination answered 2xx. A failing
destination is tried again later, waiting twice as long each time (at most five
minutes); nothing is skipped meanwhile. The callback is ``POST {dest}?secret=...``
with an EPCISQueryDocument, as the REST binding's draft says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from starlette.websockets import WebSocket, WebSocketDisconnect

from idnode.epcis.documents import query_document
from idnode.epcis.events import millis
from idnode.epcis.schedules import FIELDS, parse_schedule
from idnode.epcis.selection import NamedQuery, Subscription
from idnode.errors import IdnodeError
from idnode.service import Caller
from idnode.service.offloop import OffLoop
from idnode.service.trace import page_of
from idnode.service.trace_subscriptions import Batch

__all__ = ["BATCH", "push_subscriptions_every", "stream_to_websocket"]

log = logging.getLogger(__name__)

BATCH = 500


async def push_subscriptions_every(off: OffLoop, period: float = 1.0) -> None:
    """Deliver due webhook subscriptions until cancelled. Nothing stops it but
    cancellation: a failing database or a broken subscription is logged and the next
    turn tries again."""
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        while True:
            try:
                await push_due(off, client)
            except Exception:
                log.warning("could not deliver subscriptions", exc_info=True)
            await asyncio.sleep(period)


async def push_due(off: OffLoop, client: httpx.AsyncClient) -> int:
    """One turn: deliver what is due; how many events were delivered."""
    subs = off.service.trace_subscriptions
    delivered = 0
    for subscription in await off.read(subs.due):
        try:
            if not subscription.schedule:  # a stream: only when there is something new
                waiting = await off.read(subs.batch, subscription, 1)
                if not waiting.exists:
                    continue
                if not waiting.rows:
                    await off.write(subs.skip, subscription, waiting.scanned)
                    continue
            if not await off.write(subs.lease, subscription):
                continue  # another worker has it, or delivered it since it was read
            delivered += await _deliver(off, client, subscription)
        except Exception as exc:
            log.warning("subscription %s failed", subscription.subscription_id, exc_info=True)
            with suppress(Exception):
                await off.write(subs.delivered, subscription, Batch([], 0), f"error: {exc}")
    return delivered


async def _deliver(off: OffLoop, client: httpx.AsyncClient, subscription: Subscription) -> int:
    """Post the leased subscription's new events, a batch at a time."""
    subs = off.service.trace_subscriptions
    total = 0
    while True:
        batch = await off.read(subs.batch, subscription, BATCH)
        if not batch.exists:
            return total
        if not batch.rows and not (subscription.schedule and subscription.report_if_empty):
            await off.write(subs.delivered, subscription, batch)
            return total
        page = page_of(batch.rows)
        document = query_document(page.events, page.context, subscription.query_name,
                                  subscription.subscription_id)  # fmt: skip
        error = await _post(client, subscription, document)
        await off.write(subs.delivered, subscription, batch, error)
        if error:
            log.warning("subscription %s to %s: %s", subscription.subscription_id,
                        subscription.dest, error)  # fmt: skip
            return total
        total += len(batch.rows)
        if len(batch.rows) < BATCH:
            return total
        subscription = await off.read(subs.subscription_by_id, subscription.subscription_id)
        if not await off.write(subs.lease, subscription):
            return total  # taken by another worker meanwhile: it goes on


async def _post(client: httpx.AsyncClient, subscription: Subscription, document: Any) -> str:
    """ "" if the destination took the document, else what went wrong."""
    parts = urlsplit(subscription.dest)
    query = "&".join(q for q in (parts.query, urlencode({"secret": subscription.secret})) if q)
    url = urlunsplit(parts._replace(query=query))
    try:
        answer = await client.post(url, json=document)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= answer.status_code < 300:
        return ""
    return f"the destination answered {answer.status_code}"


async def stream_to_websocket(
    off: OffLoop,
    websocket: WebSocket,
    caller: Caller,
    named: NamedQuery,
    params: dict[str, str],
) -> None:
    """Send the named query's new events to a WebSocket as they are captured
    (``stream=true``) or on a schedule, until the client goes away."""
    subs = off.service.trace_subscriptions
    try:
        schedule = {k: v for k, v in params.items() if k in FIELDS}
        plan = parse_schedule(schedule) if schedule else None
        initial = params.get("initialRecordTime")
        start = millis(initial) if initial else int(time.time() * 1000)
    except IdnodeError as exc:
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    report_if_empty = params.get("reportIfEmpty", "false").lower() == "true"
    last_seq = 0
    await websocket.accept()
    # The client says nothing after connecting; waiting for what it says is how its
    # leaving is noticed, between deliveries as well as during them.
    gone = asyncio.ensure_future(websocket.receive())
    try:
        while True:
            if plan is not None:
                due = await off.read(plan.next_after, int(time.time() * 1000))
                wait = due / 1000 - time.time()
            else:
                wait = 0.5
            await asyncio.wait({gone}, timeout=max(wait, 0))
            if gone.done():
                if gone.result().get("type") == "websocket.disconnect":
                    break
                gone = asyncio.ensure_future(websocket.receive())  # a message: ignored
                continue
            batch = await off.read(subs.since, caller, named, last_seq, BATCH, start)
            if batch.rows or (plan is not None and report_if_empty):
                page = page_of(batch.rows)
                await websocket.send_json(query_document(page.events, page.context, named.name))
            last_seq = batch.scanned
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        gone.cancel()
