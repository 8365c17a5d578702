"""HTTPS for the HTTP API, and client certificates handed to the application.

uvicorn does not put the peer's certificate in the ASGI scope, so the HTTP protocol
class is extended to add it the way the ASGI TLS extension describes
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM strings). The TLS layer
asks for a certificate only when ``tls_client_ca`` is set, and completes the
handshake only for certificates that chain to it; which identity a certificate
proves is decided by the application (:mod:`idnode.server.http_auth`).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from idnode.config import Config
from idnode.errors import ConfigError

__all__ = ["ClientCertProtocol", "uvicorn_tls_settings"]


class _WithClientCert:
    def __init__(self, app: Any, pem: str) -> None:
        self._app = app
        self._tls = {"client_cert_chain": [pem], "server_cert": None}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self._tls}
        await self._app(scope, receive, send)


class ClientCertProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the verified client certificate per connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.app = _WithClientCert(self.app, ssl.DER_cert_to_PEM_cert(der))


def uvicorn_tls_settings(config: Config) -> dict[str, Any]:
    """The uvicorn.Config arguments for the node's TLS settings (none without TLS)."""
    if not config.tls_cert:
        return {}
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{name}: no such file {path}")
    settings: dict[str, Any] = {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key}
    if config.tls_client_ca:
        settings |= {
            "ssl_ca_certs": config.tls_client_ca,
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
            "http": ClientCertProtocol,
        }
    return settings
