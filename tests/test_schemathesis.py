"""schemathesis against ``/api/openapi.json`` on a served node (issue 20): requests
generated from the document, a bounded number per operation, must get no 5xx and
answers whose status, content type, headers and body the document describes.

Requests the document admits but the server refuses (``positive_data_acceptance``)
are not checked here: a handle is any UTF-8 text with a slash to the document, while
the server knows which prefixes exist. More examples per operation:
``IDNODE_SCHEMATHESIS_EXAMPLES=200``, new ones: ``IDNODE_SCHEMATHESIS_RANDOM=1``.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.result import Err

from tests.conftest import RunningNode

EXAMPLES = int(os.environ.get("IDNODE_SCHEMATHESIS_EXAMPLES", "25"))
#: The same examples every run, so that CI fails for a change, not for a new draw;
#: IDNODE_SCHEMATHESIS_RANDOM=1 explores new ones.
DERANDOMIZE = not os.environ.get("IDNODE_SCHEMATHESIS_RANDOM")
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def test_the_api_keeps_to_its_document(running_node: RunningNode) -> None:
    schema = schemathesis.openapi.from_url(running_node.http + "/api/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation the document describes wrongly
            failures.append(f"{result.err()}")
            continue
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=DERANDOMIZE,
        )
        def run(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except BaseExceptionGroup as group:  # schemathesis's failures, all named
            failures.append(f"{operation.label}: {group}")
    assert not failures, "\n\n".join(failures)
