"""Bad requests of every kind get a 4xx RFC 7807 answer with a useful detail, never a 5xx."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    assert_problem,
    counter,
    make_event,
    metric,
)

JSON = {"content-type": "application/json"}
VALIDATION_FAILURES = "datastorage_validation_failures_total"


@dataclass(frozen=True)
class BadRequest:
    method: str
    path: str
    status: int
    code: str
    detail: str
    body: bytes | None = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def event_json(**changes: Any) -> bytes:
    return json.dumps(make_event("ds-it-bad-input", **changes)).encode()


def post(path: str, body: bytes, status: int, code: str, detail: str, **extra: Any) -> BadRequest:
    return BadRequest("POST", path, status, code, detail, body=body, **extra)


def get(params: dict[str, Any], detail: str) -> BadRequest:
    return BadRequest("GET", EVENTS_PATH, 400, "validation-error", detail, params=params, headers={})


CASES = [
    pytest.param(post(EVENTS_PATH, b"{not json", 400, "invalid-request", "not valid JSON"), id="broken-json"),
    pytest.param(
        post(EVENTS_PATH, event_json(), 400, "invalid-request", "Content-Type: application/json", headers={}),
        id="no-content-type",
    ),
    pytest.param(
        post(
            EVENTS_PATH,
            event_json(),
            400,
            "invalid-request",
            "Content-Type: application/json",
            headers={"content-type": "text/plain"},
        ),
        id="text-content-type",
    ),
    pytest.param(post(EVENTS_PATH, b"", 400, "invalid-request", "body is required"), id="empty-body"),
    pytest.param(post(EVENTS_PATH, b"[]", 400, "invalid-request", "JSON object"), id="array-for-single"),
    pytest.param(post(EVENTS_PATH, b'"event"', 400, "invalid-request", "not a string"), id="string-body"),
    pytest.param(post(EVENTS_PATH, b"null", 400, "invalid-request", "not null"), id="null-body"),
    pytest.param(
        post(EVENTS_PATH, event_json(version=...), 400, "validation-error", "version: Field required"),
        id="missing-field",
    ),
    pytest.param(
        post(
            EVENTS_PATH,
            event_json(event_type=12),
            400,
            "validation-error",
            "event_type: Input should be a valid string",
        ),
        id="number-for-string",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(duration_ms="12"), 400, "validation-error", "duration_ms"),
        id="string-for-integer",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(event_category="billing"), 400, "validation-error", "event_category"),
        id="unknown-category",
    ),
    pytest.param(
        post(
            EVENTS_PATH, event_json(event_action="x" * 51), 400, "validation-error", "at most 50 characters"
        ),
        id="too-long",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(event_timestamp="yesterday"), 400, "validation-error", "RFC 3339"),
        id="garbage-timestamp",
    ),
    pytest.param(
        post(
            EVENTS_PATH, event_json(event_timestamp="2030-01-01T00:00:00Z"), 400, "validation-error", "future"
        ),
        id="future-timestamp",
    ),
    pytest.param(
        post(
            EVENTS_PATH,
            event_json(event_timestamp="2020-01-01T00:00:00Z"),
            400,
            "validation-error",
            "too old",
        ),
        id="old-timestamp",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(event_data=[1]), 400, "invalid-event-data", "event_data"),
        id="array-data",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(event_data=None), 400, "invalid-event-data", "event_data"),
        id="null-data",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(event_data={"a": "\x00"}), 400, "invalid-event-data", "\\u0000"),
        id="nul-in-data",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(event_type="a\x00b"), 400, "validation-error", "NUL"), id="nul-in-text"
    ),
    pytest.param(
        post(
            EVENTS_PATH,
            event_json().replace(b'"default"', b'"\\ud800"'),
            400,
            "validation-error",
            "namespace",
        ),
        id="lone-surrogate",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json().replace(b'"Completed"', b"NaN"), 400, "invalid-event-data", "NaN"),
        id="nan-literal",
    ),
    pytest.param(
        post(EVENTS_PATH, b"[" * 100_000 + b"]" * 100_000, 400, "invalid-request", "parsing the body"),
        id="absurd-nesting",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(event_id="nope"), 400, "validation-error", "event_id"), id="bad-event-id"
    ),
    pytest.param(
        post(EVENTS_PATH, b"x" * (11 * 1024 * 1024), 413, "payload-too-large", "larger than"), id="huge-body"
    ),
    pytest.param(
        post(BATCH_PATH, event_json(), 400, "invalid-request", "not a single object"), id="object-batch"
    ),
    pytest.param(post(BATCH_PATH, b"[]", 400, "validation-error", "batch cannot be empty"), id="empty-batch"),
    pytest.param(
        post(BATCH_PATH, b"[" + event_json() + b",null]", 400, "validation-error", "event at index 1"),
        id="null-in-batch",
    ),
    pytest.param(get({"limit": 0}, "limit"), id="limit-zero"),
    pytest.param(get({"limit": 1001}, "limit"), id="limit-over-max"),
    pytest.param(get({"limit": "ten"}, "limit"), id="limit-not-number"),
    pytest.param(get({"offset": -1}, "offset"), id="negative-offset"),
    pytest.param(get({"offset": "1.5"}, "offset"), id="fractional-offset"),
    pytest.param(get({"offset": "9" * 30}, "offset"), id="offset-beyond-bigint"),
    pytest.param(get({"event_outcome": "maybe"}, "event_outcome"), id="unknown-outcome"),
    pytest.param(get({"since": "last tuesday"}, "since"), id="bad-since"),
    pytest.param(get({"until": "2026-13-40"}, "until"), id="bad-until"),
    pytest.param(get({"since": "1h", "until": "2h"}, "since is after until"), id="since-after-until"),
    pytest.param(get({"correlation_id": "a\x00b"}, "correlation_id"), id="nul-in-filter"),
    pytest.param(get({"correlation_id": "x" * 256}, "correlation_id"), id="long-filter"),
]


@pytest.mark.parametrize("bad", CASES)
def test_bad_requests_get_a_4xx_problem_with_a_useful_detail(
    ds_client: httpx.Client, bad: BadRequest
) -> None:
    response = ds_client.request(
        bad.method, bad.path, content=bad.body, params=bad.params, headers=bad.headers
    )

    assert_problem(response, bad.status, bad.code, bad.detail)


def test_an_unknown_path_is_a_404_problem(ds_client: httpx.Client) -> None:
    assert_problem(ds_client.get("/api/v1/audit/nothing"), 404, "not-found", "/api/v1/audit/nothing")


def test_an_unsupported_method_is_a_405_problem_listing_the_allowed_ones(ds_client: httpx.Client) -> None:
    response = ds_client.delete(EVENTS_PATH)

    assert_problem(response, 405, "method-not-allowed", "DELETE")
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}


def test_a_refusal_is_counted_once_under_its_field_and_reason(ds_client: httpx.Client) -> None:
    # The worker's DataStorage is shared: read the series before, so earlier refusals do not count.
    labels = {"field": "event_category", "reason": "literal_error"}
    before = counter(ds_client, VALIDATION_FAILURES, **labels)

    response = ds_client.post(EVENTS_PATH, content=event_json(event_category="billing"), headers=JSON)

    assert_problem(response, 400, "validation-error", "event_category")
    assert metric(ds_client, VALIDATION_FAILURES, **labels) == before + 1
