"""The HTTP front end over a real socket: Handle.Net JSON API, proxy pages, health."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningNode


@pytest.fixture(scope="module")
def http(running_node: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running_node.http, follow_redirects=False, timeout=10) as c:
        yield c


def test_healthz(http: httpx.Client) -> None:
    r = http.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_resolution_in_handle_net_shape(http: httpx.Client) -> None:
    r = http.get("/api/handles/88.100.1/pump-0001")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["responseCode"] == 1
    assert body["handle"] == "88.100.1/PUMP-0001"
    assert body["values"][0]["data"]["value"] == "serial-item@1"  # made from a template
    url = next(v for v in body["values"] if v["type"] == "URL")
    assert url["index"] == 4
    assert url["data"] == {
        "format": "string",
        "value": "https://pumps.example.com/id/88.100.1/PUMP-0001",
    }
    assert url["ttl"] == 86400
    assert url["timestamp"] == "2026-07-06T00:00:00Z"
    admin = next(v for v in body["values"] if v["type"] == "HS_ADMIN")
    assert admin["data"] == {
        "format": "admin",
        "value": {"handle": "0.NA/88.100.1", "index": 300, "permissions": "111111111111"},
    }
    assert all(v["type"] not in ("BATCH", "CUSTOMER") for v in body["values"])


def test_index_and_type_parameters(http: httpx.Client) -> None:
    r = http.get("/api/handles/88.100.1/PUMP-0001", params=[("index", "2"), ("type", "URL")])
    assert sorted(v["index"] for v in r.json()["values"]) == [2, 4]


def test_values_not_found_is_200_with_code_200(http: httpx.Client) -> None:
    r = http.get("/api/handles/88.100.1/PUMP-0001?index=999")
    assert r.status_code == 200
    assert r.json()["responseCode"] == 200


def test_percent_encoded_handle(http: httpx.Client) -> None:
    r = http.get("/api/handles/88.100.1%2FPUMP-0001")
    assert r.json()["handle"] == "88.100.1/PUMP-0001"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/handles/88.100.1/NOPE", 404, 100),
        ("/api/handles/99.9/X", 400, 301),
        ("/api/handles/noslash", 400, 102),
        ("/api/handles/88.100.1/PUMP-0001?index=abc", 400, 4),
        ("/api/handles/88.100.1/PUMP-0001?index=0", 400, 4),
        ("/api/nothing-here", 404, 2),
    ],
)
def test_errors_have_one_shape(http: httpx.Client, path: str, status: int, code: int) -> None:
    r = http.get(path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["responseCode"] == code
    assert body["status"] == status
    assert set(body) >= {"responseCode", "message", "type", "title", "status", "detail"}


def test_writes_without_credentials_get_basic_and_session_challenges(http: httpx.Client) -> None:
    r = http.put("/api/handles/88.100.1/PUMP-0001", json={"values": []})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    basic, session = r.headers.get_list("www-authenticate")
    assert basic == 'Basic realm="handle"'
    assert re.fullmatch(r'Handle sessionId="[\w-]+", nonce="[A-Za-z0-9+/=]{24}"', session)
    assert r.json()["responseCode"] == 402


def test_unsupported_methods_are_refused_with_problem(http: httpx.Client) -> None:
    r = http.post("/api/handles/88.100.1/PUMP-0001", json={"values": []})
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"


def test_proxy_redirects_to_first_url(http: httpx.Client) -> None:
    r = http.get("/88.100.1/PUMP-0001")
    assert r.status_code == 302
    assert r.headers["location"] == "https://pumps.example.com/id/88.100.1/PUMP-0001"


def test_proxy_noredirect_shows_values(http: httpx.Client) -> None:
    r = http.get("/88.100.1/PUMP-0001?noredirect")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "serial-item" in r.text
    assert "<td>URL</td>" in r.text


def test_proxy_never_redirects_to_script_urls(http: httpx.Client) -> None:
    r = http.get("/88.100.1/EVIL")
    assert r.status_code == 200
    assert "javascript:alert(1)" in r.text  # shown, escaped in a table, not followed
    assert "<script" not in r.text


def test_proxy_not_found_page(http: httpx.Client) -> None:
    r = http.get("/88.100.1/NOPE")
    assert r.status_code == 404
    assert "not found" in r.text


def test_proxy_escapes_handle_in_error_page(http: httpx.Client) -> None:
    r = http.get("/88.100.1/<b>x</b>")
    assert "<b>x</b>" not in r.text


def test_index_page_lists_prefixes(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200
    assert "88.100.1" in r.text


@pytest.mark.parametrize("since", ["99999999999999999999", "9" * 5000, "-1", "soon"])
def test_stats_refuses_a_time_that_is_none(http: httpx.Client, since: str) -> None:
    r = http.get("/api/stats", params={"since": since})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert "since must be a Unix time" in r.json()["detail"]


def test_prefixes_api(http: httpx.Client) -> None:
    assert http.get("/api/prefixes").json()["prefixes"] == ["88.100.1"]


def test_openapi_document_is_valid_and_covers_every_route(http: httpx.Client) -> None:
    from openapi_spec_validator import validate
    from starlette.routing import Mount, Route

    from idnode.server.http import create_app

    r = http.get("/api/openapi.json")
    assert r.status_code == 200
    document = r.json()
    validate(document)
    app = create_app(None)  # type: ignore[arg-type]  # routes only; nothing is served
    for route in app._app.routes:
        if isinstance(route, Mount) and route.path == "/console":
            continue  # the web console: pages for people, not an API (docs/console.md)
        if getattr(route, "path", "").startswith("/epcis/"):
            continue  # the EPCIS REST binding: GS1's own OpenAPI document describes it
        assert isinstance(route, Route)
        path = re.sub(r":\w+}", "}", route.path)
        if path in ("/", "/api/{rest}", "/console"):
            continue  # the index page, the catch-all 404 for unknown API paths, the
            # console's redirect to /console/
        assert path in document["paths"], path
        documented = {m.upper() for m in document["paths"][path] if m != "parameters"}
        assert (route.methods or set()) - {"HEAD"} <= documented, path


def test_405_names_the_methods_allowed(http: httpx.Client) -> None:
    r = http.post("/api/prefixes")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_openapi_refuses_what_the_server_refuses(http: httpx.Client) -> None:
    """Inputs the document admits must be inputs the server takes (issue 20 item 7):
    schemathesis generates from it."""
    from jsonschema import Draft202012Validator

    paths = http.get("/api/openapi.json").json()["paths"]

    def schema(path: str, method: str, name: str) -> Draft202012Validator:
        operation = paths[path][method]
        params = operation.get("parameters", []) + paths[path].get("parameters", [])
        return Draft202012Validator(next(p for p in params if p["name"] == name)["schema"])

    listing = schema("/api/handles", "get", "pageSize")
    assert not listing.is_valid(0)
    assert listing.is_valid(-1)
    assert listing.is_valid(10)
    assert not schema("/api/search", "get", "pageSize").is_valid(0)
    assert not schema("/api/handles", "get", "page").is_valid(-1)
    assert not schema("/api/templates/{name}", "get", "version").is_valid(-1)
    read_index = schema("/api/handles/{handle}", "get", "index")
    assert not read_index.is_valid([""])
    assert not read_index.is_valid(["various"])
    assert read_index.is_valid(["1", "300"])
    assert schema("/api/handles/{handle}", "delete", "index").is_valid(["various"])
    # And the server does refuse them.
    assert http.get("/api/search", params={"pageSize": 0}).status_code == 400
    # A page far past the end is refused, not an overflow in the database (found by
    # schemathesis: page=711737961012070704998750089117696 answered 500).
    huge = "711737961012070704998750089117696"
    assert http.get("/api/search", params={"page": huge}).status_code == 400
    assert not schema("/api/search", "get", "page").is_valid(int(huge))
    assert http.get("/api/handles/88.100.1/PUMP-0001", params={"index": ""}).status_code == 400
