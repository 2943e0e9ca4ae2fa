"""Bad requests of every kind get a 4xx RFC 7807 answer with a useful detail, never a 5xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from datastorage.api.audit import MAX_DETAIL_VALUE_LENGTH
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    KNOWN_EVENTS_PATH,
    LEGAL_HOLD_PATH,
    VERIFY_CHAIN_PATH,
    assert_problem,
    counter,
    make_event,
    metric,
)

JSON = {"content-type": "application/json"}
NO_SUCH_CASE = "ds-it-bad-input-never-stored"
RELEASED_BY = {"released_by": "legal@example.com"}
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


def hold_json(**changes: Any) -> bytes:
    hold = {
        "correlation_id": NO_SUCH_CASE,
        "reason": "litigation",
        "placed_by": "legal@example.com",
        **changes,
    }
    return json.dumps({key: value for key, value in hold.items() if value is not ...}).encode()


def release(correlation_id: str, params: dict[str, Any], status: int, code: str, detail: str) -> BadRequest:
    path = f"{LEGAL_HOLD_PATH}/{correlation_id}"
    return BadRequest("DELETE", path, status, code, detail, params=params, headers={})


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
        post(
            EVENTS_PATH,
            event_json(actor_ip="10.0.0.256"),
            400,
            "validation-error",
            "actor_ip: Input should be an IPv4 or IPv6 address",
        ),
        id="bad-actor-ip",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(actor_ip="fe80::1%eth0"), 400, "validation-error", "zone"),
        id="actor-ip-with-zone",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(actor_ip="1" * 46), 400, "validation-error", "actor_ip"),
        id="actor-ip-too-long",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(actor_ip=3232235521), 400, "validation-error", "actor_ip"),
        id="number-for-actor-ip",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(cluster_id="x" * 256), 400, "validation-error", "cluster_id"),
        id="cluster-id-too-long",
    ),
    pytest.param(
        post(
            EVENTS_PATH,
            event_json(cluster_id="east", cluster_name="west"),
            400,
            "validation-error",
            "cluster_name: cluster_name is the old name of cluster_id and differs from it",
        ),
        id="cluster-name-contradicts-cluster-id",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(parent_event_date="2026-02-30"), 400, "validation-error", "not a valid"),
        id="impossible-parent-date",
    ),
    pytest.param(
        post(
            EVENTS_PATH,
            event_json(parent_event_date="yesterday"),
            400,
            "validation-error",
            "parent_event_date",
        ),
        id="garbage-parent-date",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(error_code="E" * 51), 400, "validation-error", "error_code"),
        id="error-code-too-long",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(error_message="a\x00b"), 400, "validation-error", "error_message"),
        id="nul-in-error-message",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(retention_days=0), 400, "validation-error", "retention_days"),
        id="retention-zero",
    ),
    pytest.param(
        post(
            EVENTS_PATH,
            event_json(retention_days=2556),
            400,
            "validation-error",
            "less than or equal to 2555",
        ),
        id="retention-beyond-seven-years",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(retention_days="30"), 400, "validation-error", "retention_days"),
        id="string-for-retention",
    ),
    pytest.param(
        post(EVENTS_PATH, event_json(is_sensitive="yes"), 400, "validation-error", "is_sensitive"),
        id="string-for-flag",
    ),
    pytest.param(
        post(BATCH_PATH, event_json(), 400, "invalid-request", "not a single object"), id="object-batch"
    ),
    pytest.param(post(BATCH_PATH, b"[]", 400, "validation-error", "batch cannot be empty"), id="empty-batch"),
    pytest.param(
        post(BATCH_PATH, b"[" + event_json() + b",null]", 400, "validation-error", "event at index 1"),
        id="null-in-batch",
    ),
    pytest.param(
        post(
            BATCH_PATH,
            b"[" + event_json() + b"," + event_json(actor_ip="localhost") + b"]",
            400,
            "validation-error",
            "event at index 1: actor_ip",
        ),
        id="bad-actor-ip-in-batch",
    ),
    pytest.param(
        post(VERIFY_CHAIN_PATH, b"{", 400, "invalid-request", "not valid JSON"), id="verify-broken-json"
    ),
    pytest.param(post(VERIFY_CHAIN_PATH, b"[]", 400, "invalid-request", "JSON object"), id="verify-array"),
    pytest.param(
        post(VERIFY_CHAIN_PATH, b"", 400, "invalid-request", "body is required"), id="verify-empty-body"
    ),
    pytest.param(
        post(
            VERIFY_CHAIN_PATH,
            b'{"correlation_id": "rr-1"}',
            400,
            "invalid-request",
            "Content-Type",
            headers={},
        ),
        id="verify-no-content-type",
    ),
    pytest.param(
        post(VERIFY_CHAIN_PATH, b"{}", 400, "validation-error", "correlation_id: Field required"),
        id="verify-without-correlation-id",
    ),
    pytest.param(
        post(VERIFY_CHAIN_PATH, b'{"correlation_id": ""}', 400, "validation-error", "at least 1 character"),
        id="verify-empty-correlation-id",
    ),
    pytest.param(
        post(
            VERIFY_CHAIN_PATH,
            json.dumps({"correlation_id": "x" * 256}).encode(),
            400,
            "validation-error",
            "at most 255 characters",
        ),
        id="verify-long-correlation-id",
    ),
    pytest.param(
        post(VERIFY_CHAIN_PATH, b'{"correlation_id": 7}', 400, "validation-error", "valid string"),
        id="verify-number-correlation-id",
    ),
    pytest.param(
        post(VERIFY_CHAIN_PATH, b'{"correlation_id": null}', 400, "validation-error", "correlation_id"),
        id="verify-null-correlation-id",
    ),
    pytest.param(
        post(VERIFY_CHAIN_PATH, b'{"correlation_id": "a\\u0000b"}', 400, "validation-error", "NUL"),
        id="verify-nul-in-correlation-id",
    ),
    pytest.param(
        post(KNOWN_EVENTS_PATH, b"{", 400, "invalid-request", "not valid JSON"), id="known-broken-json"
    ),
    pytest.param(
        post(KNOWN_EVENTS_PATH, b'{"events": []}', 400, "validation-error", "at least 1 item"),
        id="known-no-events",
    ),
    pytest.param(
        post(
            KNOWN_EVENTS_PATH,
            json.dumps(
                {
                    "events": [{"event_id": str(uuid.uuid4()), "event_timestamp": "2026-01-01T00:00:00Z"}]
                    * 1001
                }
            ).encode(),
            400,
            "validation-error",
            "at most 1000 items",
        ),
        id="known-too-many-events",
    ),
    pytest.param(
        post(
            KNOWN_EVENTS_PATH,
            b'{"events": [{"event_id": "not-a-uuid", "event_timestamp": "2026-01-01T00:00:00Z"}]}',
            400,
            "validation-error",
            "event_id",
        ),
        id="known-bad-event-id",
    ),
    pytest.param(
        post(
            KNOWN_EVENTS_PATH,
            json.dumps(
                {"events": [{"event_id": str(uuid.uuid4()), "event_timestamp": "yesterday"}]}
            ).encode(),
            400,
            "validation-error",
            "RFC 3339",
        ),
        id="known-bad-timestamp",
    ),
    pytest.param(
        post(
            KNOWN_EVENTS_PATH,
            json.dumps({"events": [{"event_id": str(uuid.uuid4())}]}).encode(),
            400,
            "validation-error",
            "event_timestamp",
        ),
        id="known-without-timestamp",
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
    pytest.param(get({"cluster_id": "x" * 256}, "cluster_id"), id="long-cluster-id"),
    pytest.param(get({"cluster_id": "a\x00b"}, "cluster_id"), id="nul-in-cluster-id"),
    pytest.param(
        get({"detail_value": "Completed"}, "detail_value: needs detail_key"), id="value-without-key"
    ),
    pytest.param(get({"detail_key": "a\x00b"}, "detail_key"), id="nul-in-detail-key"),
    pytest.param(get({"detail_key": "x" * 256}, "detail_key"), id="long-detail-key"),
    pytest.param(
        get({"detail_key": "n", "detail_value": "a\x00b"}, "detail_value"), id="nul-in-detail-value"
    ),
    pytest.param(
        get({"detail_key": "n", "detail_value": "9" * (MAX_DETAIL_VALUE_LENGTH + 1)}, "detail_value"),
        id="long-detail-value",
    ),
    pytest.param(
        post(LEGAL_HOLD_PATH, b"{", 400, "invalid-request", "not valid JSON"), id="hold-broken-json"
    ),
    pytest.param(post(LEGAL_HOLD_PATH, b"[]", 400, "invalid-request", "JSON object"), id="hold-array"),
    pytest.param(
        post(LEGAL_HOLD_PATH, hold_json(reason=...), 400, "validation-error", "reason: Field required"),
        id="hold-without-reason",
    ),
    pytest.param(
        post(
            LEGAL_HOLD_PATH, hold_json(reason=7), 400, "validation-error", "reason: Input should be a valid"
        ),
        id="hold-number-reason",
    ),
    pytest.param(
        post(
            LEGAL_HOLD_PATH, hold_json(placed_by=" "), 400, "validation-error", "placed_by: String must not"
        ),
        id="hold-blank-placed-by",
    ),
    pytest.param(
        post(LEGAL_HOLD_PATH, hold_json(reason="x" * 1001), 400, "validation-error", "at most 1000"),
        id="hold-long-reason",
    ),
    pytest.param(
        post(LEGAL_HOLD_PATH, hold_json(correlation_id="x" * 256), 400, "validation-error", "correlation_id"),
        id="hold-long-correlation-id",
    ),
    pytest.param(
        post(LEGAL_HOLD_PATH, hold_json(reason="a\x00b"), 400, "validation-error", "NUL"),
        id="hold-nul-in-reason",
    ),
    pytest.param(post(LEGAL_HOLD_PATH, hold_json(), 404, "not-found", NO_SUCH_CASE), id="hold-unknown-case"),
    pytest.param(release(NO_SUCH_CASE, {}, 400, "validation-error", "released_by"), id="release-without-who"),
    pytest.param(
        release(NO_SUCH_CASE, {"released_by": "  "}, 400, "validation-error", "released_by"),
        id="release-blank-who",
    ),
    pytest.param(
        release(NO_SUCH_CASE, {"released_by": "x" * 256}, 400, "validation-error", "released_by"),
        id="release-long-who",
    ),
    pytest.param(
        release("x" * 256, RELEASED_BY, 400, "validation-error", "correlation_id"), id="release-long-case"
    ),
    pytest.param(
        release("a%00b", RELEASED_BY, 400, "validation-error", "correlation_id"), id="release-nul-in-case"
    ),
    pytest.param(
        release(NO_SUCH_CASE, RELEASED_BY, 404, "not-found", "no legal hold in force"), id="release-no-hold"
    ),
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


@pytest.mark.parametrize("path", [EVENTS_PATH, BATCH_PATH])
def test_a_body_over_the_limit_sent_without_its_length_is_refused_with_413(
    ds_client: httpx.Client, path: str
) -> None:
    def chunked() -> Iterator[bytes]:  # no Content-Length: the body is counted as it arrives
        for _ in range(11):
            yield b" " * 1024 * 1024

    response = ds_client.post(path, content=chunked(), headers=JSON)

    assert_problem(response, 413, "payload-too-large", "larger than")
