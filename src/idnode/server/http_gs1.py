"""The GS1-Conformant Resolver endpoints: Digital Link paths and the description file.

``GET /01/{gtin}[/22/..][/10/..][/21/..]`` (also ``/00/{sscc}``, ``/414/{gln}[/254/..]``)
looks up the identifier the path maps to under the configured ``gs1_prefix`` (see
:mod:`idnode.gs1`), walking up to less specific keys when the exact one has no record,
and answers as the resolver standard asks:

- no ``linkType``: 307 to the default link;
- ``linkType=gs1:pip`` (or the full ``https://ref.gs1.org/voc/pip``): 307 to a link of
  that type, 404 if the record has none; among several, the one that fits the
  request's ``context``, ``Accept-Language`` and ``Accept`` (:mod:`idnode.gs1links`);
- ``linkType=linkset`` or ``Accept: application/linkset+json``/``application/json``:
  200 with the links as an RFC 9264 linkset.

Every answer may be read from any origin (CORS), and OPTIONS answers what a client may
ask. Redirects pass the request's query string on. A malformed path (bad check digit,
qualifiers out of order) gets 400; a well-formed one nothing is known about, 404.
Which values are links is :func:`idnode.gs1links.links_of`'s business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from idnode.errors import IdnodeError, NoSuchResource
from idnode.gs1 import PRIMARY_KEYS, GS1Key, from_path
from idnode.gs1links import VOCABULARY, Link, candidates, choose, links_of, ranked
from idnode.server.problems import problem
from idnode.service.offloop import OffLoop

__all__ = ["cors", "description", "digital_link"]

# Link types are matched whichever spelling of the GS1 namespace a client uses.
_SPELLINGS = ("gs1:", "https://gs1.org/voc/", VOCABULARY)
LINKSET_CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"
_LINKSET_TYPES = ("application/linkset+json", "application/json")


#: The resolver standard asks for CORS: the links are public, any web page may read them
#: (and the headers a redirect or linkset carries).
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Link, Location"}
_PREFLIGHT = {
    "Allow": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Accept, Accept-Language",
    "Access-Control-Max-Age": "86400",
}


def cors(
    answer: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint of the resolver answering OPTIONS (a CORS preflight, or a client
    asking what it may do) and marking every answer readable from any origin."""

    async def answered(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=_CORS | _PREFLIGHT)
        response = await answer(request)
        response.headers.update(_CORS)
        return response

    return answered


def description(request: Request, gs1_prefix: str) -> Response:
    """``/.well-known/gs1resolver``: what this resolver serves."""
    return JSONResponse(
        {
            "name": "idnode",
            "resolverRoot": _root(request),
            "supportedPrimaryKeys": list(PRIMARY_KEYS) if gs1_prefix else [],
            "supportedLinkType": [{"namespace": VOCABULARY, "prefix": "gs1:"}],
            "linkTypeDefaultCanBeLinkset": False,
            "jsonLdContextLocation": LINKSET_CONTEXT,
        }
    )


async def digital_link(off: OffLoop, request: Request, gs1_prefix: str) -> Response:
    # The raw path: a serial number may hold an encoded "/" (%2F).
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.url.query
    try:
        if not gs1_prefix:
            raise NoSuchResource("GS1 resolution is not set up here (gs1_prefix is empty)")
        key = from_path(raw.decode("latin-1"), query)
        records = await off.read(off.service.reads.resolve_gs1, key, gs1_prefix)
    except IdnodeError as exc:
        return problem(exc)
    anchor = _root(request) + key.path
    links = links_of(records)
    params = parse_qsl(query, keep_blank_values=True)
    wanted = next((v for k, v in params if k == "linkType"), None)
    accept = request.headers.get("accept", "")
    if wanted in ("linkset", "all") or (
        wanted is None and any(t in accept for t in _LINKSET_TYPES)
    ):
        return _linkset(anchor, key, links)
    offered = candidates(links, _full(wanted or "defaultLink"))
    if not offered:
        return problem(NoSuchResource(f"{key.path} has no link of type {wanted or 'default'}"))
    link = choose(
        offered,
        context=next((v for k, v in params if k == "context"), None),
        languages=ranked(request.headers.get("accept-language", "")),
        media_types=ranked(accept),
    )
    response = RedirectResponse(_with_query(link.href, query), status_code=307)
    response.headers["Link"] = (
        f'<{anchor}?linkType=linkset>; rel="linkset"; type="application/linkset+json"'
    )
    # The choice depends on these headers: a cache must not give one answer to all.
    response.headers["Vary"] = "Accept, Accept-Language"
    return response


def _linkset(anchor: str, key: GS1Key, links: list[Link]) -> Response:
    groups: dict[str, list[dict[str, Any]]] = {}
    for link in links:
        title = link.title or f"{link.type.removeprefix(VOCABULARY)} of {key.path.lstrip('/')}"
        item: dict[str, Any] = {"href": link.href, "title": title}
        if link.hreflang:
            item["hreflang"] = list(link.hreflang)
        if link.media_type:
            item["type"] = link.media_type
        if link.context:
            item["context"] = link.context
        groups.setdefault(link.type, []).append(item)
    return JSONResponse(
        {"linkset": [{"anchor": anchor, **groups}]},
        media_type="application/linkset+json",
        headers={"Link": f'<{LINKSET_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"'},
    )


def _full(link_type: str) -> str:
    """The link type as a URI; a bare name (``pip``) is taken from the GS1 vocabulary."""
    if ":" not in link_type:
        return VOCABULARY + link_type
    for spelling in _SPELLINGS:
        if link_type.startswith(spelling):
            return VOCABULARY + link_type[len(spelling) :]
    return link_type


def _with_query(target: str, query: str) -> str:
    if not query:
        return target
    return f"{target}{'&' if '?' in target else '?'}{query}"


def _root(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
