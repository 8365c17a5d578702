"""GS1 codes: parsing every form against published examples, and the GS1-Conformant
Resolver endpoints of a real node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from idnode.config import Config
from idnode.domain import HandleRecord
from idnode.gs1 import GS1Key, InvalidGS1, parse_gs1
from idnode.gs1links import VOCABULARY, Link, choose, links_of, ranked
from idnode.handle.values import HandleValue
from idnode.node import init_node
from tests.conftest import RunningNode

# The GTIN, SSCC and GLN GS1 uses in its own examples (valid check digits).
GTIN = "09506000134352"
SSCC = "106141411234567897"
GLN = "9506000134352"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # Digital Link URI, data attribute (expiry) in the query string.
        (
            f"https://id.gs1.org/01/{GTIN}/10/ABC/21/12345?17=201225",
            GS1Key("01", GTIN, (("10", "ABC"), ("21", "12345")), (("17", "201225"),)),
        ),
        # The same as a human-readable element string, elements in another order.
        (
            f"(01){GTIN}(17)201225(21)12345(10)ABC",
            GS1Key("01", GTIN, (("10", "ABC"), ("21", "12345")), (("17", "201225"),)),
        ),
        # Barcode content: symbology identifier, GS (0x1d) after a variable-length field.
        (f"]d201{GTIN}21SER\x1d10LOT", GS1Key("01", GTIN, (("10", "LOT"), ("21", "SER")))),
        (f"00{SSCC}", GS1Key("00", SSCC)),
        (f"(414){GLN}(254)A1", GS1Key("414", GLN, (("254", "A1"),))),
        ("9506000134352", GS1Key("01", GTIN)),  # an EAN-13, padded to 14 digits
        # A serial number with a "/" stays one path segment.
        (f"https://example.com/stem/01/{GTIN}/21/A%2FB/", GS1Key("01", GTIN, (("21", "A/B"),))),
    ],
)
def test_every_form_of_a_code_names_the_same_key(text: str, key: GS1Key) -> None:
    assert parse_gs1(text) == key


def test_the_identifier_is_the_prefix_and_the_digital_link_path() -> None:
    key = parse_gs1(f"(01){GTIN}(17)201225(21)A/B")
    assert key.identifier("88.100.1") == f"88.100.1/01/{GTIN}/21/A%2FB"
    assert [k.path for k in parse_gs1(f"(01){GTIN}(10)L(21)S").candidates()] == [
        f"/01/{GTIN}/10/L/21/S",
        f"/01/{GTIN}/10/L",
        f"/01/{GTIN}",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(01)09506000134353", "Invalid GTIN check digit"),
        (f"00{SSCC[:-1]}1", "Invalid SSCC check digit"),
        (f"https://id.gs1.org/01/{GTIN}/21/S1/10/L1", "qualifier"),
        (f"https://id.gs1.org/01/{GTIN}/17/201225", "qualifier"),
        ("(17)201225(10)ABC", "names no entity"),
        (f"(01){GTIN}(21)A(21)B", "repeats an application identifier"),
        ("https://example.com/products/42", "holds no GS1 primary key"),
        ("", "no GS1 code given"),
        ("not a barcode", "not a GS1 code"),
    ],
)
def test_malformed_codes_are_named_precisely(text: str, message: str) -> None:
    with pytest.raises(InvalidGS1, match=message):
        parse_gs1(text)


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    directory: Path = tmp_path_factory.mktemp("gs1")
    config = Config(data_dir=directory, handle_port=0, http_port=0, gs1_prefix="88.100.1")
    node = init_node(config, "88.100.1", {"gs1_prefix": "88.100.1"})
    product = f"88.100.1/01/{GTIN}"
    node.service.prefixes.put_record(
        HandleRecord(
            product,
            (
                HandleValue(1, "URL", b"https://pumps.example/cp-50"),
                HandleValue(2, "GS1.sustainabilityInfo", b"https://pumps.example/cp-50/eco"),
                HandleValue(3, "GS1.pip", b"https://pumps.example/cp-50/details"),
                # Two links the request cannot tell apart: a choice (300).
                HandleValue(4, "GS1.certificationInfo", b"https://pumps.example/cp-50/ce"),
                HandleValue(5, "GS1.certificationInfo", b"https://pumps.example/cp-50/ccc"),
            ),
        )
    )
    node.service.prefixes.put_record(
        HandleRecord(
            f"{product}/21/12345",
            (HandleValue(1, "URL", b"https://pumps.example/pump/12345"),),
        )
    )
    # A batch with manuals in two languages, one of them for one market.
    node.service.prefixes.put_record(
        HandleRecord(
            f"{product}/10/LOT-7",
            (
                HandleValue(1, "URL", _described("https://pumps.example/lot-7", "en")),
                HandleValue(2, "URL", _described("https://pumps.example/de/lot-7", "de")),
                HandleValue(3, "GS1.instructions", _described("https://pumps.example/m/en", "en")),
                HandleValue(4, "GS1.instructions", _described("https://pumps.example/m/de", "de")),
                HandleValue(
                    5, "GS1.instructions", _described("https://pumps.example/m/at", "de", "AT")
                ),
            ),
        )
    )
    node.close()
    server = RunningNode(config)
    try:
        yield server
    finally:
        server.stop()


PIP_TYPE = VOCABULARY + "pip"


def _described(href: str, language: str, context: str = "") -> bytes:
    link = {"href": href, "title": f"{href} ({language})", "hreflang": [language]}
    return json.dumps(link | ({"context": context} if context else {})).encode()


def _get(node: RunningNode, path: str, **headers: str) -> httpx.Response:
    return httpx.get(node.http + path, headers=headers, follow_redirects=False)


def test_a_serial_number_redirects_to_its_own_default_link(resolver: RunningNode) -> None:
    reply = _get(resolver, f"/01/{GTIN}/21/12345?17=201225")
    assert reply.status_code == 307
    # The query string is passed on.
    assert reply.headers["location"] == "https://pumps.example/pump/12345?17=201225"
    assert 'rel="linkset"' in reply.headers["link"]


def test_an_unknown_serial_inherits_its_products_links(resolver: RunningNode) -> None:
    assert _get(resolver, f"/01/{GTIN}/21/99999/").headers["location"] == (
        "https://pumps.example/cp-50"
    )
    eco = _get(resolver, f"/01/{GTIN}/21/12345?linkType=gs1:sustainabilityInfo")
    assert eco.status_code == 307
    assert eco.headers["location"].startswith("https://pumps.example/cp-50/eco?")
    full = _get(resolver, f"/01/{GTIN}?linkType=https://gs1.org/voc/pip")
    assert full.headers["location"].startswith("https://pumps.example/cp-50/details")


def test_a_linkset_on_request(resolver: RunningNode) -> None:
    for reply in (
        _get(resolver, f"/01/{GTIN}/21/12345?linkType=linkset"),
        _get(resolver, f"/01/{GTIN}/21/12345", accept="application/linkset+json"),
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("application/linkset+json")
        (entry,) = reply.json()["linkset"]
        assert entry["anchor"] == f"{resolver.http}/01/{GTIN}/21/12345"
        voc = "https://ref.gs1.org/voc/"
        assert [link["href"] for link in entry[voc + "defaultLink"]] == [
            "https://pumps.example/pump/12345"
        ]
        assert entry[voc + "sustainabilityInfo"][0]["href"] == "https://pumps.example/cp-50/eco"
        assert entry["itemDescription"] == "GTIN 09506000134352, serial 12345"
        assert all(link["title"] for kind, links in entry.items()
                   if kind not in ("anchor", "itemDescription") for link in links)  # fmt: skip


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/01/09506000134353", 400, "check digit"),
        (f"/01/{GTIN}/21/S1/10/L1", 400, "qualifier"),
        ("/01/00000000000017", 404, "nothing is known here"),
        (f"/01/{GTIN}/10", 400, "every application identifier needs a value"),
        (f"/01/{GTIN}?linkType=gs1:recallStatus", 404, "no link of type gs1:recallStatus"),
    ],
)
def test_errors_have_the_standards_status_codes(
    resolver: RunningNode, path: str, status: int, message: str
) -> None:
    reply = _get(resolver, path)
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    assert message in reply.json()["message"]
    if status == 400:  # one word for the acronym, not "invalid-g-s1"
        assert reply.json()["type"] == "https://idnode.dev/problems/invalid-gs1"


def test_the_resolver_describes_itself(resolver: RunningNode) -> None:
    document = _get(resolver, "/.well-known/gs1resolver").json()
    assert document["resolverRoot"] == resolver.http
    assert document["supportedPrimaryKeys"] == ["01", "00", "414"]
    assert document["supportedLinkType"] == [
        {"namespace": "https://ref.gs1.org/voc/", "prefix": "gs1:"}
    ]


def test_the_resolver_answers_head_options_and_other_origins(resolver: RunningNode) -> None:
    origin = {"Origin": "https://shop.example"}
    preflight = httpx.options(
        resolver.http + f"/01/{GTIN}/21/12345",
        headers=origin | {"Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    head = httpx.head(resolver.http + f"/01/{GTIN}/21/12345", headers=origin)
    assert head.status_code == 307
    for reply in (
        head,
        _get(resolver, f"/01/{GTIN}/21/12345", **origin),
        _get(resolver, "/01/00000000000017", **origin),  # a 404 is readable too
        _get(resolver, "/.well-known/gs1resolver", **origin),
    ):
        assert reply.headers["access-control-allow-origin"] == "*"
    assert "Link" in _get(resolver, f"/01/{GTIN}").headers["access-control-expose-headers"]


@pytest.mark.parametrize(
    ("query", "language", "target"),
    [
        ("", "de-CH,de;q=0.9,en;q=0.5", "https://pumps.example/de/lot-7"),
        ("", "fr, en;q=0.4", "https://pumps.example/lot-7"),
        ("", "fr", "https://pumps.example/lot-7"),  # nothing fits: the first
        ("?linkType=gs1:instructions", "de", "https://pumps.example/m/de"),
        ("?linkType=gs1:instructions", "en-GB", "https://pumps.example/m/en"),
        ("?linkType=gs1:instructions&context=AT", "de", "https://pumps.example/m/at"),
        ("?linkType=gs1:instructions&context=AT", "en", "https://pumps.example/m/at"),
        ("?linkType=gs1:instructions&context=CN", "en", "https://pumps.example/m/en"),
    ],
)
def test_links_of_one_type_are_chosen_by_language_and_context(
    resolver: RunningNode, query: str, language: str, target: str
) -> None:
    reply = _get(resolver, f"/01/{GTIN}/10/LOT-7{query}", **{"Accept-Language": language})
    assert reply.status_code == 307
    assert reply.headers["location"].split("?")[0] == target
    assert reply.headers["vary"] == "Accept, Accept-Language"


def test_a_linkset_says_each_links_language_and_title(resolver: RunningNode) -> None:
    (entry,) = _get(resolver, f"/01/{GTIN}/10/LOT-7?linkType=linkset").json()["linkset"]
    voc = "https://ref.gs1.org/voc/"
    assert entry[voc + "defaultLink"] == [
        {"href": "https://pumps.example/lot-7", "title": "https://pumps.example/lot-7 (en)",
         "hreflang": ["en"]}
    ]  # fmt: skip
    # Every default link is a defaultLinkMulti, the first one too (issue 21).
    assert [link["href"] for link in entry[voc + "defaultLinkMulti"]] == [
        "https://pumps.example/lot-7",
        "https://pumps.example/de/lot-7",
    ]
    manuals = entry[voc + "instructions"]
    assert [(m["hreflang"], m.get("context")) for m in manuals] == [
        (["en"], None),
        (["de"], None),
        (["de"], ["AT"]),
    ]


def test_accept_headers_are_ranked_by_quality_then_order() -> None:
    assert ranked("de-CH, de;q=0.9, *;q=0.1, en;q=0, fr;q=x") == ["de-ch", "de"]
    assert ranked("text/html;q=0.5, application/json, */*;q=0.1") == [
        "application/json",
        "text/html",
    ]
    assert ranked("") == []


@pytest.mark.parametrize(
    ("data", "link"),
    [
        (b"https://a.example/x", Link(PIP_TYPE, "https://a.example/x")),
        (
            b'{"href": "https://a.example/de", "hreflang": "de", "type": "text/html"}',
            Link(PIP_TYPE, "https://a.example/de", hreflang=("de",), media_type="text/html"),
        ),
        (b'{"href": "javascript:alert(1)"}', None),  # not http(s)
        (b'{"href": 5}', None),
        (b'{"href": "https://a.example", "hreflang": [1]}', None),
        (b"{not json", None),
        (b"\xff\xfe", None),
    ],
)
def test_a_link_value_is_a_url_or_a_described_link(data: bytes, link: Link | None) -> None:
    found = links_of([[HandleValue(1, "GS1.pip", data)]])
    assert found == ([] if link is None else [link])


def test_media_types_narrow_the_choice_after_language() -> None:
    pdf_type = "application/pdf"
    html = Link(PIP_TYPE, "https://a.example/p.html", hreflang=("en",), media_type="text/html")
    pdf = Link(PIP_TYPE, "https://a.example/p.pdf", hreflang=("en",), media_type=pdf_type)
    german = Link(PIP_TYPE, "https://a.example/de.pdf", hreflang=("de",), media_type=pdf_type)
    links = [html, pdf, german]
    assert choose(links, languages=["en"], media_types=["application/pdf"]) == pdf
    assert choose(links, languages=["en"], media_types=["text/*"]) == html
    assert choose(links, languages=["de"], media_types=["text/html"]) == german  # language first
    assert choose(links) == html


def test_a_malformed_link_value_spoils_no_other_link() -> None:
    """One GS1 value holding JSON nested too deep (or not JSON at all) is no link; the
    other links of the same GTIN are still offered."""
    deep = b'{"href": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    records = [
        [HandleValue(1, "GS1.pip", deep), HandleValue(2, "GS1.pip", b"{not json")],
        [HandleValue(1, "GS1.pip", b"https://example.com/pip")],
    ]
    assert [link.href for link in links_of(records)] == ["https://example.com/pip"]


# -- the GS1 resolver test suite's checks (issue 21) -----------------------------------

#: What the suite's linkset schema demands, as we read it: link types as full URIs or
#: lower-case IANA names, each link with href and title, hreflang and context arrays of
#: strings, an anchor and an itemDescription per entry, nothing else.
LINKSET_SCHEMA = {
    "type": "object",
    "required": ["linkset"],
    "additionalProperties": False,
    "properties": {
        "linkset": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["anchor", "itemDescription"],
                "properties": {
                    "anchor": {"type": "string", "pattern": "^https?://"},
                    "itemDescription": {"type": "string"},
                },
                "patternProperties": {
                    "^(?!(anchor|itemDescription)$)(https?://[A-Za-z0-9./]+|[a-z-]+)$": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["href", "title"],
                            "additionalProperties": False,
                            "properties": {
                                "href": {"type": "string", "pattern": "^https?://"},
                                "title": {"type": "string"},
                                "hreflang": {
                                    "type": "array",
                                    "items": {"type": "string", "pattern": "^\\w{2}(-\\w{2})?$"},
                                },
                                "type": {"type": "string"},
                                "context": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    }
                },
                "additionalProperties": False,
            },
        }
    },
}


@pytest.mark.parametrize("path", [f"/01/{GTIN}", f"/01/{GTIN}/10/LOT-7", f"/01/{GTIN}/21/12345"])
def test_linksets_fit_the_suites_schema_with_a_json_ld_context(
    resolver: RunningNode, path: str
) -> None:
    reply = _get(resolver, path, accept="application/linkset+json")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/linkset+json"
    jsonschema.validate(reply.json(), LINKSET_SCHEMA)
    links = reply.headers["link"].split(",")
    assert any(
        'rel="http://www.w3.org/ns/json-ld#context"' in link
        and 'type="application/ld+json"' in link
        for link in links
    )


def test_options_and_get_say_the_methods_and_the_linkset(resolver: RunningNode) -> None:
    options = httpx.options(resolver.http + f"/01/{GTIN}/21/12345")
    assert options.status_code == 204
    assert options.headers["link"] == (
        f'<{resolver.http}/01/{GTIN}/21/12345?linkType=linkset>; rel="linkset";'
        ' type="application/linkset+json"'
    )
    get = _get(resolver, f"/01/{GTIN}/21/12345", Origin="https://ref.gs1.org/test-suites/")
    methods = get.headers["access-control-allow-methods"]
    assert all(method in methods for method in ("GET", "HEAD", "OPTIONS"))


@pytest.mark.parametrize(
    ("query", "target"),
    [
        ("?lang=de", "https://pumps.example/de/lot-7"),
        ("?lang=en&mediaType=undefined", "https://pumps.example/lot-7"),
        ("?lang=undefined", "https://pumps.example/lot-7"),
    ],
)
def test_each_default_link_is_reached_by_the_suites_query_parameters(
    resolver: RunningNode, query: str, target: str
) -> None:
    reply = _get(resolver, f"/01/{GTIN}/10/LOT-7{query}")
    assert reply.status_code == 307
    assert reply.headers["location"].split("?")[0] == target


def test_links_the_request_cannot_tell_apart_are_offered_as_a_choice(
    resolver: RunningNode,
) -> None:
    reply = _get(resolver, f"/01/{GTIN}?linkType=gs1:certificationInfo")
    assert reply.status_code == 300
    assert "location" not in reply.headers
    assert 'rel="linkset"' in reply.headers["link"]
    jsonschema.validate(reply.json(), LINKSET_SCHEMA)
    (entry,) = reply.json()["linkset"]
    assert [link["href"] for link in entry[VOCABULARY + "certificationInfo"]] == [
        "https://pumps.example/cp-50/ce",
        "https://pumps.example/cp-50/ccc",
    ]
    # Manuals in two languages, asked for with no language: a choice too; with one, it.
    both = _get(resolver, f"/01/{GTIN}/10/LOT-7?linkType=gs1:instructions")
    assert both.status_code == 300
    (entry,) = both.json()["linkset"]
    assert [m["hreflang"] for m in entry[VOCABULARY + "instructions"]] == [["en"], ["de"]]
    german = _get(resolver, f"/01/{GTIN}/10/LOT-7?linkType=gs1:instructions&lang=de")
    assert german.headers["location"].split("?")[0] == "https://pumps.example/m/de"
    # The default link is never a choice: the first fits when nothing else says.
    assert _get(resolver, f"/01/{GTIN}/10/LOT-7").status_code == 307


def test_a_context_link_is_only_for_its_context() -> None:
    general = Link(PIP_TYPE, "https://a.example/p")
    austria = Link(PIP_TYPE, "https://a.example/at", context=("AT", "CH"))
    assert choose([austria, general]) == general
    assert choose([austria, general], context="ch") == austria
    assert choose([austria], context="CN") == austria  # the only one


def test_compressed_digital_links_resolve_as_the_uncompressed_ones(
    resolver: RunningNode,
) -> None:
    """Issue 21: ``/ARFKk4XBoGCAFQ`` is ``/01/09506000134352?30=0042``."""
    whole = _get(resolver, "/ARFKk4XBoGCAFQ")
    assert whole.status_code == 307
    assert whole.headers["location"] == "https://pumps.example/cp-50?30=0042"
    assert f"<{resolver.http}/01/{GTIN}?linkType=linkset>" in whole.headers["link"]
    # Partly compressed: the primary key in the clear, the rest (a lot, a date) not.
    part = _get(resolver, f"/01/{GTIN}/EEarwSMXPQ9Q?linkType=linkset")
    assert part.status_code == 200
    (entry,) = part.json()["linkset"]
    assert entry["anchor"] == f"{resolver.http}/01/{GTIN}/10/ABC123"
    # Not a compressed link, nor a handle: a precise 400.
    broken = _get(resolver, "/sA")
    assert broken.status_code == 400
    assert "no meaning for code B0" in broken.json()["detail"]


def test_the_options_link_keeps_the_path_encoded(resolver: RunningNode) -> None:
    """A path that decodes to '>; rel="x"' must not end the link or add parameters."""
    path = f"/01/{GTIN}/21/A%3E%3B%20rel%3D%22x%22"
    options = httpx.options(resolver.http + path)
    assert options.headers["link"] == (
        f'<{resolver.http}{path}?linkType=linkset>; rel="linkset"; type="application/linkset+json"'
    )
    non_latin = httpx.options(resolver.http + f"/01/{GTIN}/21/%E5%85%A4")
    assert non_latin.status_code == 204
    assert non_latin.headers["link"].startswith(f"<{resolver.http}/01/{GTIN}/21/%E5%85%A4?")
