"""A known event_id is accepted again and never stored twice: singles, batches, and within one batch."""

from __future__ import annotations

import uuid

import httpx

from datastorage.repository import COPY_FROM_ROWS
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    Stack,
    make_event,
    stored_count_by_id,
    total_for,
)


def test_a_repeated_single_event_is_stored_once(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    event = make_event(correlation_id, event_id=str(uuid.uuid4()))

    first = ds_client.post(EVENTS_PATH, json=event)
    again = ds_client.post(EVENTS_PATH, json=event)

    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["event_id"] == again.json()["event_id"] == event["event_id"]
    assert stored_count_by_id(ds_stack.database_url, correlation_id) == {event["event_id"]: 1}


def test_a_batch_sent_twice_is_stored_once(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    batch = [make_event(correlation_id, event_id=str(uuid.uuid4())) for _ in range(5)]

    assert ds_client.post(BATCH_PATH, json=batch).status_code == 201
    assert ds_client.post(BATCH_PATH, json=batch).status_code == 201

    assert stored_count_by_id(ds_stack.database_url, correlation_id) == {e["event_id"]: 1 for e in batch}


def test_a_batch_overlapping_stored_events_adds_only_the_new_ones(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    known = [make_event(correlation_id, event_id=str(uuid.uuid4())) for _ in range(3)]
    ds_client.post(BATCH_PATH, json=known).raise_for_status()
    fresh = [make_event(correlation_id, event_id=str(uuid.uuid4())) for _ in range(2)]

    response = ds_client.post(BATCH_PATH, json=[*known[1:], *fresh])

    assert response.status_code == 201
    assert total_for(ds_client, correlation_id) == 5


def test_one_event_twice_in_a_batch_is_stored_once(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    event = make_event(correlation_id, event_id=str(uuid.uuid4()))

    response = ds_client.post(BATCH_PATH, json=[event, make_event(correlation_id), event])

    assert response.status_code == 201
    assert response.json()["event_ids"][0] == response.json()["event_ids"][2] == event["event_id"]
    counts = stored_count_by_id(ds_stack.database_url, correlation_id)
    assert counts[event["event_id"]] == 1 and len(counts) == 2


def test_a_single_repeat_of_a_batched_event_is_stored_once(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    event = make_event(correlation_id, event_id=str(uuid.uuid4()))
    ds_client.post(BATCH_PATH, json=[event]).raise_for_status()

    assert ds_client.post(EVENTS_PATH, json=event).status_code == 201

    assert stored_count_by_id(ds_stack.database_url, correlation_id) == {event["event_id"]: 1}


def test_a_large_batch_sent_twice_is_stored_once(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    # Large batches take the COPY path; it must be as idempotent as the single-statement one.
    batch = [make_event(correlation_id, event_id=str(uuid.uuid4())) for _ in range(COPY_FROM_ROWS + 10)]

    assert ds_client.post(BATCH_PATH, json=batch).status_code == 201
    assert ds_client.post(BATCH_PATH, json=[*batch[:5], make_event(correlation_id)]).status_code == 201
    assert ds_client.post(BATCH_PATH, json=batch).status_code == 201

    counts = stored_count_by_id(ds_stack.database_url, correlation_id)
    assert len(counts) == COPY_FROM_ROWS + 11 and set(counts.values()) == {1}
