"""The GS1-Conformant Resolver endpoints: Digital Link paths and the description file.

``GET /01/{gtin}[/22/..][/10/..][/21/..]`` (also ``/00/{sscc}``, ``/414/{gln}[/254/..]``)
looks up the identifier the path maps to under the configured ``gs1_prefix`` (see
:mod:`idnode.gs1`), walking up to less specific keys when the exact one has no record,
and answers as the resolver standard asks:

- no ``linkType``: 307 to the default link (among several default links, the one that
  fits the request's language, context and media type);
- ``linkType=gs1:pip`` (or the full ``https://ref.gs1.org/voc/pip``): 307 to a link of
  that type, 404 if the record has none; among several, the one that fits the
  request's ``context``, language and media type (:mod:`idnode.gs1links`), and when
  the request cannot tell several apart, 300 Multiple Choices with them as a linkset;
- ``linkType=linkset`` or ``Accept: application/linkset+json``/``application/json``:
  200 with the links as an RFC 9264 linkset.

Language and media type come from ``Accept-Language`` and ``Accept``, or from the
``lang`` and ``mediaType`` query parameters (which the GS1 test suite sends), which
come first. Every answer may be read from any origin (CORS), and OPTIONS answers what
a client may ask, with the linkset's address. Redirects pass the request's query
string on. A malformed path (bad check digit, qualifiers out of order) gets 400; a
well-formed one nothing is known about, 404. Which values are links is
:func:`idnode.gs1links.links_of`'s business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from idnode.errors import IdnodeError, NoSuchResource
from idnode.gs1 import PRIMARY_KEYS, GS1Key, from_path
from idnode.gs1compressed import expand
from idnode.gs1links import DEFAULT, VOCABULARY, Link, candidates, links_of, narrow, ranked
from idnode.server.problems import problem
from idnode.service.offloop import OffLoop

__all__ = ["cors", "description", "digital_link"]

# Link types are matched whichever spelling of the GS1 namespace a client uses.
_SPELLINGS = ("gs1:", "https://gs1.org/voc/", VOCABULARY)
LINKSET_CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"
_LINKSET_TYPES = ("application/linkset+json", "application/json")


#: The resolver standard asks for CORS: the links are public, any web page may read them
#: (and the headers a redirect or linkset carries).
#: The methods are named on every answer, not only preflights: the GS1 test suite looks
#: for them on a GET.
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Expose-Headers": "Link, Location",
}
_PREFLIGHT = {
    "Allow": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Accept, Accept-Language",
    "Access-Control-Max-Age": "86400",
}
#: What a path keeps unencoded in a Link header: not <, >, ", spaces or controls.
_SAFE = "/%-._~!$&'()*+,;=:@"
#: Query parameter values that state no preference (the test suite sends "undefined"
#: for a link without a media type).
_UNSTATED = ("", "undefined", "null")


def cors(
    answer: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint of the resolver answering OPTIONS (a CORS preflight, or a client
    asking what it may do) and marking every answer readable from any origin."""

    async def answered(request: Request) -> Response:
        if request.method == "OPTIONS":
            headers = _CORS | _PREFLIGHT
            if not request.url.path.startswith("/.well-known/"):
                # The path as sent, still percent-encoded: decoded, it could end the
                # link's <...> and add parameters of its own.
                raw = (request.scope.get("raw_path") or b"").decode("latin-1")
                headers = headers | {"Link": _linkset_link(_root(request) + quote(raw, _SAFE))}
            return Response(status_code=204, headers=headers)
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
        path = raw.decode("latin-1")
        expanded = expand(path, query)  # a compressed Digital Link: what it stands for
        if expanded is not None:
            path, query = expanded
        key = from_path(path, query)
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
    link_type = _full(wanted or "defaultLink")
    offered = candidates(links, link_type)
    if not offered:
        return problem(NoSuchResource(f"{key.path} has no link of type {wanted or 'default'}"))
    stated = {k: v for k, v in params if v not in _UNSTATED}
    fitting = narrow(
        offered,
        context=stated.get("context"),
        languages=[
            *_asked(stated.get("lang")),
            *ranked(request.headers.get("accept-language", "")),
        ],
        media_types=[*_asked(stated.get("mediaType")), *ranked(accept)],
    )
    if len(fitting) > 1 and link_type != DEFAULT:
        # The request cannot tell these apart: the standard's answer is the choice.
        response = _linkset(anchor, key, fitting, status_code=300)
        response.headers["Link"] = f"{_linkset_link(anchor)}, {response.headers['Link']}"
    else:
        response = RedirectResponse(_with_query(fitting[0].href, query), status_code=307)
        response.headers["Link"] = _linkset_link(anchor)
    # The choice depends on these headers: a cache must not give one answer to all.
    response.headers["Vary"] = "Accept, Accept-Language"
    return response


def _asked(value: str | None) -> list[str]:
    return [value.lower()] if value else []


def _linkset_link(anchor: str) -> str:
    return f'<{anchor}?linkType=linkset>; rel="linkset"; type="application/linkset+json"'


def _linkset(anchor: str, key: GS1Key, links: list[Link], status_code: int = 200) -> Response:
    groups: dict[str, list[dict[str, Any]]] = {}
    for link in links:
        title = link.title or f"{link.type.removeprefix(VOCABULARY)} of {key.path.lstrip('/')}"
        item: dict[str, Any] = {"href": link.href, "title": title}
        if link.hreflang:
            item["hreflang"] = list(link.hreflang)
        if link.media_type:
            item["type"] = link.media_type
        if link.context:
            item["context"] = list(link.context)
        groups.setdefault(link.type, []).append(item)
    described = ", ".join(f"{name} {value}" for name, value in key.describe().items())
    return JSONResponse(
        {"linkset": [{"anchor": anchor, "itemDescription": described, **groups}]},
        status_code=status_code,
        media_type="application/linkset+json",
        headers={
            "Link": f'<{LINKSET_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context";'
            ' type="application/ld+json"'
        },
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
