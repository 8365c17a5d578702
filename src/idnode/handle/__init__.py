"""Sans-I/O Handle protocol (RFC 3651/3652, protocol 2.x as deployed).

Bytes in, typed messages out, and back. Nothing in this package opens a socket or
touches an event loop; the servers in :mod:`idnode.server` and the client in
:mod:`idnode.client` are thin adapters around it.

Modules: :mod:`~idnode.handle.codes` (wire enums), :mod:`~idnode.handle.wire`
(bounded reader and writer), :mod:`~idnode.handle.values` (handle values),
:mod:`~idnode.handle.valuetypes` (HS_ADMIN, HS_SITE, ... data),
:mod:`~idnode.handle.messages` (typed messages), :mod:`~idnode.handle.codec`
(messages to bytes and back, TCP framing). This package imports nothing eagerly, so
that :mod:`idnode.errors` can use its enums without an import cycle; `errors.py`
holds the root exception and the protocol errors, which the codec raises.
"""
