"""The national system's HTTP APIs, so its enterprises' software works unchanged.

Two families, each documented by the national system (``teleinfo-dev/id-guide``):
the secondary node's management API, SNMS (:mod:`~idnode.idisapi.snms`), and the
enterprise node's standard API, IDHub (:mod:`~idnode.idisapi.idhub`). Both are front
ends over the same service calls as the Handle.Net JSON API and the binary protocol;
their shapes and ours meet in :mod:`~idnode.idisapi.shapes`. ``docs/idis-api.md``
lists every endpoint and what is and is not supported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from idnode.idisapi import idhub, snms
from idnode.idisapi.common import Handler, guarded, idhub_error, snms_error
from idnode.service.offloop import OffLoop

__all__ = ["routes"]

_SNMS: list[tuple[str, Handler, list[str]]] = [
    ("/identity/token", snms.token, ["POST"]),
    ("/identity/token/v1", snms.token_v1, ["POST"]),
    ("/identityv2/data/detail", snms.detail, ["GET"]),
    ("/identityv2/data", snms.data, ["POST", "PUT", "DELETE"]),
    ("/identityv2/data/batchCreate", snms.batch_create, ["POST"]),
    ("/identityv2/data/batchUpdate", snms.batch_update, ["PUT", "POST"]),
    ("/identityv2/data/batchDelete", snms.batch_delete, ["DELETE", "POST"]),
    ("/snms/api/v3/template", snms.template_v3, ["GET", "POST", "DELETE"]),
    ("/snms/api/v5/template", snms.template_v5, ["GET", "POST", "PUT", "DELETE"]),
]
_IDHUB: list[tuple[str, Handler, list[str]]] = [
    ("/api/v1/doip/public/challenge", idhub.challenge, ["GET"]),
    ("/api/v1/doip/public/verify-response", idhub.verify_response, ["POST", "GET"]),
    ("/api/v1/doip", idhub.doip, ["GET", "POST"]),
    ("/api/v1/open/meta/create", idhub.meta_create, ["POST"]),
    ("/api/v1/open/meta/info", idhub.meta_info, ["GET"]),
    ("/api/v1/open/meta/update-basic-info", idhub.meta_update_basic, ["PUT", "POST"]),
    ("/api/v1/open/meta/update-item", idhub.meta_update_item, ["PUT", "POST"]),
    ("/api/v1/open/meta/delete", idhub.meta_delete, ["DELETE"]),
    # The documentation says grant/info, the SDK grant-info: both are served.
    ("/api/v1/open/meta/grant/info", idhub.meta_grant, ["POST"]),
    ("/api/v1/open/meta/grant-info", idhub.meta_grant, ["POST"]),
    ("/api/v1/open/meta/publish-or-withdraw", idhub.meta_publish, ["PUT", "POST"]),
    ("/api/v1/open/meta/page", idhub.meta_page, ["GET"]),
    ("/api/v1/open/meta/classify-query", idhub.classify_query, ["GET"]),
    ("/api/v1/open/meta/baseon-create", idhub.meta_baseon_create, ["POST"]),
    ("/api/v1/open/handle/page", idhub.handle_page, ["GET"]),
    # The documentation without /open, the SDK with it: both are served.
    ("/api/v1/single-handle/authorization", idhub.single_handle_authorization, ["POST"]),
    ("/api/v1/open/single-handle/authorization", idhub.single_handle_authorization, ["POST"]),
]


def routes(off: OffLoop) -> list[Route]:
    """The routes of both APIs, bound to ``off``."""

    def bound(
        handler: Handler, error: Callable[..., Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        run = guarded(handler, error)

        async def endpoint(request: Request) -> Response:
            return await run(off, request)

        return endpoint

    return [
        *(Route(path, bound(h, snms_error), methods=m) for path, h, m in _SNMS),
        *(Route(path, bound(h, idhub_error), methods=m) for path, h, m in _IDHUB),
    ]
