"""The node as a whole: dashboard, templates, prefixes, identities, audit, statistics.

Figures that take a scan of the database (how many identifiers a prefix holds) are
loaded after the page, as fragments, so a page stays fast at millions of records.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from idnode.auth.handle_header import parse_identity
from idnode.console.values import PERMISSION_NAMES, admin_permissions, record_link
from idnode.console.web import check_csrf, error_page, form_of, page_of, redirect, render
from idnode.domain import AuditQuery, HandleRecord
from idnode.errors import AuthenticationNeeded, IdnodeError, InvalidValue
from idnode.handle.values import HandleValue
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.names import NA_PREFIX, split_handle
from idnode.service.offloop import OffLoop
from idnode.stats import StatsRow
from idnode.templates import Template

__all__ = [
    "audit_page",
    "dashboard",
    "identities_page",
    "parent_health",
    "prefix_count",
    "prefixes_page",
    "save_admin",
    "stats_page",
    "template_page",
    "templates_page",
]

HOURS = 48


def _hourly(rows: Sequence[StatsRow], now: float) -> dict[str, Any]:
    """The last ``HOURS`` hours of resolutions, registrations and not-found answers."""
    first = int(now // 3600 - HOURS + 1) * 3600
    hours = [first + 3600 * i for i in range(HOURS)]
    sums: dict[int, Counter[str]] = defaultdict(Counter)
    for row in rows:
        sums[row.hour].update(
            resolutions=row.resolutions, registrations=row.registrations, not_found=row.not_found
        )
    return {
        "labels": [time.strftime("%m-%d %H:00", time.gmtime(h)) for h in hours],
        "series": {
            k: [sums[h][k] for h in hours] for k in ("resolutions", "registrations", "not_found")
        },
    }


async def dashboard(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    service = off.service
    now = time.time()
    since = int(now // 3600 - HOURS + 1) * 3600
    prefixes, rows, delegations, reported = await asyncio.gather(
        off.read(service.reads.homed_prefixes),
        off.read(service.statistics.totals, None, since),
        off.read(service.prefixes.delegations),
        off.read(service.statistics.reported, since),
    )
    hourly = _hourly(rows, now)
    _ = page._
    chart = {
        "labels": hourly["labels"],
        "series": [
            {"name": _("Resolutions"), "values": hourly["series"]["resolutions"]},
            {"name": _("Registrations"), "values": hourly["series"]["registrations"]},
            {"name": _("Not found"), "values": hourly["series"]["not_found"]},
        ],
    }
    by_prefix: Counter[str] = Counter()
    for row in rows:
        by_prefix[row.prefix] += row.resolutions
    resolved = sum(hourly["series"]["resolutions"])
    missing = sum(hourly["series"]["not_found"])
    last_report: dict[str, float] = {}
    for item in reported:
        last_report[item.source] = max(last_report.get(item.source, 0.0), item.received)
    children = [
        {
            "prefix": split_handle(d.handle)[1],
            "href": record_link(d.handle),
            "last_report": last_report.get(split_handle(d.handle)[1]),
        }
        for d in delegations
    ]
    return render(
        page,
        "dashboard.html",
        role=request.app.state.role,
        parent=request.app.state.parent_url,
        prefixes=prefixes,
        chart=chart,
        top=by_prefix.most_common(10),
        resolved=resolved,
        registered=sum(hourly["series"]["registrations"]),
        not_found_rate=(missing / (resolved + missing)) if resolved + missing else None,
        children=children,
        reporters=sorted(last_report.items()),
        now=now,
    )


async def prefix_count(off: OffLoop, request: Request) -> Response:
    """A fragment: how many identifiers a prefix holds (a range count, loaded late), for
    those who may list them, as ``GET /api/handles?prefix=`` answers its total."""
    page = await page_of(off, request)
    prefix = request.query_params.get("prefix", "")
    try:
        _, count = await off.read(off.service.writes.list_handles, prefix, page.caller, 0, 1)
    except IdnodeError:
        return HTMLResponse("—")
    return HTMLResponse(f"{count:,}")


async def parent_health(off: OffLoop, request: Request) -> Response:
    """A fragment: whether the parent node's ``/healthz`` answers (2 s at most)."""
    page = await page_of(off, request)
    parent = request.app.state.parent_url
    if not parent:
        return HTMLResponse("")
    _ = page._
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            answer = await client.get(parent.rstrip("/") + "/healthz")
        healthy = answer.status_code == 200
    except httpx.HTTPError:
        healthy = False
    text = _("answering") if healthy else _("not answering")
    return HTMLResponse(f'<span class="badge {"public" if healthy else "owner"}">{text}</span>')


async def templates_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    templates = await off.read(off.service.templates.templates)
    return render(page, "templates.html", templates=templates)


async def template_page(off: OffLoop, request: Request) -> Response:
    """A template's fields, its versions, and (for its administrators) a new version."""
    page = await page_of(off, request)
    name = request.path_params["name"]
    templates = off.service.templates
    problem = ""
    definition = ""
    try:
        versions = await off.read(templates.versions, name) or [
            await off.read(templates.template, name)  # a built-in one: NoSuchResource if not
        ]
        if request.method == "POST":
            form = dict(await form_of(request))
            check_csrf(page, form)
            definition = form.get("definition", "")
            try:
                document = json.loads(definition)
                await off.write(templates.define_template, name, document, page.caller)
            except json.JSONDecodeError as exc:
                problem = page._("The definition is not JSON: {why}", why=str(exc))
            except (InvalidValue, AuthenticationNeeded) as exc:
                problem = exc.message
            else:
                return redirect(f"/console/templates/{quote(name, safe='')}")
            versions = await off.read(templates.versions, name) or versions
    except IdnodeError as exc:
        return error_page(page, exc)
    shown = _version_shown(versions, request.query_params.get("version"))
    return render(
        page,
        "template.html",
        status=400 if problem else 200,
        template=shown,
        versions=versions,
        problem=problem,
        definition=definition
        or json.dumps(_definition(versions[-1]), indent=2, ensure_ascii=False),
    )


def _version_shown(versions: Sequence[Template], asked: str | None) -> Template:
    for template in versions:
        if asked is not None and asked == str(template.version):
            return template
    return versions[-1]


def _definition(template: Template) -> dict[str, Any]:
    document = template.to_json()
    for key in ("name", "version"):
        document.pop(key, None)
    return document


async def prefixes_page(off: OffLoop, request: Request) -> Response:
    """The prefixes homed here and delegated from here, as the tree they make."""
    page = await page_of(off, request)
    homed, delegations = await asyncio.gather(
        off.read(off.service.reads.homed_prefixes), off.read(off.service.prefixes.delegations)
    )
    names = dict.fromkeys(homed, "homed")
    for record in delegations:
        names.setdefault(split_handle(record.handle)[1], "delegated")
    return render(page, "prefixes.html", tree=_tree(names))


def _tree(names: dict[str, str]) -> list[dict[str, Any]]:
    """Prefixes nested by their dotted parents (88 > 88.100 > 88.100.1)."""
    nodes: dict[str, dict[str, Any]] = {}
    for prefix in sorted(names, key=lambda p: (p.count("."), p)):
        nodes[prefix] = {"prefix": prefix, "kind": names[prefix], "children": []}
    roots: list[dict[str, Any]] = []
    for prefix, node in nodes.items():
        parent = prefix.rpartition(".")[0]
        while parent and parent not in nodes:
            parent = parent.rpartition(".")[0]
        (nodes[parent]["children"] if parent else roots).append(node)
    return roots


async def identities_page(off: OffLoop, request: Request) -> Response:
    """Who administers each prefix held here, with what permissions; password accounts.
    Each prefix's HS_ADMIN values can be edited by whoever may modify admins there."""
    page = await page_of(off, request)
    if not page.signed_in:
        return error_page(page, AuthenticationNeeded("sign in to see identities"))
    service = off.service
    homed = await off.read(service.reads.homed_prefixes)
    prefixes = []
    for prefix in homed:
        handle = f"{NA_PREFIX}/{prefix}"
        try:
            record = await off.resolve(handle, caller=page.caller, public_only=False)
        except IdnodeError:
            continue
        granted = await off.read(service.writes.granted, handle, page.caller)
        prefixes.append(
            {
                "prefix": prefix,
                "handle": handle,
                "admins": _admins(record),
                "may_edit": bool(granted & AdminPermission.MODIFY_ADMIN),
            }
        )
    accounts = await off.read(service.accounts.administered_by, page.caller)
    return render(
        page,
        "identities.html",
        prefixes=prefixes,
        accounts=accounts,
        permissions=PERMISSION_NAMES,
    )


def _admins(record: HandleRecord) -> list[dict[str, Any]]:
    found = []
    for value in sorted(record.values, key=lambda v: v.index):
        if value.type != "HS_ADMIN":
            continue
        try:
            admin = AdminValue.from_bytes(value.data)
        except IdnodeError:
            continue
        found.append(
            {
                "index": value.index,
                "admin": f"{admin.admin.index}:{admin.admin.handle}",
                "href": record_link(admin.admin.handle),
                "bits": admin.permissions,
                "names": admin_permissions(admin.permissions),
            }
        )
    return found


async def save_admin(off: OffLoop, request: Request) -> Response:
    """Add or replace one HS_ADMIN value of a prefix handle: who, and the twelve
    permissions as checkboxes. The write is the API's (``put_values``): it needs
    ADD_ADMIN or MODIFY_ADMIN there, checked by the service."""
    page = await page_of(off, request)
    try:
        items = await form_of(request)
        form = dict(items)
        check_csrf(page, form)
        handle = form.get("handle", "")
        index_text = form.get("index", "")
        index = int(index_text) if index_text.isdigit() and len(index_text) < 10 else 0
        if not 0 < index < 2**31:
            raise InvalidValue("the admin value's index must be a positive number")
        who = form.get("admin", "").strip()
        admin = parse_identity(who)
        if admin.index == 0 or "/" not in admin.handle:
            raise InvalidValue(f"the administrator must be index:handle, not {who!r}")
        chosen = {v for k, v in items if k == "perm"}
        bits = AdminPermission.NONE
        for bit, name in PERMISSION_NAMES:
            if name in chosen:
                bits |= bit
        value = HandleValue(index, "HS_ADMIN", AdminValue(bits, admin).to_bytes())
        await off.write(off.service.writes.put_values, handle, [value], page.caller)
    except IdnodeError as exc:
        return error_page(page, exc)
    return redirect("/console/identities?saved=" + quote(handle, safe=""))


async def audit_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    params = request.query_params
    days = params.get("days", "7")
    since = time.time() - 86400 * (int(days) if days.isdigit() and int(days) <= 3650 else 7)
    query = AuditQuery(
        handle=params.get("handle") or None,
        actor=params.get("actor") or None,
        since=since,
        limit=5000,
    )
    try:
        entries = await off.read(off.service.writes.audit_visible, page.caller, query)
    except IdnodeError as exc:
        return error_page(page, exc)
    operation = params.get("operation", "")
    if operation:
        entries = [e for e in entries if e.operation == operation]
    return render(
        page,
        "audit.html",
        entries=entries[:500],
        more=len(entries) > 500,
        form={
            "handle": params.get("handle", ""),
            "actor": params.get("actor", ""),
            "days": days,
            "operation": operation,
        },
    )


async def stats_page(off: OffLoop, request: Request) -> Response:
    """What child nodes reported, per node and prefix, over the last days."""
    page = await page_of(off, request)
    since = int(time.time() // 3600 - 24 * 7) * 3600
    reported = await off.read(off.service.statistics.reported, since)
    totals: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    received: dict[tuple[str, str], float] = {}
    for item in reported:
        key = (item.source, item.stats.prefix)
        totals[key].update(
            resolutions=item.stats.resolutions,
            not_found=item.stats.not_found,
            registrations=item.stats.registrations,
        )
        received[key] = max(received.get(key, 0.0), item.received)
    rows = [
        {"source": s, "prefix": p, **totals[(s, p)], "received": received[(s, p)]}
        for s, p in sorted(totals)
    ]
    return render(page, "stats.html", rows=rows)
