"""The request schema: what a valid audit event is, and the defaults a stored record gets."""

from __future__ import annotations

import uuid
from datetime import date
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
        pytest.param({"actor_ip": "10.0.0.256"}, "actor_ip", id="ipv4-out-of-range"),
        pytest.param({"actor_ip": "host.example"}, "actor_ip", id="hostname-for-ip"),
        pytest.param({"actor_ip": "10.0.0.0/8"}, "actor_ip", id="network-for-ip"),
        pytest.param({"actor_ip": "010.0.0.1"}, "actor_ip", id="ipv4-leading-zero"),
        pytest.param({"actor_ip": "fe80::1%eth0"}, "actor_ip", id="ipv6-zone"),
        pytest.param({"actor_ip": "1" * 46}, "actor_ip", id="ip-longer-than-45"),
        pytest.param({"actor_ip": 167772161}, "actor_ip", id="number-for-ip"),
        pytest.param({"cluster_id": "x" * 256}, "cluster_id", id="long-cluster-id"),
        pytest.param({"cluster_id": "a\x00b"}, "cluster_id", id="nul-in-cluster-id"),
        pytest.param({"cluster_name": "x" * 256}, "cluster_name", id="long-cluster-name"),
        pytest.param(
            {"cluster_id": "east", "cluster_name": "west"}, "cluster_name", id="cluster-name-contradicts"
        ),
        pytest.param({"parent_event_date": "2026-02-30"}, "parent_event_date", id="impossible-parent-date"),
        pytest.param({"parent_event_date": "20260301"}, "parent_event_date", id="basic-format-parent-date"),
        pytest.param(
            {"parent_event_date": "2026-03-01T00:00:00Z"}, "parent_event_date", id="date-time-for-parent-date"
        ),
        pytest.param({"parent_event_date": 20260301}, "parent_event_date", id="number-for-parent-date"),
        pytest.param({"error_code": "x" * 51}, "error_code", id="long-error-code"),
        pytest.param({"error_code": 500}, "error_code", id="number-for-error-code"),
        pytest.param({"error_message": "a\x00b"}, "error_message", id="nul-in-error-message"),
        pytest.param({"error_message": ["failed"]}, "error_message", id="array-for-error-message"),
        pytest.param({"retention_days": 0}, "retention_days", id="retention-zero"),
        pytest.param({"retention_days": 2556}, "retention_days", id="retention-beyond-seven-years"),
        pytest.param({"retention_days": "30"}, "retention_days", id="string-for-retention"),
        pytest.param({"retention_days": 30.5}, "retention_days", id="float-for-retention"),
        pytest.param({"retention_days": True}, "retention_days", id="boolean-for-retention"),
        pytest.param({"is_sensitive": "true"}, "is_sensitive", id="string-for-flag"),
        pytest.param({"is_sensitive": 1}, "is_sensitive", id="number-for-flag"),
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


def test_the_2026_fields_given_are_kept_on_the_record() -> None:
    record = AuditEventRequest.model_validate(
        valid_event(
            actor_type="user",
            actor_id="alice",
            actor_ip="192.0.2.7",
            cluster_id="east",
            parent_event_id=str(uuid.uuid4()),
            parent_event_date="2026-02-28",
            error_code="E42",
            error_message="it failed",
            retention_days=30,
            is_sensitive=True,
        )
    ).to_record()
    assert (record.actor_type, record.actor_id, record.actor_ip) == ("user", "alice", "192.0.2.7")
    assert (record.cluster_id, record.parent_event_date) == ("east", date(2026, 2, 28))
    assert (record.error_code, record.error_message) == ("E42", "it failed")
    assert (record.retention_days, record.is_sensitive) == (30, True)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="absent"),
        pytest.param(
            {
                "actor_ip": None,
                "parent_event_date": None,
                "error_code": None,
                "error_message": None,
                "retention_days": None,
                "is_sensitive": None,
            },
            id="null",
        ),
        pytest.param({"actor_ip": "", "error_code": "", "error_message": ""}, id="empty"),
    ],
)
def test_absent_2026_fields_get_kubernauts_defaults(changes: dict[str, Any]) -> None:
    record = AuditEventRequest.model_validate(valid_event(**changes)).to_record()
    assert (record.actor_ip, record.parent_event_date, record.cluster_id) == (None, None, None)
    assert (record.error_code, record.error_message) == (None, None)
    assert (record.retention_days, record.is_sensitive) == (2555, False)


@pytest.mark.parametrize(
    ("changes", "cluster_id"),
    [
        pytest.param({"cluster_id": ..., "cluster_name": "west"}, "west", id="old-client"),
        pytest.param({"cluster_id": "east", "cluster_name": None}, "east", id="old-key-null"),
        pytest.param({"cluster_id": "east", "cluster_name": "east"}, "east", id="both-agree"),
        pytest.param({"cluster_id": "", "cluster_name": "west"}, "west", id="new-key-empty"),
    ],
)
def test_cluster_name_is_taken_for_cluster_id_from_old_clients(
    changes: dict[str, Any], cluster_id: str
) -> None:
    assert AuditEventRequest.model_validate(valid_event(**changes)).to_record().cluster_id == cluster_id


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param("192.0.2.7", "192.0.2.7", id="ipv4"),
        pytest.param("2001:DB8:0:0:0:0:0:1", "2001:db8::1", id="ipv6-long-form"),
        pytest.param("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", id="ipv6-one-zero-group-kept"),
        pytest.param("1:0:0:2:0:0:0:3", "1:0:0:2::3", id="ipv6-longest-zero-run"),
        pytest.param("::FFFF:102:304", "::ffff:1.2.3.4", id="ipv4-mapped-in-hex"),
        pytest.param("::ffff:0:0", "::ffff:0.0.0.0", id="ipv4-mapped-zero"),
        pytest.param("::102:304", "::1.2.3.4", id="ipv4-compatible"),
        pytest.param("::1:0", "::0.1.0.0", id="ipv4-compatible-low"),
        pytest.param("::2", "::2", id="ipv6-low"),
        pytest.param("::", "::", id="ipv6-unspecified"),
        pytest.param("0000:0000:0000:0000:0000:ffff:255.255.255.255", "::ffff:255.255.255.255", id="longest"),
    ],
)
def test_an_actor_ip_is_kept_in_the_text_postgresql_gives_back(given: str, stored: str) -> None:
    assert AuditEventRequest.model_validate(valid_event(actor_ip=given)).to_record().actor_ip == stored
