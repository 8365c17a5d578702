"""The web console driven in headless Chromium (Debian's ``chromium``), as a person
uses it, and every page checked by axe-core for serious accessibility violations.

Playwright drives the browser the machine has (``.ci/run`` installs it); it never
downloads one. Without Chromium these tests skip, unless IDNODE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.config import Config
from tests import console_node
from tests.conftest import RunningNode, require_service, running

pytest.importorskip("playwright")
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: What the machine's closed network and a root user need (see .ci/run).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    path = console_node.build(tmp_path_factory.mktemp("console-browser"))
    config = Config(data_dir=path, handle_port=0, http_port=0, http_auth_failures=1000)
    with running(config) as node:
        yield node


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        require_service("Chromium", f"{CHROMIUM} is missing (.ci/run installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: RunningNode) -> Iterator[Page]:
    context = browser.new_context(base_url=server.http, locale="en-US")
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def _sign_in(page: Page) -> None:
    page.goto("/console/signin")
    page.fill("#account-name", "operator")
    page.fill("#account-password", console_node.PASSWORD)
    page.locator("section[aria-labelledby=by-account] button").click()
    expect(page.locator(".who")).to_have_text(console_node.OPERATOR)


def test_sign_in_find_a_pump_and_edit_it_through_its_form(page: Page) -> None:
    _sign_in(page)
    page.get_by_role("link", name="Identifiers", exact=True).click()
    page.select_option("#template", "serial-item")
    page.fill("#q", "CP")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="88.100.1/PUMP-0007").click()
    expect(page.locator("h1")).to_have_text("88.100.1/PUMP-0007")
    page.get_by_role("link", name="Edit", exact=True).click()

    # A bad date is named as the field is left (htmx asks the server, as the API checks).
    page.fill("#field-manufactured", "2026-02-30")
    page.locator("#field-serial").focus()
    expect(page.locator("#field-manufactured-error")).to_contain_text("must be a date, YYYY-MM-DD")
    # Saving anyway is refused, field by field, and the form keeps what was typed.
    page.select_option("#field-status", "returned")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Not saved")
    expect(page.locator("#field-manufactured")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#field-manufactured")).to_have_value("2026-02-30")

    page.fill("#field-manufactured", "2026-02-27")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.locator("table")).to_contain_text("2026-02-27")


def test_upload_a_csv_and_watch_the_progress_reach_100(page: Page, tmp_path: Path) -> None:
    _sign_in(page)
    page.goto("/console/bulk")
    upload = tmp_path / "parts.csv"
    upload.write_text(
        "suffix,name,material,weight_kg\n"
        + "".join(f"WEB-{n:04d},Shaft,42CrMo4,2.9\n" for n in range(400))
    )
    page.set_input_files("#bulk-file", str(upload))
    page.select_option("#bulk-template", "part")
    page.select_option("#bulk-prefix", "88.100.1")
    seen: list[int] = []
    page.expose_function("noteProgress", lambda value: seen.append(int(value)))
    page.evaluate(
        """() => new MutationObserver(() => window.noteProgress(
               document.getElementById('bulk-progress').value))
             .observe(document.getElementById('bulk-progress'), {attributes: true})"""
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#bulk-progress")).to_have_js_property("value", 100)
    expect(page.locator("#bulk-status")).to_have_text("Done")
    expect(page.locator("#bulk-result")).to_contain_text("Created 400")
    assert seen == sorted(seen)
    assert seen[-1] == 100
    page.goto("/console/record/88.100.1/WEB-0399")
    expect(page.locator("table")).to_contain_text("42CrMo4")


def test_restore_a_version_from_the_side_by_side_history(page: Page) -> None:
    _sign_in(page)
    page.goto("/console/edit/88.100.1/PUMP-0009")
    page.select_option("#field-status", "scrapped")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("link", name="History").click()
    diff = page.locator("table.diff")
    expect(diff.locator("tr.changed")).to_contain_text("scrapped")
    versions = page.locator("button[aria-label^='Restore version']")
    first = versions.last  # newest first: the last is the first version
    label = first.get_attribute("aria-label") or ""
    first.click()
    number = re.search(r"\d+", label)
    assert number
    expect(page.get_by_role("status")).to_contain_text(f"Version {number.group()} was restored")
    page.goto("/console/record/88.100.1/PUMP-0009")
    expect(page.locator("table")).not_to_contain_text("scrapped")


def test_switch_language_and_keep_it(page: Page) -> None:
    page.goto("/console/ids")
    expect(page.locator("h1")).to_have_text("Identifiers")
    page.get_by_role("button", name="中文").click()
    expect(page.locator("h1")).to_have_text("标识")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.goto("/console/templates")
    expect(page.locator("h1")).to_have_text("模板")
    page.get_by_role("button", name="English").click()
    expect(page.locator("h1")).to_have_text("Templates")


def test_sign_in_with_the_admin_key_file_in_the_browser(page: Page, server: RunningNode) -> None:
    page.goto("/console/signin")
    page.fill("#key-identity", console_node.OPERATOR)
    page.set_input_files("#key-file", str(server.config.data_dir / "admin_key.pem"))
    page.locator("#key-signin button").click()
    expect(page.locator(".who")).to_have_text(console_node.OPERATOR)


def test_an_anonymous_visitor_sees_no_partner_or_owner_value(page: Page) -> None:
    page.goto("/console/record/88.100.1/PUMP-0010")
    expect(page.locator("h1")).to_have_text("88.100.1/PUMP-0010")
    text = page.locator("body").inner_text()
    assert "Customer" not in text
    assert "BATCH-" not in text
    assert "partners" not in text
    assert "owner" not in text


PAGES = [
    "/console/",
    "/console/ids",
    "/console/ids?template=serial-item",
    "/console/record/88.100.1/PUMP-0001",
    "/console/edit/88.100.1/PUMP-0001",
    "/console/history/88.100.1/PUMP-0001",
    "/console/trace/88.100.1/PUMP-0001",
    "/console/recall/88.100.1/PART-IMP-00001",
    "/console/new?template=serial-item",
    "/console/bulk",
    "/console/templates",
    "/console/templates/serial-item",
    "/console/prefixes",
    "/console/identities",
    "/console/audit",
    "/console/stats",
    "/console/signin",
]


ANONYMOUS_PAGES = [
    "/console/",
    "/console/record/88.100.1/PUMP-0001",
    "/console/trace/88.100.1/PUMP-0001",
    "/console/bulk",
    "/console/no-such-page",
    "/88.100.1/PUMP-0001?noredirect",
]


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_no_serious_accessibility_violation_on_any_page(
    browser: Browser, server: RunningNode, language: str
) -> None:
    context = browser.new_context(base_url=server.http, locale=language)
    try:
        page = context.new_page()
        axe = Axe()
        found = {}
        for path in ANONYMOUS_PAGES:  # what a visitor sees, then everything signed in
            page.goto(path)
            page.wait_for_load_state("networkidle")
            serious = [v["id"] for v in axe.run(page).response["violations"]
                       if v["impact"] in ("serious", "critical")]  # fmt: skip
            if serious:
                found[f"anonymous {path}"] = serious
        _sign_in(page)
        for path in PAGES:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            results = axe.run(page)
            serious = [
                f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
                for v in results.response["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            if serious:
                found[path] = serious
        assert not found, found
    finally:
        context.close()
