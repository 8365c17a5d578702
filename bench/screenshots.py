"""Screenshots of the web console's main pages in both languages, for docs/console.md
(``python -m bench.screenshots``; needs Debian's chromium, as the browser tests do).

A fresh demo node (2,000 pumps) is served in-process, given a little traffic so the
dashboard has something to draw, and each page is shot signed in as the prefix's
administrator, the record page also as an anonymous visitor.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from idnode.config import Config
from idnode.demo import demo_records
from idnode.handle.values import ValueReference
from idnode.node import init_node
from idnode.server.runner import BoundPorts, serve

OUT = Path(__file__).parent.parent / "docs" / "console"
PASSWORD = "screenshot-password"  # noqa: S105 - a throwaway node\'s account
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SHOTS = {
    "dashboard": "/console/",
    "search": "/console/ids?template=serial-item&where=status%3Dreturned",
    "record": "/console/record/88.100.1/PUMP-0001",
    "edit": "/console/edit/88.100.1/PUMP-0001",
    "history": "/console/history/88.100.1/PUMP-0001?a=1&b=2",
    "prefixes": "/console/prefixes",
    "identities": "/console/identities",
}


def _serve(data_dir: Path) -> tuple[str, threading.Event]:
    ports: list[BoundPorts] = []
    ready, stop_now = threading.Event(), threading.Event()
    config = Config(data_dir=data_dir, handle_port=0, http_port=0, stats_flush_seconds=0.5)

    async def run() -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop_now.is_set():
                await asyncio.sleep(0.1)
            stop.set()

        watcher = asyncio.ensure_future(watch())

        def started(bound: BoundPorts) -> None:
            ports.append(bound)
            ready.set()

        await serve(config, started=started, stop=stop)
        await watcher

    threading.Thread(target=lambda: asyncio.run(run()), daemon=True).start()
    ready.wait(30)
    return f"http://127.0.0.1:{ports[0].http}", stop_now


def _shoot(page: Page, name: str, path: str, out: Path) -> None:
    page.goto(path)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        node = init_node(Config(data_dir=data_dir), "88.100.1", {})
        node.service.bulk.register_many(demo_records(2000), replace=True)
        node.service.accounts.add("operator", ValueReference("0.NA/88.100.1", 300), PASSWORD)
        node.close()
        base, stop = _serve(data_dir)
        with httpx.Client(base_url=base) as client:  # traffic for the dashboard's chart
            for n in range(1, 400):
                client.get(f"/api/handles/88.100.1/PUMP-{n % 2100:04d}")
        time.sleep(1.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=ARGS)
            for language in ("zh-CN", "en"):
                out = args.out / language
                out.mkdir(parents=True, exist_ok=True)
                context = browser.new_context(
                    base_url=base, locale=language, viewport={"width": 1280, "height": 800}
                )
                page = context.new_page()
                _shoot(page, "record-anonymous", SHOTS["record"], out)
                page.goto("/console/signin")
                _shoot(page, "signin", "/console/signin", out)
                page.fill("#account-name", "operator")
                page.fill("#account-password", PASSWORD)
                page.locator("section[aria-labelledby=by-account] button").click()
                page.wait_for_url("**/console/")
                if language == "zh-CN":  # a second version, for the history page
                    page.goto("/console/edit/88.100.1/PUMP-0001")
                    page.select_option("#field-status", "returned")
                    page.locator("form button").last.click()
                    page.wait_for_url("**/record/**")
                for name, path in SHOTS.items():
                    _shoot(page, name, path, out)
                page.goto("/console/edit/88.100.1/PUMP-0001")
                page.fill("#field-manufactured", "2026-02-30")
                page.locator("#field-serial").focus()
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / "edit-invalid.png"), full_page=True)
                page.set_viewport_size({"width": 390, "height": 844})  # a phone
                _shoot(page, "record-phone", SHOTS["record"], out)
                context.close()
            browser.close()
        stop.set()
        time.sleep(0.5)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
