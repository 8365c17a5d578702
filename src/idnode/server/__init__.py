"""The servers: Handle over UDP and TCP, and HTTP, in one event loop per worker.

Thin adapters: :mod:`~idnode.server.transports` moves Handle bytes between sockets and
:mod:`~idnode.server.dispatch`, the ``http_*`` modules answer HTTP through
:class:`~idnode.service.offloop.OffLoop`, and :mod:`~idnode.server.runner` starts and
stops them. None of them touches storage.
"""
