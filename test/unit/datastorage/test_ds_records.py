"""The stored record and its dead-letter payload: a lossless round trip, and refusals naming the key."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from datastorage.records import AuditRecord, PendingRecords
from datastorage.schemas import AuditEventRequest


def record() -> AuditRecord:
    return AuditRecord(
        event_id=uuid.uuid4(),
        version="1.0",
        event_timestamp=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        event_type="signalprocessing.signal.processed",
        event_category="signalprocessing",
        event_action="processed",
        event_outcome="success",
        actor_type="service",
        actor_id="signalprocessing-service",
        actor_ip="2001:db8::7",
        resource_type="signalprocessing",
        resource_id="rr-1",
        correlation_id="rr-1",
        parent_event_id=uuid.uuid4(),
        parent_event_date=date(2026, 2, 28),
        namespace=None,
        cluster_id="east",
        severity="info",
        duration_ms=12,
        error_code="E42",
        error_message="it failed",
        retention_days=30,
        is_sensitive=True,
        event_data={"nested": {"list": [1, "two", None]}},
    )


def test_a_record_survives_the_dead_letter_queue_unchanged() -> None:
    original = record()
    assert AuditRecord.from_payload(original.to_payload()) == original


def test_a_record_made_from_a_request_survives_the_dead_letter_queue() -> None:
    request = AuditEventRequest.model_validate(
        {
            "version": "1.0",
            "event_type": "signalprocessing.signal.processed",
            "event_timestamp": "2026-03-01T12:00:00Z",
            "event_category": "signalprocessing",
            "event_action": "processed",
            "event_outcome": "success",
            "correlation_id": "rr-1",
            "event_data": {"text": "Grüße", "n": [1, 2.5]},
        }
    )
    original = request.to_record()
    payload = json.loads(json.dumps(original.to_payload()))

    restored = AuditRecord.from_payload(payload)

    assert restored == original
    assert restored.event_data_json() == original.event_data_json() == '{"n":[1,2.5],"text":"Grüße"}'


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("event_id", "nope", id="bad-id"),
        pytest.param("event_timestamp", "yesterday", id="bad-time"),
        pytest.param("event_data", [1], id="array-data"),
        pytest.param("duration_ms", "12", id="string-duration"),
        pytest.param("severity", None, id="null-required-text"),
        pytest.param("parent_event_date", "2026-02-30", id="bad-parent-date"),
        pytest.param("retention_days", "30", id="string-retention"),
        pytest.param("is_sensitive", "yes", id="string-flag"),
    ],
)
def test_a_damaged_payload_is_refused(key: str, value: Any) -> None:
    payload = record().to_payload()
    payload[key] = value
    with pytest.raises(ValueError):
        AuditRecord.from_payload(payload)


def test_a_payload_missing_a_key_names_it() -> None:
    payload = record().to_payload()
    del payload["correlation_id"]
    with pytest.raises(ValueError, match="correlation_id"):
        AuditRecord.from_payload(payload)


def test_a_payload_queued_before_the_2026_fields_gets_cluster_id_and_the_defaults() -> None:
    current = record()
    payload = current.to_payload()
    for key in (
        "actor_ip",
        "parent_event_date",
        "error_code",
        "error_message",
        "retention_days",
        "is_sensitive",
    ):
        del payload[key]
    payload["cluster_name"] = payload.pop("cluster_id")

    restored = AuditRecord.from_payload(payload)

    assert restored == dataclasses.replace(
        current,
        actor_ip=None,
        parent_event_date=None,
        error_code=None,
        error_message=None,
        retention_days=2555,
        is_sensitive=False,
    )


def pending(chunks: list[list[AuditRecord] | Exception], made: list[int]) -> PendingRecords:
    """Records made a chunk at a time as read (`made` counts the chunks made); an Exception item is
    raised when its chunk is reached."""

    def make() -> Iterator[list[AuditRecord]]:
        for chunk in chunks:
            made.append(1)
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    count = sum(len(chunk) for chunk in chunks if isinstance(chunk, list))
    return PendingRecords(count, {"rr-1"}, make())


def test_pending_records_are_made_a_chunk_at_a_time_as_they_are_read() -> None:
    first, second = [record(), record()], [record()]
    made: list[int] = []
    records = pending([first, second], made)

    chunks = records.chunks()
    assert (len(records), records.correlation_ids, made) == (3, frozenset({"rr-1"}), [])
    assert next(chunks) == first
    assert made == [1]
    assert list(records) == [*first, *second]
    # Read again: what was made, in one chunk.
    assert list(records.chunks()) == [[*first, *second]]
    assert made == [1, 1]


def test_a_pending_record_that_cannot_be_made_fails_every_read_past_it() -> None:
    made: list[int] = []
    records = pending([[record()], ValueError("event at index 1 is invalid"), [record()]], made)

    chunks = records.chunks()
    next(chunks)
    with pytest.raises(ValueError, match="index 1"):
        next(chunks)
    with pytest.raises(ValueError, match="index 1"):
        records.all()
    with pytest.raises(ValueError, match="index 1"):
        list(records.chunks())
    assert made == [1, 1]


def test_records_already_made_are_pending_records_with_their_correlation_ids() -> None:
    made = [record(), dataclasses.replace(record(), correlation_id="rr-2")]

    records = PendingRecords.of(made)

    assert PendingRecords.of(records) is records
    assert (len(records), records.correlation_ids) == (2, frozenset({"rr-1", "rr-2"}))
    assert list(records.chunks()) == [made]
