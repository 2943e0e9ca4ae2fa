"""The request schema: what a valid audit event is, and the defaults a stored record gets."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from datastorage.schemas import MAX_EVENT_DATA_DEPTH, AuditEventRequest
from test.integration.datastorage.support import make_event


def valid_event(**changes: Any) -> dict[str, Any]:
    """The event the integration tests send (the Go client's wire format, explicit nulls and all), for
    rr-1 at a fixed instant written with nanoseconds and an offset; `...` as a value removes a key."""
    fixed: dict[str, Any] = {
        "correlation_id": "rr-1",
        "event_timestamp": "2026-03-01T12:00:00.123456789+01:00",
        "event_data": {"phase": "Completed"},
    }
    return make_event(**{**fixed, **changes})


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def test_the_go_client_wire_format_is_accepted() -> None:
    event = AuditEventRequest.model_validate(valid_event())
    assert event.event_timestamp.isoformat() == "2026-03-01T11:00:00.123456+00:00"


def test_unknown_fields_are_ignored() -> None:
    AuditEventRequest.model_validate(valid_event(something_new=1))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"version": ...}, "version", id="missing-required"),
        pytest.param({"event_data": ...}, "event_data", id="missing-event-data"),
        pytest.param({"version": ""}, "version", id="empty-version"),
        pytest.param({"version": "x" * 21}, "version", id="long-version"),
        pytest.param({"event_type": "x" * 101}, "event_type", id="long-type"),
        pytest.param({"event_action": "x" * 51}, "event_action", id="long-action"),
        pytest.param({"correlation_id": "x" * 256}, "correlation_id", id="long-correlation-id"),
        pytest.param({"actor_id": "x" * 256}, "actor_id", id="long-actor-id-would-not-fit-the-column"),
        pytest.param({"namespace": "x" * 254}, "namespace", id="long-namespace"),
        pytest.param({"event_category": "billing"}, "event_category", id="unknown-category"),
        pytest.param({"event_outcome": "maybe"}, "event_outcome", id="unknown-outcome"),
        pytest.param({"event_type": 5}, "event_type", id="number-for-string"),
        pytest.param({"duration_ms": "5"}, "duration_ms", id="string-for-integer"),
        pytest.param({"duration_ms": True}, "duration_ms", id="boolean-for-integer"),
        pytest.param({"duration_ms": 1.5}, "duration_ms", id="float-for-integer"),
        pytest.param({"duration_ms": -1}, "duration_ms", id="negative-duration"),
        pytest.param({"duration_ms": 2**31}, "duration_ms", id="duration-beyond-integer-column"),
        pytest.param({"event_timestamp": 1700000000}, "event_timestamp", id="unix-time"),
        pytest.param(
            {"event_timestamp": "2026-03-01T12:00:00"}, "event_timestamp", id="timestamp-without-offset"
        ),
        pytest.param({"event_data": [1, 2]}, "event_data", id="array-event-data"),
        pytest.param({"event_data": "text"}, "event_data", id="string-event-data"),
        pytest.param({"event_data": None}, "event_data", id="null-event-data"),
        pytest.param({"event_data": {"a": "\x00"}}, "event_data", id="nul-in-event-data"),
        pytest.param({"event_data": {"\x00": 1}}, "event_data", id="nul-in-event-data-key"),
        pytest.param({"event_data": {"a": "\ud800"}}, "event_data", id="lone-surrogate-in-event-data"),
        pytest.param({"event_data": {"a": float("nan")}}, "event_data", id="nan-in-event-data"),
        pytest.param({"event_data": {"a": [float("inf")]}}, "event_data", id="infinity-in-event-data"),
        pytest.param(
            {"event_data": nested(MAX_EVENT_DATA_DEPTH + 1)}, "event_data", id="event-data-too-deep"
        ),
        pytest.param({"event_type": "a\x00b"}, "event_type", id="nul-in-text"),
        pytest.param({"event_id": "not-a-uuid"}, "event_id", id="bad-event-id"),
        pytest.param({"parent_event_id": 7}, "parent_event_id", id="number-parent-id"),
    ],
)
def test_invalid_events_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AuditEventRequest.model_validate(valid_event(**changes))
    assert refused.value.errors()[0]["loc"][0] == field


def test_event_data_as_deep_as_allowed_is_accepted() -> None:
    AuditEventRequest.model_validate(valid_event(event_data=nested(MAX_EVENT_DATA_DEPTH)))


def test_kubernaut_defaults_are_applied_to_the_stored_record() -> None:
    record = AuditEventRequest.model_validate(
        valid_event(namespace="", duration_ms=0, actor_type="", severity=None)
    ).to_record()
    assert (record.actor_type, record.actor_id) == ("service", "signalprocessing-service")
    assert (record.resource_type, record.resource_id) == ("signalprocessing", "rr-1")
    assert record.severity == "info"
    assert record.namespace is None
    assert record.duration_ms is None


def test_a_client_event_id_is_kept_and_a_missing_one_is_generated() -> None:
    chosen = uuid.uuid4()
    kept = AuditEventRequest.model_validate(valid_event(event_id=str(chosen))).to_record()
    generated = AuditEventRequest.model_validate(valid_event()).to_record()
    assert kept.event_id == chosen
    assert generated.event_id.version == 4
