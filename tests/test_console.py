# ruff: noqa: RUF001  (Chinese text takes full-width punctuation)
"""The web console over HTTP (the browser tests are in test_console_browser.py):
who sees what, sign-in and its protections, forms, bulk upload, translations."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from idnode.config import ROLES, Config
from idnode.console.catalog import ZH_CN
from idnode.console.codes import codes_for
from idnode.console.i18n import _PROBLEMS, Translator, field_problem, negotiate
from idnode.console.values import PERMISSION_NAMES
from idnode.epcis.documents import capture_document
from idnode.epcis.identifiers import identifier_key
from idnode.errors import AuthenticationNeeded
from idnode.handle.values import Permission, ValueReference
from idnode.handle.valuetypes import SiteInfo
from idnode.node import open_node
from idnode.service import Caller, NodeService
from idnode.stats import ReportedRow, StatsRow
from idnode.storage import Storage
from idnode.templates import FIELD_TYPES
from tests import console_node
from tests.clock import Clock
from tests.conftest import RunningNode, rsa_key, running

CONSOLE = Path(__file__).parent.parent / "src" / "idnode" / "console"


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return console_node.build(tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def server(node_dir: Path) -> Iterator[RunningNode]:
    config = Config(data_dir=node_dir, handle_port=0, http_port=0, http_auth_failures=1000)
    with running(config) as node:
        yield node


@pytest.fixture
def anonymous(server: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=30) as client:
        yield client


@pytest.fixture
def operator(server: RunningNode) -> Iterator[httpx.Client]:
    client = console_node.operator(server.http)
    try:
        yield client
    finally:
        client.close()


def _restricted_values(node_dir: Path) -> set[str]:
    """The demo's values that are not public (partner and owner fields), read from the
    node's own storage: those long enough to be told apart from other text on a page,
    and not themselves the identifier of a record (a pump's batch is a partner field,
    the batch's own record is public)."""
    node = open_node(Config(data_dir=node_dir))
    try:
        records = list(node.service.reads.export_records("88.100.1"))
        handles = {r.handle for r in records}
        found = set()
        for record in records:
            for value in record.values:
                text = value.data.decode("utf-8", "replace")
                if Permission.PUBLIC_READ not in value.permissions and len(text) >= 6:
                    found.add(text)
        return found - handles
    finally:
        node.close()


def _visible_text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


# -- who sees what -------------------------------------------------------------------


def test_an_anonymous_visitor_sees_no_partner_or_owner_value_anywhere(
    anonymous: httpx.Client, node_dir: Path
) -> None:
    hidden = _restricted_values(node_dir)
    assert len(hidden) > 100
    assert any(v.startswith("Customer ") for v in hidden)  # owner: a pump's customer
    assert any(v.startswith("Supplier ") for v in hidden)  # partner: a part's supplier
    pages = ["/console/", "/console/ids", "/console/templates", "/console/prefixes",
             "/console/stats", "/console/bulk", "/console/identities", "/console/audit",
             "/console/ids?template=serial-item", "/console/ids?q=Customer",
             "/console/ids?template=part&page=1"]  # fmt: skip
    for n in range(1, 11):
        pages += [
            f"/console/record/88.100.1/PUMP-{n:04d}",
            f"/console/history/88.100.1/PUMP-{n:04d}",
        ]
    pages += [f"/console/record/88.100.1/PART-IMP-{n:05d}" for n in range(1, 6)]
    pages += ["/console/edit/88.100.1/PUMP-0001", "/console/record/88.100.1/BATCH-2025-W28"]
    shown_any_record = False
    for path in pages:
        answer = anonymous.get(path)
        assert answer.status_code < 500, path
        text = answer.text
        shown_any_record |= "CP-" in text
        leaked = [v for v in hidden if v and v in text]
        assert not leaked, f"{path} shows {leaked[:3]}"
    assert shown_any_record


def test_a_signed_in_administrator_sees_partner_and_owner_values_with_badges(
    operator: httpx.Client,
) -> None:
    page = operator.get("/console/record/88.100.1/PUMP-0001").text
    assert re.search(r"Customer \d{3}", page)
    assert 'class="badge owner"' in page
    assert 'class="badge partner"' in page
    assert '<a href="/console/record/88.100.1/MODEL-' in page  # a reference is a link
    assert 'href="/console/edit/88.100.1/PUMP-0001"' in page


def test_a_viewer_is_offered_no_edit_and_its_edit_is_refused(
    server: RunningNode, node_dir: Path
) -> None:
    with httpx.Client(base_url=server.http, timeout=30) as viewer:
        answer = console_node.sign_in(
            viewer, method="secret", identity=console_node.VIEWER, secret=console_node.VIEWER_SECRET
        )
        assert answer.status_code == 303
        page = viewer.get("/console/record/88.100.1/PUMP-0002").text
        assert "/console/edit/" not in page
        assert not re.search(r"Customer \d{3}", page)  # no READ_VALUE: public values only
        csrf = console_node.csrf_of(page)
        refused = viewer.post(
            "/console/edit/88.100.1/PUMP-0002", data={"csrf": csrf, "field.status": "scrapped"}
        )
        assert refused.status_code == 403
    node = open_node(Config(data_dir=node_dir))
    try:
        record = node.service.reads.resolve("88.100.1/PUMP-0002")
        assert b"scrapped" not in b"".join(v.data for v in record.values)
    finally:
        node.close()


# -- signing in ------------------------------------------------------------------------


def test_sign_in_failures_and_where_it_leads(anonymous: httpx.Client) -> None:
    wrong = console_node.sign_in(anonymous, method="account", name="operator", password="nope")
    assert wrong.status_code == 401
    assert "idnode_console" not in wrong.cookies
    assert anonymous.get("/console/identities").status_code == 401
    right = console_node.sign_in(
        anonymous, method="account", name="operator", password=console_node.PASSWORD,
        next="https://evil.example/",
    )  # fmt: skip
    assert right.headers["location"] == "/console/"  # never to another site
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie


def test_sign_in_with_the_admin_key_file_as_the_browser_does(
    anonymous: httpx.Client, node_dir: Path
) -> None:
    key = rsa_key(node_dir / "admin_key.pem")
    challenge = anonymous.post("/console/signin/challenge").json()
    cnonce = b"0123456789abcdef"
    signed = base64.b64decode(challenge["nonce"]) + cnonce
    signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    form = {
        "method": "key",
        "identity": console_node.OPERATOR,
        "session": challenge["session"],
        "cnonce": base64.b64encode(cnonce).decode(),
        "signature": base64.b64encode(signature).decode(),
    }
    assert console_node.sign_in(anonymous, **form).status_code == 303
    assert anonymous.get("/console/identities").status_code == 200
    # The challenge was taken: the same answer again proves nothing.
    with httpx.Client(base_url=str(anonymous.base_url), timeout=30) as other:
        assert console_node.sign_in(other, **form).status_code == 401


def test_sign_out_ends_the_session_everywhere(server: RunningNode) -> None:
    client = console_node.operator(server.http)
    cookie = client.cookies["idnode_console"]
    page = client.get("/console/").text
    signed_out = client.post("/console/signout", data={"csrf": console_node.csrf_of(page)})
    client.close()
    assert signed_out.status_code == 303
    with httpx.Client(base_url=server.http, cookies={"idnode_console": cookie}) as stolen:
        assert stolen.get("/console/identities").status_code == 401


def test_changes_need_the_sessions_csrf_token_and_this_sites_origin(
    operator: httpx.Client,
) -> None:
    page = operator.get("/console/edit/88.100.1/PUMP-0003").text
    csrf = console_node.csrf_of(page)
    form = {"field.status": "scrapped"}
    assert operator.post("/console/edit/88.100.1/PUMP-0003", data=form).status_code == 401
    forged = {**form, "csrf": "0" * 64}
    assert operator.post("/console/edit/88.100.1/PUMP-0003", data=forged).status_code == 401
    elsewhere = operator.post(
        "/console/edit/88.100.1/PUMP-0003",
        data={**form, "csrf": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 401
    assert "scrapped" not in operator.get("/console/record/88.100.1/PUMP-0003").text


# -- forms, history, bulk ----------------------------------------------------------------


def test_an_edit_with_a_bad_date_names_the_field_and_changes_nothing(
    operator: httpx.Client,
) -> None:
    before = operator.get("/console/record/88.100.1/PUMP-0004").text
    form = console_node.edit_form(
        operator, "88.100.1/PUMP-0004", manufactured="2026-02-30", status="returned"
    )
    answer = operator.post(
        "/console/edit/88.100.1/PUMP-0004",
        data=form,
        headers={"Accept-Language": "en"},
    )
    assert answer.status_code == 400
    assert re.search(r'id="field-manufactured-error"[^>]*>must be a date, YYYY-MM-DD', answer.text)
    assert 'id="field-manufactured" name="field.manufactured" value="2026-02-30"' in answer.text
    after = operator.get("/console/record/88.100.1/PUMP-0004").text
    assert _visible_text(after) == _visible_text(before)


def test_the_field_check_escapes_what_it_repeats(operator: httpx.Client) -> None:
    csrf = console_node.csrf_of(operator.get("/console/edit/88.100.1/PUMP-0005").text)
    answer = operator.post(
        "/console/validate/serial-item@1",
        data={"field": "manufactured", "field.manufactured": "<img src=x onerror=alert(1)>"},
        headers={"X-CSRF-Token": csrf, "Accept-Language": "zh-CN"},
    )
    assert answer.status_code == 200
    assert "<img" not in answer.text
    assert "&lt;img" in answer.text
    assert answer.text.startswith("须为日期")


def test_edit_then_restore_through_history(operator: httpx.Client) -> None:
    handle = "88.100.1/PUMP-0006"
    form = console_node.edit_form(operator, handle, status="scrapped")
    csrf = form["csrf"]
    saved = operator.post(f"/console/edit/{handle}", data=form)
    assert saved.status_code == 303
    history = operator.get(f"/console/history/{handle}").text
    assert "scrapped" in history  # the side-by-side diff of the last two versions
    assert re.search(r'<tr class="changed">', history)
    numbers = sorted(int(n) for n in re.findall(r'name="version" value="(\d+)"', history))
    assert numbers, "no version offered to restore"
    restored = operator.post(
        f"/console/restore/{handle}", data={"csrf": csrf, "version": str(numbers[0])}
    )
    assert restored.status_code == 303
    page = operator.get(f"/console/record/{handle}").text
    assert "scrapped" not in page


def test_bulk_upload_streams_progress_to_100_and_lists_rejected_rows(
    operator: httpx.Client,
) -> None:
    csrf = console_node.csrf_of(operator.get("/console/bulk").text)
    rows = "".join(f"BULK-{n:03d},Impeller,steel,0.5\n" for n in range(150))
    good = "suffix,name,material,weight_kg\n" + rows
    answer = operator.post(
        "/console/bulk/upload?template=part&prefix=88.100.1",
        content=good.encode(),
        headers={"X-CSRF-Token": csrf, "Content-Type": "text/csv"},
    )
    lines = [json.loads(line) for line in answer.text.splitlines()]
    percents = [line["percent"] for line in lines]
    assert percents == sorted(percents)
    assert percents[-1] == 100
    assert len(percents) >= 3
    assert "Created 150" in lines[-1]["html"] or "新建 150" in lines[-1]["html"]
    assert "Impeller" in operator.get("/console/record/88.100.1/BULK-149").text

    bad = "suffix,name,material,weight_kg\nBAD-1,Seal,SiC,-3\nBAD-2,Seal,SiC,1\n"
    answer = operator.post(
        "/console/bulk/upload?template=part&prefix=88.100.1",
        content=bad.encode(),
        headers={"X-CSRF-Token": csrf, "Content-Type": "text/csv", "Accept-Language": "en"},
    )
    last = json.loads(answer.text.splitlines()[-1])
    assert last["percent"] == 100
    assert "Rejected rows" in last["html"]
    assert "must be at least 0" in last["html"]
    assert operator.get("/console/record/88.100.1/BAD-2").status_code == 404  # all or nothing


def test_bulk_upload_needs_a_signed_in_caller(anonymous: httpx.Client) -> None:
    answer = anonymous.post(
        "/console/bulk/upload?template=part&prefix=88.100.1",
        content=b"suffix,name\nANON-1,x\n",
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 401
    assert anonymous.get("/console/record/88.100.1/ANON-1").status_code == 404


# -- languages -----------------------------------------------------------------------


def test_language_from_the_browser_then_the_switcher(anonymous: httpx.Client) -> None:
    assert "标识" in anonymous.get("/console/ids", headers={"Accept-Language": "zh-CN"}).text
    english = anonymous.get("/console/ids", headers={"Accept-Language": "en-GB,zh;q=0.5"})
    assert english.headers["content-language"] == "en"
    assert "Identifiers" in english.text
    switched = anonymous.get("/console/lang?to=zh-CN&back=/console/ids", follow_redirects=True)
    assert switched.status_code == 200
    assert switched.url.path == "/console/ids"
    chosen = anonymous.get("/console/ids", headers={"Accept-Language": "en"})
    assert chosen.headers["content-language"] == "zh-CN"


def test_negotiation() -> None:
    assert negotiate("") == "zh-CN"
    assert negotiate("en-US,en;q=0.9") == "en"
    assert negotiate("fr, en;q=0.4, zh;q=0.8") == "zh-CN"
    assert negotiate("zh-TW;q=0, en") == "en"
    assert negotiate("en", chosen="zh-CN") == "zh-CN"
    assert negotiate("en", chosen="xx") == "en"


def _strings_of_the_console() -> set[str]:
    """Every literal passed to ``_`` in the console's templates and modules, and the
    names the templates translate from data (permissions, roles, field types, ...)."""
    found: set[str] = set()
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("*.py")]:
        text = path.read_text()
        for match in re.finditer(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""", text):
            found.add(match.group(1) if match.group(1) is not None else match.group(2))
    found |= {name for _, name in PERMISSION_NAMES} | {"All permissions"}
    found |= set(ROLES) | set(FIELD_TYPES) | {"added", "removed", "changed"}
    found |= {"transformation", "aggregation", "association", "commissioning"}  # trace edges
    found |= {text for _, text in _PROBLEMS}
    return found


def test_every_visible_string_has_its_chinese() -> None:
    strings = _strings_of_the_console()
    assert len(strings) > 150
    missing = sorted(s for s in strings if s not in ZH_CN)
    assert not missing, missing
    for english, chinese in ZH_CN.items():  # the same placeholders, in any order
        names = sorted(re.findall(r"\{(\w+)\}", english))
        assert names == sorted(re.findall(r"\{(\w+)\}", chinese)), english


def test_field_problems_are_translated_keeping_what_was_given() -> None:
    zh = Translator("zh-CN")
    assert field_problem(zh, "must be a date, YYYY-MM-DD, got '2026-02-30'") == (
        "须为日期（YYYY-MM-DD），实际为 '2026-02-30'"
    )
    assert field_problem(zh, "is required") == "为必填项"
    assert field_problem(zh, "something new") == "something new"


# -- sessions (the service side) ---------------------------------------------------------


def test_a_console_session_ends_after_its_idle_time_and_each_use_extends_it(
    storage: Storage,
) -> None:
    clock = Clock(1_000_000.0)
    service = NodeService(storage, SiteInfo(servers=()), wall_clock=clock)
    sessions = service.sessions
    caller = Caller(ValueReference("0.NA/88.100.1", 300))
    session = sessions.open_console_session(caller, idle_seconds=600)
    assert session.startswith("console:")
    clock.now += 500
    who, due = sessions.console_caller(session, 600, "test")
    assert who.identity == caller.identity
    assert due
    sessions.refresh_console_session(session, 600)
    clock.now += 500  # 1,000 s after sign-in, 500 after the last use
    assert sessions.console_caller(session, 600, "test")[1] is True
    clock.now += 601
    with pytest.raises(AuthenticationNeeded):
        sessions.console_caller(session, 600, "test")
    # A console session is not an API session, nor the other way round.
    with pytest.raises(AuthenticationNeeded):
        sessions.session(session)
    api = sessions.open_session(caller)
    with pytest.raises(AuthenticationNeeded):
        sessions.console_caller(api.session_id, 600, "test")
    with pytest.raises(AuthenticationNeeded):
        sessions.open_console_session(Caller(), 600)


def test_a_console_session_of_an_account_ends_with_its_password(storage: Storage) -> None:
    service = NodeService(storage, SiteInfo(servers=()))
    identity = ValueReference("0.NA/88.100.1", 300)
    service.accounts.add("alice", identity, "first-password-1")
    caller = service.accounts.log_in("alice", "first-password-1", "test")
    session = service.sessions.open_console_session(caller, 600, account="alice")
    assert service.sessions.console_caller(session, 600, "test")[0].identity == identity
    service.accounts.add("alice", identity, "second-password-2")
    with pytest.raises(AuthenticationNeeded, match="account was removed or changed"):
        service.sessions.console_caller(session, 600, "test")
    other = service.sessions.open_console_session(caller, 600, account="alice")
    service.accounts.remove("alice")
    with pytest.raises(AuthenticationNeeded):
        service.sessions.console_caller(other, 600, "test")


# -- identities, audit -----------------------------------------------------------------


def test_the_hs_admin_editor_grants_permissions_by_name(
    operator: httpx.Client, server: RunningNode
) -> None:
    page = operator.get("/console/identities", headers={"Accept-Language": "en"}).text
    assert "List handles" in page
    assert 'value="300:0.NA/88.100.1"' in page
    form = {"csrf": console_node.csrf_of(page), "handle": "0.NA/88.100.1", "index": "150",
            "admin": "300:88.100.1/EDITOR", "perm": ["Modify value", "Read value"]}  # fmt: skip
    assert operator.post("/console/identities/admin", data=form).status_code == 303
    stored = httpx.get(f"{server.http}/api/handles/0.NA/88.100.1?index=150").json()
    admin = stored["values"][0]["data"]["value"]
    assert admin["handle"] == "88.100.1/EDITOR"
    assert admin["index"] == 300
    assert admin["permissions"] == "010000010000"  # read value, modify value
    listed = operator.get("/console/identities").text
    assert re.search(r'value="Modify value" checked', listed)
    bad = {**form, "admin": "nobody"}
    assert operator.post("/console/identities/admin", data=bad).status_code == 400


def test_the_hs_admin_editor_is_closed_to_who_may_not_modify_admins(server: RunningNode) -> None:
    with httpx.Client(base_url=server.http, timeout=30) as viewer:
        console_node.sign_in(
            viewer, method="secret", identity=console_node.VIEWER, secret=console_node.VIEWER_SECRET
        )
        page = viewer.get("/console/identities").text
        assert "<fieldset disabled>" in page.replace(" >", ">")
        assert "Password accounts" not in page
        assert "operator" not in page
        form = {"csrf": console_node.csrf_of(page), "handle": "0.NA/88.100.1", "index": "151",
                "admin": "300:88.100.1/VIEWER", "perm": "Add admin"}  # fmt: skip
        assert viewer.post("/console/identities/admin", data=form).status_code == 403
    stored = httpx.get(f"{server.http}/api/handles/0.NA/88.100.1?index=151").json()
    assert stored["responseCode"] == 200  # Handle.Net's "values not found"


def test_the_audit_log_lists_the_writes_by_filter(operator: httpx.Client) -> None:
    form = console_node.edit_form(operator, "88.100.1/PUMP-0011", status="in stock")
    saved = operator.post("/console/edit/88.100.1/PUMP-0011", data=form)
    assert saved.status_code == 303
    page = operator.get("/console/audit", params={"handle": "88.100.1/PUMP-0011"}).text
    assert "update-fields" in page
    assert "console 127.0.0.1" in page
    assert "PUMP-0012" not in page
    other = operator.get("/console/audit", params={"operation": "no-such-operation"}).text
    assert "88.100.1/PUMP-0011" not in other


def test_the_audit_log_shows_only_what_the_caller_may_read(server: RunningNode) -> None:
    with httpx.Client(base_url=server.http, timeout=30) as viewer:
        console_node.sign_in(
            viewer, method="secret", identity=console_node.VIEWER, secret=console_node.VIEWER_SECRET
        )
        page = viewer.get(
            "/console/audit", params={"days": "3650"}, headers={"Accept-Language": "en"}
        ).text
        # The viewer may list handles, but not read their values (nor so their history).
        assert "<td>update-fields</td>" not in page
        assert "88.100.1/PUMP-" not in page
        assert "No entries." in page


def test_a_prefix_count_is_for_those_who_may_list_it(
    anonymous: httpx.Client, operator: httpx.Client
) -> None:
    assert anonymous.get("/console/fragments/count?prefix=88.100.1").text == "—"
    count = operator.get("/console/fragments/count?prefix=88.100.1").text
    assert int(count.replace(",", "")) > console_node.PUMPS


def test_a_sign_in_from_an_opaque_page_is_refused(server: RunningNode) -> None:
    with httpx.Client(base_url=server.http, timeout=30) as client:
        answer = client.post(
            "/console/signin",
            data={"method": "account", "name": "operator", "password": console_node.PASSWORD},
            headers={"Origin": "null"},
        )
        assert answer.status_code == 401
        assert "idnode_console" not in client.cookies


def test_a_field_emptied_in_the_form_is_removed(operator: httpx.Client) -> None:
    handle = "88.100.1/PUMP-0012"
    assert re.search(r"Customer \d{3}", operator.get(f"/console/record/{handle}").text)
    answer = operator.post(
        f"/console/edit/{handle}", data=console_node.edit_form(operator, handle, customer="")
    )
    assert answer.status_code == 303, answer.text
    page = operator.get(f"/console/record/{handle}").text
    assert not re.search(r"Customer \d{3}", page)
    assert "88.100.1/MODEL-" in page  # the other fields stay


def test_codes_are_made_for_an_identifiers_url_and_left_out_when_too_long() -> None:
    codes = codes_for("http://node.example/88.100.1/PUMP-0001", "QR", "DM")
    assert codes is not None
    assert all(svg.startswith("<svg") and 'role="img"' in svg for svg in codes)
    assert codes_for("http://node.example/" + "x" * 1200, "QR", "DM") is None


def test_the_statistics_page_shows_what_child_nodes_reported(
    operator: httpx.Client, node_dir: Path
) -> None:
    hour = int(time.time() // 3600 - 2) * 3600
    node = open_node(Config(data_dir=node_dir))
    try:
        reporter = Caller(ValueReference("0.NA/88.100.1", 300))
        rows = [
            ReportedRow("plant-7", StatsRow("88.100.1.7", hour, resolutions=1234, not_found=5)),
            ReportedRow("plant-7", StatsRow("88.100.1.7", hour + 3600, resolutions=766)),
        ]
        assert node.service.statistics.accept_report(rows, reporter) == 2
    finally:
        node.close()
    page = operator.get("/console/stats", headers={"Accept-Language": "en"}).text
    row = re.search(r"<tr><td>plant-7</td><td>88\.100\.1\.7</td>(.*?)</tr>", page)
    assert row, page
    assert re.findall(r"<td>([\d,]+)</td>", row.group(1)) == ["2,000", "5", "0"]


def test_the_trace_pages_show_what_the_visitor_may_read(
    node_dir: Path, operator: httpx.Client, anonymous: httpx.Client
) -> None:
    """An identifier's events, its genealogy both ways (graph data and table) and a
    recall; a visitor sees the public events only."""
    node = open_node(Config(data_dir=node_dir))
    owner = Caller(ValueReference("0.NA/88.100.1", 300))
    try:
        batch = "88.100.1/BATCH-TRACE-1"

        def doc(*events: dict[str, object]) -> bytes:
            return capture_document(events)

        pump, pallet = "88.100.1/PUMP-T1", "urn:epc:id:sscc:4012345.0000000077"
        zone = {"eventTimeZoneOffset": "+08:00"}
        node.service.trace.capture(owner, doc(
            {"type": "TransformationEvent", "eventTime": "2026-11-01T08:00:00Z", **zone,
             "inputEPCList": [batch], "outputEPCList": [pump], "bizStep": "assembling"},
            {"type": "AggregationEvent", "eventTime": "2026-11-02T08:00:00Z", **zone,
             "action": "ADD", "parentID": pallet, "childEPCs": [pump], "bizStep": "packing"},
        ))  # fmt: skip
        node.service.trace.capture(owner, doc(
            {"type": "ObjectEvent", "eventTime": "2026-11-01T12:00:00Z", **zone,
             "action": "OBSERVE", "epcList": [pump], "bizStep": "inspecting"},
        ), access="public")  # fmt: skip
    finally:
        node.close()
    page = operator.get("/console/trace/88.100.1/PUMP-T1")
    assert page.status_code == 200, page.text
    graph = json.loads(re.search(r'id="trace-data">(.*?)</script>', page.text, re.S).group(1))  # type: ignore[union-attr]
    columns = {n["name"]: n["x"] for n in graph["nodes"]}
    pallet_key = identifier_key("urn:epc:id:sscc:4012345.0000000077")
    assert columns["88.100.1/BATCH-TRACE-1"] < columns["88.100.1/PUMP-T1"] < columns[pallet_key]
    assert page.text.count("<tr><td>2026-11-0") == 3  # the timeline: every event
    assert "inspecting" in page.text
    assert "packing" in page.text
    recall = operator.get("/console/recall/88.100.1/BATCH-TRACE-1")
    assert "88.100.1/PUMP-T1" in recall.text
    assert pallet_key in recall.text
    seen = anonymous.get("/console/trace/88.100.1/PUMP-T1", headers={"Accept-Language": "en"})
    assert seen.status_code == 200
    assert "inspecting" in seen.text
    assert "packing" not in seen.text
    assert "trace-data" not in seen.text  # no genealogy it may read
    assert "No genealogy" in seen.text
    assert (
        "88.100.1/PUMP-T1"
        not in anonymous.get("/console/recall/88.100.1/BATCH-TRACE-1").text.split("</h1>")[1]
    )
    record = operator.get("/console/record/88.100.1/PUMP-0001")
    assert 'href="/console/trace/88.100.1/PUMP-0001"' in record.text
