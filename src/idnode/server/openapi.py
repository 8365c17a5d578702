"""The OpenAPI 3.1 description of the HTTP API, served at ``/api/openapi.json``.

Written by hand next to the code it describes (tests check that every route is in
it and that it is valid OpenAPI), because the API's shapes are Handle.Net's, not
ones a framework would derive from type hints.
"""

from __future__ import annotations

from typing import Any

from idnode import __version__
from idnode.idisapi.openapi import IDIS_SCHEMAS, idis_paths

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


_HANDLE = {
    "name": "handle",
    "in": "path",
    "required": True,
    "description": "prefix/suffix, e.g. 88.100.1/PUMP-0001 (the slash is not escaped)",
    "schema": {"type": "string"},
}
_INDEX = {
    "name": "index",
    "in": "query",
    "description": "value index (repeatable), 1 to 4294967295",
    "schema": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[1-9][0-9]{0,9}$"},
    },
    "style": "form",
    "explode": True,
}
#: For PUT and DELETE, which also take ``index=various``.
_WRITE_INDEX = _INDEX | {
    "description": "value index (repeatable), or 'various'",
    "schema": {
        "type": "array",
        "items": {"type": "string", "pattern": "^([1-9][0-9]{0,9}|various)$"},
    },
}
#: What the listings take (see http_admin.list_handles, http_search).
_PAGE = {
    "name": "page",
    "in": "query",
    "schema": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
}
_LISTING_PAGE_SIZE = {
    "name": "pageSize",
    "in": "query",
    "description": "1 to 10000, or -1 for all",
    "schema": {"type": "integer", "minimum": -1, "maximum": 10_000, "not": {"const": 0}},
}
_SEARCH_PAGE_SIZE = {
    "name": "pageSize",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}
_ERRORS = {
    "400": _problem("malformed handle, value or parameter (responseCode 102, 202, 301)"),
    "401": _problem(
        "credentials needed (responseCode 402); WWW-Authenticate offers Basic and a session"
    ),
    "403": _problem("authentication failed or not permitted (responseCode 400-406)"),
    "404": _problem("handle not found (responseCode 100)"),
    "429": _problem(
        "credentials from an address that failed to authenticate too often (responseCode 3)"
    ),
}
_SESSION_HEADER = {
    "name": "Authorization",
    "in": "header",
    "required": True,
    "description": 'Handle sessionId="...", optionally with id, type, cnonce, alg, signature',
    "schema": {"type": "string"},
}
_SECURITY: list[dict[str, list[str]]] = [
    {"basic": []},
    {"handleSession": []},
    {"clientCertificate": []},
]

_SCHEMAS: dict[str, Any] = {
    "Value": {
        "type": "object",
        "required": ["index", "type", "data"],
        "properties": {
            "index": {"type": "integer", "minimum": 1},
            "type": {"type": "string", "examples": ["URL", "HS_ADMIN"]},
            "data": {
                "description": "a plain string, or {format, value} with format string,"
                " base64, hex, admin, vlist, site or key",
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["format", "value"],
                        "properties": {"format": {"type": "string"}, "value": {}},
                    },
                ],
            },
            "ttl": {"type": "integer", "default": 86400},
            "timestamp": {"type": "string", "format": "date-time"},
            "permissions": {"type": "string", "pattern": "^[01]{4}$", "default": "1110"},
        },
    },
    "HandleRecord": {
        "type": "object",
        "required": ["responseCode", "handle", "values"],
        "properties": {
            "responseCode": {"type": "integer", "const": 1},
            "handle": {"type": "string"},
            "values": {"type": "array", "items": _ref("Value")},
        },
    },
    "Values": {
        "description": "the values to store; a bare array is accepted too",
        "oneOf": [
            {
                "type": "object",
                "required": ["values"],
                "properties": {"values": {"type": "array", "items": _ref("Value")}},
            },
            {"type": "array", "items": _ref("Value")},
        ],
    },
    "Written": {
        "type": "object",
        "required": ["responseCode", "handle"],
        "properties": {"responseCode": {"type": "integer"}, "handle": {"type": "string"}},
    },
    "StatsRow": {
        "type": "object",
        "description": "An hour's totals for a prefix; hour is the Unix time it starts",
        "required": ["prefix", "hour"],
        "properties": {
            "source": {"type": "string", "description": "the node that counted them"},
            "prefix": {"type": "string"},
            "hour": {"type": "integer", "multipleOf": 3600, "minimum": 0},
            "resolutions": {"type": "integer", "minimum": 0},
            "notFound": {"type": "integer", "minimum": 0},
            "registrations": {"type": "integer", "minimum": 0},
        },
    },
    "Listing": {
        "type": "object",
        "required": ["responseCode", "prefix", "totalCount", "handles"],
        "properties": {
            "responseCode": {"type": "integer"},
            "prefix": {"type": "string"},
            "totalCount": {"type": "string", "description": "a number, as a string"},
            "page": {"type": "integer"},
            "pageSize": {"type": "integer"},
            "handles": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Session": {
        "type": "object",
        "required": ["sessionId", "nonce", "authenticated"],
        "properties": {
            "responseCode": {"type": "integer"},
            "sessionId": {"type": "string"},
            "nonce": {"type": "string", "contentEncoding": "base64"},
            "authenticated": {"type": "boolean"},
            "id": {"type": "string", "description": "index:handle, once authenticated"},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details with Handle.Net's members",
        "required": ["responseCode", "message"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "responseCode": {"type": "integer"},
            "message": {"type": "string"},
            "handle": {"type": "string"},
        },
    },
}


def _digital_link(key: str) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "rest",
                "in": "path",
                "required": True,
                "description": f"the {key}, then its key qualifiers as AI/value pairs",
                "schema": {"type": "string"},
            },
            {
                "name": "linkType",
                "in": "query",
                "description": "a GS1 link type (gs1:pip), or linkset for all links",
                "schema": {"type": "string"},
            },
        ],
        "get": {
            "summary": f"GS1 Digital Link resolution by {key}: 307 to the link asked for,"
            " or the linkset",
            "responses": {
                "200": {
                    "description": "the linkset (RFC 9264)",
                    "content": {"application/linkset+json": {"schema": {"type": "object"}}},
                },
                "307": {"description": "redirect to the default or requested link"},
                **_ERRORS,
            },
        },
        "options": _PREFLIGHT,
    }


#: The GS1 endpoints answer OPTIONS (CORS preflights) for any origin.
_PREFLIGHT: dict[str, Any] = {
    "summary": "What a client may ask (GET, HEAD, OPTIONS), with CORS headers for any origin",
    "responses": {
        "204": {"description": "Allow and Access-Control-Allow-* headers"},
        "404": {"description": "a path that is no Digital Link (a line break, say)"},
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "idnode HTTP API",
            "version": __version__,
            "description": "The Handle.Net server's JSON API (reads, writes, listings,"
            " sessions), so existing Handle clients work unchanged. See docs/http-api.md."
            " And the national system's SNMS and IDHub APIs (tags SNMS, IDHub), see"
            " docs/idis-api.md.",
        },
        "components": {
            "schemas": _SCHEMAS | IDIS_SCHEMAS,
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user: index:handle URL-encoded (300%3A0.NA/88.100.1);"
                    " password: the HS_SECKEY secret",
                },
                "handleSession": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": 'Handle sessionId="..." after authenticating the'
                    " session (see /api/sessions)",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from /identity/token (SNMS) or"
                    " /api/v1/doip/public/verify-response (IDHub)",
                },
                "clientCertificate": {
                    "type": "mutualTLS",
                    "description": "subject UID (else CN) index:handle; its key must be"
                    " that identity's HS_PUBKEY",
                },
            },
        },
        "paths": {
            "/api/handles/{handle}": {
                "parameters": [_HANDLE],
                "get": {
                    "summary": "Resolve a handle",
                    "parameters": [
                        _INDEX,
                        {
                            "name": "type",
                            "in": "query",
                            "description": "value type (repeatable; 'URL.' matches subtypes)",
                            "schema": {"type": "array", "items": {"type": "string"}},
                            "style": "form",
                            "explode": True,
                        },
                        {
                            "name": "publicOnly",
                            "in": "query",
                            "description": "true: public values only. Default: true for"
                            " anonymous callers, false for authenticated ones",
                            "schema": {"type": "boolean"},
                        },
                        {"name": "pretty", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "responses": {
                        "200": _json(_ref("HandleRecord"), "the values the caller may read"),
                        **_ERRORS,
                    },
                },
                "put": {
                    "summary": "Create or replace a handle, or some of its values",
                    "security": _SECURITY,
                    "parameters": [
                        _WRITE_INDEX,
                        {"name": "overwrite", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "mintNewSuffix", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Values")}},
                    },
                    "responses": {
                        "200": _json(_ref("Written"), "replaced"),
                        "201": _json(_ref("Written"), "created"),
                        "409": _problem("handle exists and overwrite=false (responseCode 101)"),
                        **_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Delete a handle, or the values at index=",
                    "security": _SECURITY,
                    "parameters": [_WRITE_INDEX],
                    "responses": {"200": _json(_ref("Written"), "deleted"), **_ERRORS},
                },
            },
            "/api/handles": {
                "get": {
                    "summary": "List the handles under a prefix",
                    "security": _SECURITY,
                    "parameters": [
                        {
                            "name": "prefix",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        _PAGE,
                        _LISTING_PAGE_SIZE,
                    ],
                    "responses": {"200": _json(_ref("Listing"), "one page"), **_ERRORS},
                }
            },
            "/api/prefixes": {
                "get": {
                    "summary": "The prefixes this node serves",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "responseCode": {"type": "integer"},
                                    "prefixes": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                            "homed prefixes",
                        )
                    },
                }
            },
            "/api/history/{handle}": {
                "parameters": [
                    _HANDLE,
                    *(
                        {
                            "name": name,
                            "in": "query",
                            "description": description,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                        for name, description in (
                            ("version", "show this version's values"),
                            ("from", "show what changed from this version..."),
                            ("to", "...to this one"),
                            ("restore", "POST: make this version's values current"),
                        )
                    ),
                ],
                "get": {
                    "summary": "A record's versions, one version, or a diff between two",
                    "responses": {"200": _json({"type": "object"}, "versions"), **_ERRORS},
                },
                "post": {
                    "summary": "Restore a version (?restore=N) as a new version",
                    "responses": {"200": _json({"type": "object"}, "the new version"), **_ERRORS},
                },
            },
            "/api/trace/{identifier}": {
                "parameters": [
                    {
                        "name": "identifier",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "direction",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["down", "up"]},
                    },
                    {
                        "name": "depth",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 20},
                    },
                ],
                "get": {
                    "summary": "Genealogy from EPCIS events: where an identifier went (down)"
                    " or what it was made of (up); docs/traceability.md",
                    "responses": {"200": _json({"type": "object"}, "nodes and edges"), **_ERRORS},
                },
            },
            "/api/recall/{batch}": {
                "parameters": [
                    {"name": "batch", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "depth",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 20},
                    },
                ],
                "get": {
                    "summary": "Every identifier downstream of a batch, with where each was"
                    " last seen",
                    "responses": {"200": _json({"type": "object"}, "the identifiers"), **_ERRORS},
                },
            },
            "/api/bulk": {
                "parameters": [
                    {"name": name, "in": "query", "schema": {"type": kind}}
                    for name, kind in (
                        ("template", "string"),
                        ("prefix", "string"),
                        ("mint", "string"),
                        ("readers", "string"),
                        ("replace", "boolean"),
                        ("skipInvalid", "boolean"),
                    )
                ],
                "post": {
                    "summary": "Register records in bulk from CSV or JSON lines, all rows"
                    " checked before any is written",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": _json({"type": "object"}, "what was written"),
                        **_ERRORS,
                    },
                },
            },
            "/api/search": {
                "parameters": [
                    {"name": "prefix", "in": "query", "schema": {"type": "string"}},
                    {"name": "template", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "where",
                        "in": "query",
                        "description": "NAME=VALUE, NAME>=VALUE, ... (repeatable)",
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "explode": True,
                    },
                    {"name": "q", "in": "query", "schema": {"type": "string"}},
                    _PAGE,
                    _SEARCH_PAGE_SIZE,
                ],
                "get": {
                    "summary": "Identifiers whose public values match",
                    "responses": {"200": _json({"type": "object"}, "one page"), **_ERRORS},
                },
            },
            "/api/templates": {
                "get": {
                    "summary": "Every template's latest version",
                    "responses": {"200": _json({"type": "object"}, "the templates")},
                }
            },
            "/api/templates/{name}": {
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "version",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "get": {
                    "summary": "One template (its latest version, or ?version=N)",
                    "responses": {"200": _json({"type": "object"}, "the template"), **_ERRORS},
                },
                "put": {
                    "summary": "Define a template or a new version of it (node administrators)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {"201": _json({"type": "object"}, "the version made"), **_ERRORS},
                },
            },
            "/templates": {
                "get": {
                    "summary": "The templates as an HTML page",
                    "responses": {"200": {"description": "an HTML page"}},
                }
            },
            "/templates/{name}": {
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "get": {
                    "summary": "One template as an HTML page",
                    "responses": {
                        "200": {"description": "an HTML page"},
                        "404": {"description": "an HTML page saying why"},
                    },
                },
            },
            "/api/stats": {
                "get": {
                    "summary": "This node's totals, and those other nodes reported here",
                    "parameters": [
                        {
                            "name": "since",
                            "in": "query",
                            "description": "Unix time: only hours from then on",
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "responseCode": {"type": "integer"},
                                    "rows": {"type": "array", "items": _ref("StatsRow")},
                                    "reported": {"type": "array", "items": _ref("StatsRow")},
                                },
                            },
                            "totals per prefix and hour",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/api/stats/reports": {
                "post": {
                    "summary": "A child node reports its totals (replacing those of the same"
                    " source, prefix and hour); needs ADD_HANDLE on each prefix's handle",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["rows"],
                                    "properties": {
                                        "rows": {"type": "array", "items": _ref("StatsRow")}
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "responseCode": {"type": "integer"},
                                    "stored": {"type": "integer"},
                                },
                            },
                            "rows stored",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/api/sessions": {
                "post": {
                    "summary": "Open a session (authenticated at once by Basic or a"
                    " client certificate, if given)",
                    "responses": {"201": _json(_ref("Session"), "the new session"), **_ERRORS},
                }
            },
            "/api/sessions/this": {
                "parameters": [_SESSION_HEADER],
                "get": {
                    "summary": "The session named in the Authorization header",
                    "responses": {"200": _json(_ref("Session"), "its state"), **_ERRORS},
                },
                "put": {
                    "summary": "Authenticate the session: sign nonce + cnonce",
                    "responses": {"200": _json(_ref("Session"), "authenticated"), **_ERRORS},
                },
                "post": {
                    "summary": "Same as PUT (some clients POST)",
                    "responses": {"200": _json(_ref("Session"), "authenticated"), **_ERRORS},
                },
                "delete": {
                    "summary": "Close the session",
                    "responses": {"204": {"description": "closed"}, **_ERRORS},
                },
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": _json({"type": "object"}, "ok and the version")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Statistics in the Prometheus text format",
                    "responses": {
                        "200": {
                            "description": "counters",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/.well-known/gs1resolver": {
                "get": {
                    "summary": "GS1-Conformant Resolver description file",
                    "responses": {"200": _json({"type": "object"}, "the resolver's description")},
                },
                "options": _PREFLIGHT,
            },
            "/01/{rest}": _digital_link("GTIN"),
            "/00/{rest}": _digital_link("SSCC"),
            "/414/{rest}": _digital_link("GLN"),
            **idis_paths(),
            "/{handle}": {
                "parameters": [_HANDLE],
                "get": {
                    "summary": "Proxy page: 302 to the first URL value, or ?noredirect to"
                    " show the values",
                    "responses": {
                        "200": {"description": "an HTML page of the values"},
                        "302": {"description": "redirect to the handle's URL"},
                        "4XX": {
                            "description": "an HTML page saying why: not a handle (400),"
                            " not found (404), ..."
                        },
                        "5XX": {
                            "description": "an HTML page saying why: a server of the"
                            " handle's prefix cannot be reached, ..."
                        },
                    },
                },
            },
        },
    }
