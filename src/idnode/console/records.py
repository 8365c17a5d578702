"""Identifiers in the console: search, a record's page, forms from templates, history.

Each page asks the service as the signed-in caller (anonymous when nobody is), so
what it shows is what the APIs would answer that caller: an anonymous visitor sees
public values only; values a caller may not read are never sent to the browser.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from idnode.console.codes import codes_for
from idnode.console.i18n import field_problem
from idnode.console.values import record_link, shown_values, template_reference
from idnode.console.web import Page, check_csrf, error_page, form_of, page_of, redirect, render
from idnode.domain import Condition, HandleRecord, SearchQuery
from idnode.errors import IdnodeError, InvalidValue
from idnode.handle.valuetypes import AdminPermission
from idnode.history import diff
from idnode.service.offloop import OffLoop
from idnode.templates import Template, TemplateViolation, number_from_text, parse_readers

__all__ = [
    "edit_record",
    "history_page",
    "new_record",
    "record_page",
    "restore",
    "search_page",
    "validate_field",
]

PAGE_SIZE = 25
#: As the search API's page numbers.
MAX_PAGE = 10**9


async def search_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    params = request.query_params
    number = min(_number(params.get("page"), 0), MAX_PAGE)
    where = [w.strip() for w in params.get("where", "").split(";") if w.strip()]
    form = {k: params.get(k, "") for k in ("q", "template", "prefix", "where")}
    templates = await off.read(off.service.templates.templates)
    try:
        query = SearchQuery(
            prefix=form["prefix"] or None,
            template=form["template"] or None,
            conditions=tuple(Condition.parse(w) for w in where),
            text=form["q"] or None,
            offset=number * PAGE_SIZE,
            limit=PAGE_SIZE + 1,
        )
        found = await off.read(off.service.reads.search, query)
    except IdnodeError as exc:
        return render(
            page, "ids.html", status=400, form=form, templates=templates, rows=[], problem=exc
        )
    rows = await asyncio.gather(*(_summary(page, h) for h in found[:PAGE_SIZE]))
    link = {k: v for k, v in form.items() if v}
    return render(
        page,
        "ids.html",
        form=form,
        templates=templates,
        rows=rows,
        number=number,
        previous=f"?{urlencode({**link, 'page': number - 1})}" if number > 0 else "",
        following=f"?{urlencode({**link, 'page': number + 1})}" if len(found) > PAGE_SIZE else "",
    )


async def _summary(page: Page, handle: str) -> dict[str, Any]:
    """A search hit's line: its identifier, template and the first fields it shows."""
    try:
        record = await _readable(page, handle)
    except IdnodeError:
        return {"handle": handle, "href": record_link(handle), "template": "", "fields": ""}
    reference = template_reference(record.values) or ""
    shown = [v.text for v in shown_values(record.values, None) if v.index > 1 and v.kind == "text"][
        :3
    ]
    return {
        "handle": record.handle,
        "href": record_link(record.handle),
        "template": reference,
        "fields": " · ".join(shown),
    }


async def _readable(page: Page, handle: str) -> HandleRecord:
    """The values of ``handle`` the page's caller may read."""
    caller = page.caller
    return await page.off.resolve(handle, caller=caller, public_only=not caller.authenticated)


async def _template_of(page: Page, record: HandleRecord) -> Template | None:
    reference = template_reference(record.values)
    if reference is None:
        return None
    try:
        return await page.off.read(page.off.service.templates.template, reference)
    except IdnodeError:
        return None


async def record_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    handle = request.path_params["handle"]
    try:
        record = await _readable(page, handle)
    except IdnodeError as exc:
        return error_page(page, exc)
    template = await _template_of(page, record)
    granted = await off.read(off.service.writes.granted, record.handle, page.caller)
    url = f"{request.url.scheme}://{request.url.netloc}/{quote(record.handle, safe='/')}"
    _ = page._
    labels = _("QR code of {url}", url=url), _("Data Matrix of {url}", url=url)
    codes = await off.read(codes_for, url, *labels)  # a few ms each: off the loop
    return render(
        page,
        "record.html",
        record=record,
        template=template,
        values=shown_values(record.values, template),
        url=url,
        codes=codes,
        may_edit=bool(granted & AdminPermission.MODIFY_VALUE) and template is not None,
        quoted=quote(record.handle, safe="/"),
        request_saved=request.query_params.get("saved") == "1",
    )


def _given_from_form(template: Template, form: dict[str, str]) -> dict[str, Any]:
    """The fields a form filled in, numbers as numbers; empty inputs are left out."""
    given: dict[str, Any] = {}
    for spec in template.fields:
        text = form.get(f"field.{spec.name}", "").strip()
        if text:
            given[spec.name] = number_from_text(text) if spec.type == "number" else text
    return given


def _problems(page: Page, exc: TemplateViolation) -> dict[str, str]:
    return {name: field_problem(page._, text) for name, text in exc.problems.items()}


async def edit_record(off: OffLoop, request: Request) -> Response:
    """A record made from a template, edited as that template's form."""
    page = await page_of(off, request)
    handle = request.path_params["handle"]
    try:
        record = await _readable(page, handle)
        template = await _template_of(page, record)
        if template is None:
            raise InvalidValue(f"{handle} was not made from a template")
        values = template.given_of(record.values)
        problems: dict[str, str] = {}
        saved = False
        if request.method == "POST":
            form = dict(await form_of(request))
            check_csrf(page, form)
            given = _given_from_form(template, form)
            values = {k: form.get(f"field.{k}", "") for k in (f.name for f in template.fields)}
            # A caller who read every field (READ_VALUE) saw them all in the form: one
            # left empty is removed (the API's merge=false). Without READ_VALUE the form
            # lacked the fields it may not read, and those must stay as they are.
            granted = await off.read(off.service.writes.granted, record.handle, page.caller)
            try:
                await off.write(
                    off.service.writes.update_fields,
                    record.handle,
                    given,
                    page.caller,
                    merge=AdminPermission.READ_VALUE not in granted,
                )
            except TemplateViolation as exc:
                problems = _problems(page, exc)
            else:
                return redirect(record_link(record.handle) + "?saved=1")
    except IdnodeError as exc:
        return error_page(page, exc)
    return render(
        page,
        "edit.html",
        status=400 if problems else 200,
        record=record,
        template=template,
        values=values,
        problems=problems,
        saved=saved,
        action=f"/console/edit/{quote(record.handle, safe='/')}",
    )


async def new_record(off: OffLoop, request: Request) -> Response:
    """A new identifier from a template: choose one, then fill in its form."""
    page = await page_of(off, request)
    service = off.service
    try:
        templates = [t for t in await off.read(service.templates.templates) if t.published]
        prefixes = await off.read(service.reads.homed_prefixes)
        chosen = request.query_params.get("template", "")
        template = next((t for t in templates if t.name == chosen), None)
        values: dict[str, str] = {}
        problems: dict[str, str] = {}
        suffix = readers = ""
        prefix = prefixes[0] if prefixes else ""
        if request.method == "POST" and template is not None:
            form = dict(await form_of(request))
            check_csrf(page, form)
            values = {f.name: form.get(f"field.{f.name}", "") for f in template.fields}
            suffix, prefix = form.get("suffix", "").strip(), form.get("prefix", "")
            readers = form.get("readers", "").strip()
            handle = f"{prefix}/{suffix}"
            if not suffix:
                problems["suffix"] = page._("is required")
            else:
                try:
                    made = await off.write(
                        service.writes.create_from_template,
                        handle,
                        template.name,
                        _given_from_form(template, form),
                        page.caller,
                        readers=parse_readers(readers) if readers else None,
                    )
                except TemplateViolation as exc:
                    problems = _problems(page, exc)
                else:
                    return redirect(record_link(made))
    except IdnodeError as exc:
        return error_page(page, exc)
    return render(
        page,
        "new.html",
        status=400 if problems else 200,
        templates=templates,
        template=template,
        prefixes=prefixes,
        prefix=prefix,
        suffix=suffix,
        readers=readers,
        values=values,
        problems=problems,
    )


async def validate_field(off: OffLoop, request: Request) -> Response:
    """``POST /console/validate/{template}`` (htmx, as a field changes): the field's
    problem as the API would state it, or nothing."""
    page = await page_of(off, request)
    try:
        form = dict(await form_of(request))
        check_csrf(page, form)
        template = await off.read(off.service.templates.template, request.path_params["name"])
    except IdnodeError as exc:
        return HTMLResponse(html.escape(exc.message), status_code=400)
    name = form.get("field", "")
    given = _given_from_form(template, form)
    spec = next((f for f in template.fields if f.name == name), None)
    if spec is None or name not in given:
        return HTMLResponse("")
    try:
        template.values({name: given[name]})
    except TemplateViolation as exc:
        problem = exc.problems.get(name)
        if problem is not None:
            return HTMLResponse(html.escape(field_problem(page._, problem)))
    return HTMLResponse("")


async def history_page(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    handle = request.path_params["handle"]
    try:
        versions = await off.read(off.service.history.history, handle, page.caller)
        granted = await off.read(off.service.writes.granted, handle, page.caller)
    except IdnodeError as exc:
        return error_page(page, exc)
    if not versions:
        return error_page(page, InvalidValue(f"{handle} has no recorded versions"))
    latest = versions[-1].number
    right = _number(request.query_params.get("b"), latest)
    left = _number(request.query_params.get("a"), max(1, right - 1))
    by_number = {v.number: v for v in versions}
    before, after = by_number.get(left), by_number.get(right)
    rows = []
    if before is not None and after is not None:
        changes = {c.index: c.kind for c in diff(before.values, after.values)}
        old = {v.index: v for v in shown_values(before.values or (), None)}
        new = {v.index: v for v in shown_values(after.values or (), None)}
        for index in sorted(old.keys() | new.keys()):
            rows.append(
                {
                    "index": index,
                    "before": old.get(index),
                    "after": new.get(index),
                    "kind": changes.get(index, ""),
                }
            )
    return render(
        page,
        "history.html",
        handle=handle,
        versions=list(reversed(versions)),
        left=left,
        right=right,
        rows=rows,
        latest=latest,
        may_restore=bool(granted & AdminPermission.MODIFY_VALUE),
        quoted=quote(handle, safe="/"),
        restored=request.query_params.get("restored", ""),
    )


async def restore(off: OffLoop, request: Request) -> Response:
    page = await page_of(off, request)
    handle = request.path_params["handle"]
    try:
        form = dict(await form_of(request))
        check_csrf(page, form)
        number = _number(form.get("version"), 0)
        made = await off.write(off.service.history.restore_version, handle, number, page.caller)
    except IdnodeError as exc:
        return error_page(page, exc)
    return redirect(f"/console/history/{quote(handle, safe='/')}?restored={number}&b={made}")


def _number(text: str | None, default: int) -> int:
    if text is None or not text.strip().isdigit():
        return default
    return min(int(text), 2**31)
