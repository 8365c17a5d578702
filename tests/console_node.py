"""A node for the console tests: demo records, and identities to sign in as.

- ``operator`` (password account) acts as 300:0.NA/88.100.1, the prefix's
  administrator (every permission): the node's admin key file proves it too;
- ``300:88.100.1/VIEWER`` (secret key) may list handles and nothing more;
- the demo's EPCIS events for those pumps (the inspections public), for the trace pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from idnode.demo import demo_events, demo_records
from idnode.domain import HandleRecord
from idnode.epcis.documents import capture_document
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.service import Caller
from tests.conftest import make_node

PASSWORD = "console-password-1"
OPERATOR = "300:0.NA/88.100.1"
VIEWER = "300:88.100.1/VIEWER"
VIEWER_SECRET = "viewer-s3cret"
PUMPS = 60


def build(path: Path) -> Path:
    """An initialised node in ``path`` holding the demo with ``PUMPS`` pumps."""
    node = make_node(path)
    records = list(demo_records(PUMPS))
    node.service.bulk.register_many(records, replace=True)
    events = list(demo_events(records))
    for access in ("public", "owner"):
        chosen = [e for e in events if (e.get("bizStep") == "inspecting") == (access == "public")]
        node.service.trace.capture(
            Caller(ValueReference("0.NA/88.100.1", 300)), capture_document(chosen),
            access=access,
        )  # fmt: skip
    node.service.accounts.add("operator", ValueReference("0.NA/88.100.1", 300), PASSWORD)
    prefix_handle = node.storage.get("0.NA/88.100.1")
    assert prefix_handle is not None
    viewer = ValueReference("88.100.1/VIEWER", 300)
    grant = AdminValue(AdminPermission.LIST_HANDLES, viewer).to_bytes()
    node.service.prefixes.put_record(
        HandleRecord(
            prefix_handle.handle, (*prefix_handle.values, HandleValue(102, "HS_ADMIN", grant))
        )
    )
    secret = HandleValue(
        300,
        "HS_SECKEY",
        VIEWER_SECRET.encode(),
        permissions=Permission.ADMIN_READ | Permission.ADMIN_WRITE,
    )
    node.service.prefixes.put_record(HandleRecord("88.100.1/VIEWER", (secret,)))
    node.close()
    return path


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, **form: str) -> httpx.Response:
    """POST the sign-in form (``method=account|secret|key``); the client keeps the cookie."""
    return client.post("/console/signin", data=form, follow_redirects=False)


def operator(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    answer = sign_in(client, method="account", name="operator", password=PASSWORD)
    assert answer.status_code == 303, answer.text
    return client


def edit_form(client: httpx.Client, handle: str, **changes: str) -> dict[str, str]:
    """The edit form of ``handle`` as a browser would send it (every field, its CSRF
    token), with ``changes`` (``status="returned"``) made."""
    page = client.get(f"/console/edit/{handle}").text
    form = dict(re.findall(r'name="(field\.\w+)" value="([^"]*)"', page))
    for name, options in re.findall(
        r'<select[^>]*name="(field\.\w+)"[^>]*>(.*?)</select>', page, re.S
    ):
        chosen = re.search(r"<option selected>([^<]*)</option>", options)
        form[name] = chosen.group(1) if chosen else ""
    form |= {f"field.{name}": value for name, value in changes.items()}
    return {"csrf": csrf_of(page), **form}
