"""EPCIS 2.0, the pure part: documents in (JSON against GS1's schema, XML 2.0 and 1.2),
the identifiers events name reduced to one key, the canonical event hash, and the
standard's query parameters. No I/O, no storage, no service: the event store
(``storage/events.py``) and the service (``service/trace.py``) are built on it, so its
rules are tested without a database. See docs/traceability.md.
"""
