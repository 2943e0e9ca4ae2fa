"""Property-based fuzzing from DataStorage's own OpenAPI document: no request may cause a 5xx.

For each operation, Schemathesis generates requests from the document the
running service serves and checks every answer: never a server error, only
documented status codes, media types and response shapes, and requests that
break the schema refused. Three kinds of input:

* `positive`: valid by the schema (timestamps random, so most events are
  refused by the 7-day window);
* `storable`: the same, with timestamps moved into the window and no random
  parent id, so random text and `event_data` reach PostgreSQL;
* `negative`: requests that break the schema.

Hypothesis is driven directly: Schemathesis' pytest fixture loader does not
work with this pytest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from datastorage.timestamps import format_timestamp
from test.integration.datastorage.support import (
    BATCH_PATH,
    CLIENT_TIMEOUT,
    EVENTS_PATH,
    LEGAL_HOLD_PATH,
    VERIFY_CHAIN_PATH,
    Stack,
)

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 50
RELEASE_HOLD_PATH = f"{LEGAL_HOLD_PATH}/{{correlation_id}}"


def within_the_window(case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    events: list[Any] = case.body if isinstance(case.body, list) else [case.body]
    for event in events:
        if isinstance(event, dict):
            event["event_timestamp"] = format_timestamp(datetime.now(UTC))
            event.pop("parent_event_id", None)
    return case


def cases(operation: Any, kind: str) -> st.SearchStrategy[schemathesis.Case[Any]]:
    if kind == "negative":
        strategy: st.SearchStrategy[schemathesis.Case[Any]] = operation.as_strategy(GenerationMode.NEGATIVE)
        return strategy
    positive: st.SearchStrategy[schemathesis.Case[Any]] = operation.as_strategy(GenerationMode.POSITIVE)
    return positive.map(within_the_window) if kind == "storable" else positive


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", EVENTS_PATH, "positive"),
        ("POST", EVENTS_PATH, "storable"),
        ("POST", EVENTS_PATH, "negative"),
        ("POST", BATCH_PATH, "storable"),
        ("POST", BATCH_PATH, "negative"),
        ("GET", EVENTS_PATH, "positive"),
        ("GET", EVENTS_PATH, "negative"),
        ("POST", VERIFY_CHAIN_PATH, "positive"),
        ("POST", VERIFY_CHAIN_PATH, "negative"),
        ("POST", LEGAL_HOLD_PATH, "positive"),
        ("POST", LEGAL_HOLD_PATH, "negative"),
        ("DELETE", RELEASE_HOLD_PATH, "positive"),
        ("DELETE", RELEASE_HOLD_PATH, "negative"),
        # Without parameters or a body there is nothing to break.
        ("GET", "/health/ready", "positive"),
        ("GET", "/readyz", "positive"),
    ],
)
def test_no_generated_request_gets_a_server_error(ds_stack: Stack, method: str, path: str, kind: str) -> None:
    # Schemathesis waits 10 s by default; two suites at once have kept DataStorage longer.
    schema = schemathesis.openapi.from_url(f"{ds_stack.url}/openapi.json", timeout=CLIENT_TIMEOUT)
    operation = schema[path][method]
    checks = [*CONFORMANCE, negative_data_rejection] if kind == "negative" else CONFORMANCE

    @given(case=cases(operation, kind))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def exchange(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=ds_stack.url, checks=checks, timeout=CLIENT_TIMEOUT)

    exchange()
