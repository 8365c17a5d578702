"""The GS1-Conformant Resolver endpoints: Digital Link paths and the description file.

``GET /01/{gtin}[/22/..][/10/..][/21/..]`` (also ``/00/{sscc}``, ``/414/{gln}[/254/..]``)
looks up the identifier the path maps to under the configured ``gs1_prefix`` (see
:mod:`idnode.gs1`), walking up to less specific keys when the exact one has no record,
and answers as the resolver standard asks:

- no ``linkType``: 307 to the default link (the record's first URL value);
- ``linkType=gs1:pip`` (or the full ``https://ref.gs1.org/voc/pip``): 307 to a link of
  that type, 404 if the record has none;
- ``linkType=linkset`` or ``Accept: application/linkset+json``/``application/json``:
  200 with the links as an RFC 9264 linkset.

Every answer may be read from any origin (CORS), and OPTIONS answers what a client may
ask. Redirects pass the request's query string on. A malformed path (bad check digit,
qualifiers out of order) gets 400; a well-formed one nothing is known about, 404.
Links come from the record's values: the first ``URL`` value is the default link (and
the product information page, ``gs1:pip``, unless a ``GS1.pip`` value names another);
each ``GS1.<type>`` value is a link of that GS1 link type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from idnode.errors import IdnodeError, NoSuchResource
from idnode.gs1 import PRIMARY_KEYS, GS1Key, from_path
from idnode.handle.values import HandleValue
from idnode.server.problems import problem
from idnode.service import NodeService

__all__ = ["LINK_TYPES", "cors", "description", "digital_link", "links_of"]

VOCABULARY = "https://ref.gs1.org/voc/"
# Link types are matched whichever spelling of the GS1 namespace a client uses.
_SPELLINGS = ("gs1:", "https://gs1.org/voc/", VOCABULARY)
LINKSET_CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"
LINK_TYPES = ("defaultLink", "pip")
_LINKSET_TYPES = ("application/linkset+json", "application/json")
_SAFE_SCHEMES = ("http", "https")


#: The resolver standard asks for CORS: the links are public, any web page may read them
#: (and the headers a redirect or linkset carries).
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Link, Location"}
_PREFLIGHT = {
    "Allow": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Accept, Accept-Language",
    "Access-Control-Max-Age": "86400",
}


def cors(answer: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """An endpoint of the resolver answering OPTIONS (a CORS preflight, or a client
    asking what it may do) and marking every answer readable from any origin."""

    def answered(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=_CORS | _PREFLIGHT)
        response = answer(request)
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


def digital_link(service: NodeService, request: Request, gs1_prefix: str) -> Response:
    # The raw path: a serial number may hold an encoded "/" (%2F).
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.url.query
    try:
        if not gs1_prefix:
            raise NoSuchResource("GS1 resolution is not set up here (gs1_prefix is empty)")
        key = from_path(raw.decode("latin-1"), query)
        values = service.resolve_gs1(key, gs1_prefix)
    except IdnodeError as exc:
        return problem(exc)
    anchor = _root(request) + key.path
    links = links_of(values)
    params = parse_qsl(query, keep_blank_values=True)
    wanted = next((v for k, v in params if k == "linkType"), None)
    accept = request.headers.get("accept", "")
    if wanted in ("linkset", "all") or (
        wanted is None and any(t in accept for t in _LINKSET_TYPES)
    ):
        return _linkset(anchor, key, links)
    link_type = _full(wanted or "defaultLink")
    targets = [href for kind, href in links if kind == link_type]
    if not targets:
        return problem(NoSuchResource(f"{key.path} has no link of type {wanted or 'default'}"))
    response = RedirectResponse(_with_query(targets[0], query), status_code=307)
    response.headers["Link"] = (
        f'<{anchor}?linkType=linkset>; rel="linkset"; type="application/linkset+json"'
    )
    return response


def links_of(values: Sequence[HandleValue]) -> list[tuple[str, str]]:
    """(link type URI, target) for each link the values hold, default link first.

    ``values`` may come from several records, the most specific first; within one
    record, values are taken in index order."""
    links: list[tuple[str, str]] = []
    urls = []
    for value in values:
        try:
            target = value.data.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        if urlsplit(target).scheme.lower() not in _SAFE_SCHEMES:
            continue
        kind = value.type
        if kind.upper() == "URL":
            urls.append(target)
        elif kind.upper().startswith("GS1.") and len(kind) > 4:
            links.append((VOCABULARY + kind[4:], target))
    if urls:
        links.insert(0, (VOCABULARY + "defaultLink", urls[0]))
        if not any(kind == VOCABULARY + "pip" for kind, _ in links):
            links.insert(1, (VOCABULARY + "pip", urls[0]))
    return links


def _linkset(anchor: str, key: GS1Key, links: list[tuple[str, str]]) -> Response:
    groups: dict[str, list[dict[str, str]]] = {}
    for kind, href in links:
        title = f"{kind.removeprefix(VOCABULARY)} of {key.path.lstrip('/')}"
        groups.setdefault(kind, []).append({"href": href, "title": title})
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
