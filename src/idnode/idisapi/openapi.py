"""The OpenAPI description of the SNMS and IDHub endpoints, merged into
``/api/openapi.json``: the paths, their parameters and bodies, and the two envelopes
every answer comes in (HTTP 200; the outcome is the body's ``status`` or ``code``)."""

from __future__ import annotations

from typing import Any

__all__ = ["IDIS_SCHEMAS", "idis_paths"]

_OBJECT: dict[str, Any] = {"type": "object"}
_TEXT: dict[str, Any] = {"type": "string"}
_WHOLE: dict[str, Any] = {"type": "integer"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


IDIS_SCHEMAS: dict[str, Any] = {
    "SnmsEnvelope": {
        "type": "object",
        "required": ["message", "status", "data"],
        "properties": {
            "message": _TEXT,
            "status": {
                "type": "integer",
                "description": "1 success; -1 not logged in; -2 refused (message says"
                " why); -3 no permission; -4 internal error",
            },
            "data": {},
        },
    },
    "IdhubEnvelope": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {
                "type": "integer",
                "description": "1 success; 102 no token; 104 not found; 105 exists; 106"
                " bad parameter; 401 authentication failed; 403 no permission; 405"
                " unsupported operation; 600 template withdrawn; 601 item error; 604"
                " no such template; 606 delete failed; 701 prefix not served here; 500 other",
            },
            "message": _TEXT,
            "data": {},
        },
    },
    "SnmsValue": {
        "type": "object",
        "required": ["index", "type", "data"],
        "properties": {
            "index": _WHOLE,
            "type": _TEXT,
            "auth": _TEXT,
            "data": {
                "type": "object",
                "properties": {"format": {"const": "string"}, "value": _TEXT},
            },
        },
    },
    "SnmsRecord": {
        "type": "object",
        "required": ["handle", "templateVersion", "value"],
        "properties": {
            "handle": _TEXT,
            "templateVersion": _TEXT,
            "value": {"type": "array", "items": _ref("SnmsValue")},
        },
    },
    "SnmsTemplate": {
        "type": "object",
        "required": ["prefix", "version", "items"],
        "properties": {
            "prefix": _TEXT,
            "version": _TEXT,
            "industryCategory": _TEXT,
            "industrySpecific": _TEXT,
            "industryTrade": _TEXT,
            "industrySubclass": _TEXT,
            "type": _WHOLE,
            "description": _TEXT,
            "items": {"type": "array", "items": _OBJECT},
        },
    },
    "DoipObject": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "the template, <prefix>/META_<code>"},
            "attributes": {"type": "object", "properties": {"content": _OBJECT}},
        },
    },
}


def _query(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": _TEXT,
    }


def _operation(
    summary: str,
    envelope: str,
    *,
    body: dict[str, Any] | None = None,
    params: tuple[dict[str, Any], ...] = (),
    public: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": ["SNMS" if envelope == "SnmsEnvelope" else "IDHub"],
        "responses": {
            "200": {
                "description": "the outcome, in the envelope",
                "content": {"application/json": {"schema": _ref(envelope)}},
            }
        },
    }
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
    operation["security"] = [] if public else [{"bearer": []}]
    return operation


def _snms(summary: str, **kw: Any) -> dict[str, Any]:
    return _operation(summary, "SnmsEnvelope", **kw)


def _idhub(summary: str, **kw: Any) -> dict[str, Any]:
    return _operation(summary, "IdhubEnvelope", **kw)


_LOGIN = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {"username": _TEXT, "password": _TEXT},
}
_HANDLE_ONLY = {"type": "object", "required": ["handle"], "properties": {"handle": _TEXT}}
_RECORDS = {"type": "array", "items": _ref("SnmsRecord"), "maxItems": 2000}
_TEMPLATE_KEY = (
    _query("prefix", "the template's prefix", required=True),
    _query("version", "the template's version (its name)", required=True),
)
_DOIP = (
    _query("targetId", "the object: an identifier, or a template's <prefix>/META_<code>"),
    _query(
        "operationId",
        "0.DOIP/Op.Create, Op.Retrieve, Op.Update, Op.Delete, Op.Hello, Op.ListOperations,"
        " 0.DOIP.EXTEND/Op.Update.Non.Overlay",
        required=True,
    ),
)
_META_HANDLE = _query("metaHandle", "the template, <prefix>/META_<code>", required=True)
_PAGING = (_query("page", "page number from 0"), _query("size", "page size, 1 to 1000"))
_GRANT = _idhub("Grant identities reading or writing one record", body=_OBJECT)
_META_GRANT = _idhub(
    "Who may make records from a template (scope 1 anyone, 2 listed)", body=_OBJECT
)


def idis_paths() -> dict[str, Any]:
    """The paths of both APIs, for the ``paths`` of the OpenAPI document."""
    template_v5 = {
        "get": _snms("Read a template", params=_TEMPLATE_KEY),
        "post": _snms("Create a template (items with idIndex)", body=_ref("SnmsTemplate")),
        "put": _snms("Modify a template's items", body=_ref("SnmsTemplate")),
        "delete": _snms("Delete a template", body=_OBJECT),
    }
    return {
        "/identity/token": {
            "post": _snms("Log in with an account's password", body=_LOGIN, public=True)
        },
        "/identity/token/v1": {
            "post": _snms(
                "Log in with sha256(sha256(password) + YYYY-MM-DD)", body=_LOGIN, public=True
            )
        },
        "/identityv2/data/detail": {
            "get": _snms(
                "A record, as the caller may read it", params=(_query("handle", "", required=True),)
            )
        },
        "/identityv2/data": {
            "post": _snms("Register a record from a template", body=_ref("SnmsRecord")),
            "put": _snms("Update a record's values", body=_ref("SnmsRecord")),
            "delete": _snms("Delete a record", body=_HANDLE_ONLY),
        },
        "/identityv2/data/batchCreate": {"post": _snms("Register records", body=_RECORDS)},
        "/identityv2/data/batchUpdate": {
            "put": _snms("Update records", body=_RECORDS),
            "post": _snms("Update records", body=_RECORDS),
        },
        "/identityv2/data/batchDelete": {
            "delete": _snms("Delete records", body={"type": "array", "items": _TEXT}),
            "post": _snms("Delete records", body={"type": "array", "items": _TEXT}),
        },
        "/snms/api/v3/template": {
            "get": _snms("Read a template (without indexes)", params=_TEMPLATE_KEY),
            "post": _snms(
                "Create a template (items numbered from 2000)", body=_ref("SnmsTemplate")
            ),
            "delete": _snms("Delete a template", body=_OBJECT),
        },
        "/snms/api/v5/template": template_v5,
        "/api/v1/doip/public/challenge": {
            "get": _idhub(
                "A nonce for the identity's key to sign",
                params=(_query("handle", "the application identity", required=True),),
                public=True,
            )
        },
        "/api/v1/doip/public/verify-response": {
            method: _idhub(
                "The signed nonce (base64); answered with a token",
                body={"type": "object", "properties": {"handle": _TEXT, "signature": _TEXT}},
                public=True,
            )
            for method in ("post", "get")
        },
        "/api/v1/doip": {
            "get": _idhub("Retrieve an object (token optional)", params=_DOIP),
            "post": _idhub(
                "Create, update or delete an object", params=_DOIP, body=_ref("DoipObject")
            ),
        },
        "/api/v1/open/meta/create": {"post": _idhub("Create a metadata template", body=_OBJECT)},
        "/api/v1/open/meta/info": {"get": _idhub("A metadata template", params=(_META_HANDLE,))},
        "/api/v1/open/meta/update-basic-info": {
            m: _idhub("Change a template's descriptive information", body=_OBJECT)
            for m in ("put", "post")
        },
        "/api/v1/open/meta/update-item": {
            m: _idhub("Change a template's items", body=_OBJECT) for m in ("put", "post")
        },
        "/api/v1/open/meta/delete": {
            "delete": _idhub(
                "Delete withdrawn templates",
                params=(_query("metaHandleList", "repeatable, or comma-separated", required=True),),
            )
        },
        "/api/v1/open/meta/grant/info": {"post": _META_GRANT},
        "/api/v1/open/meta/grant-info": {"post": _META_GRANT},
        "/api/v1/open/meta/publish-or-withdraw": {
            m: _idhub("Publish or withdraw templates", body=_OBJECT) for m in ("put", "post")
        },
        "/api/v1/open/meta/page": {
            "get": _idhub(
                "The caller's prefix's templates",
                params=(
                    _query("classifyCode", "classification"),
                    _query("metaHandle", "one template"),
                    _query("metaState", "0 withdrawn, 1 published"),
                    *_PAGING,
                ),
            )
        },
        "/api/v1/open/meta/classify-query": {"get": _idhub("The classifications in use")},
        "/api/v1/open/meta/baseon-create": {"post": _idhub("Copy a template", body=_OBJECT)},
        "/api/v1/open/handle/page": {
            "get": _idhub(
                "The records made from a template",
                params=(_META_HANDLE, _query("handleName", "one record"), *_PAGING),
            )
        },
        "/api/v1/single-handle/authorization": {"post": _GRANT},
        "/api/v1/open/single-handle/authorization": {"post": _GRANT},
    }
