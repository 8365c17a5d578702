"""Bulk registration from the browser, with its progress as it happens.

The file is the request body, as for ``POST /api/bulk``, and the registration is the
same (:func:`idnode.bulk.register`, as the signed-in caller). The answer is a stream of
JSON lines: the percentage done (checking the rows is the first half, writing them the
second) as the writer reports each batch, then the result as HTML, rejected rows
listed. One request carries it all, so it needs no job store shared by the workers.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from idnode import bulk
from idnode.bodies import read_at_most
from idnode.console.web import Page, check_csrf, error_page, page_of, render, render_text
from idnode.errors import AuthenticationNeeded, IdnodeError, InvalidValue
from idnode.service.offloop import OffLoop
from idnode.templates import parse_readers

__all__ = ["MAX_UPLOAD", "bulk_page", "upload"]

_log = logging.getLogger(__name__)

#: The API's limit too; larger files go through ``idnode import`` on the node.
MAX_UPLOAD = 64 * 1024 * 1024


async def bulk_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    templates = await off.read(off.service.templates.templates)
    prefixes = await off.read(off.service.reads.homed_prefixes)
    return render(page, "bulk.html", templates=templates, prefixes=prefixes)


def _rows_in(text: str, fmt: bulk.Format) -> int:
    """About how many rows the file holds (lines; a CSV's header is not one)."""
    lines = sum(1 for line in text.splitlines() if line.strip())
    return max(1, lines - 1 if fmt == "csv" else lines)


async def upload(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    params = request.query_params
    try:
        check_csrf(page)
        if not page.signed_in:
            raise AuthenticationNeeded("sign in to register identifiers")
        readers = params.get("readers", "").strip()
        options = bulk.BulkOptions(
            params.get("prefix") or None,
            params.get("template") or None,
            params.get("mint") or None,
            parse_readers(readers) if readers else None,
        )
        text = await _body(request)
    except IdnodeError as exc:
        return error_page(page, exc)
    fmt: bulk.Format = "csv" if "csv" in request.headers.get("content-type", "") else "jsonl"
    return StreamingResponse(
        _registration(
            page,
            text,
            fmt,
            options,
            params.get("replace") == "on",
            params.get("skipInvalid") == "on",
        ),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _registration(
    page: Page,
    text: str,
    fmt: bulk.Format,
    options: bulk.BulkOptions,
    replace: bool,
    skip_invalid: bool,
) -> AsyncIterator[bytes]:
    off = page.off
    _ = page._
    total = await asyncio.to_thread(_rows_in, text, fmt)
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    def progress(stage: str) -> Callable[[int], None]:
        def told(count: int) -> None:
            loop.call_soon_threadsafe(updates.put_nowait, (stage, count))

        return told

    @contextmanager
    def source() -> Iterator[io.StringIO]:
        yield io.StringIO(text, newline="")

    def line(**message: object) -> bytes:
        return json.dumps(message, ensure_ascii=False).encode() + b"\n"

    work = asyncio.ensure_future(
        off.write(
            bulk.register,
            off.service,
            source,
            fmt,
            options,
            replace=replace,
            caller=page.caller,
            skip_invalid=skip_invalid,
            progress=progress,
        )
    )
    done = {"checking": 0, "writing": 0}
    yield line(percent=0, status=_("Checking {n} rows…", n=total))
    while not work.done() or not updates.empty():
        getter = asyncio.ensure_future(updates.get())
        finished, _pending = await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in finished:
            getter.cancel()
            continue
        stage, count = getter.result()
        done[stage] = done.get(stage, 0) + count
        checked = min(done["checking"], total)
        written = min(done["writing"], total)
        percent = min(99, (50 * checked + 50 * written) // total)
        status = (
            _("Writing: {n} of {total} rows", n=written, total=total)
            if stage == "writing"
            else _("Checking: {n} of {total} rows", n=checked, total=total)
        )
        yield line(percent=percent, status=status)
    try:
        report = work.result()
    except IdnodeError as exc:
        yield line(percent=100, status=_("Failed"), html=_html(page, None, exc.message))
        return
    except Exception:
        # The stream has begun (200 was sent): the browser learns of it in a line.
        _log.exception("bulk upload from the console failed")
        # Uploading again writes only what is missing (a registration is idempotent).
        failure = _("The registration failed on the server; upload the file again.")
        yield line(percent=100, status=_("Failed"), html=_html(page, None, failure))
        return
    status = _("Done") if report.written else _("Nothing was written")
    yield line(percent=100, status=status, html=_html(page, report, ""))


def _html(page: Page, report: bulk.BulkReport | None, failure: str) -> str:
    return render_text(page, "bulk_result.html", report=report, failure=failure)


async def _body(request: Request) -> str:
    too_large = f"the file is over {MAX_UPLOAD >> 20} MB; use idnode import"
    body = await read_at_most(request.stream(), MAX_UPLOAD, too_large)
    return await asyncio.to_thread(_decoded, body)  # up to 64 MB: off the loop


def _decoded(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidValue(f"the file is not UTF-8: {exc}") from exc
