"""A batch that PostgreSQL fails in the middle: queued event by event (202), or refused whole (500).

PostgreSQL fails at a chosen row through a trigger on the test's own
database: either it ends the connection there (as a crash or a failover
would, mid-transaction) or it refuses that row. The batch is one transaction,
so nothing of it is stored; each event becomes its own DLQ entry, so the
retry worker stores the others even when one can never be stored. When the
DLQ cannot take every event, none is queued and the answer is 500; event ids
are stable, so the client's retry stores each event once.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from datastorage.dlq import DEAD_LETTER_STREAM
from datastorage.repository import COPY_FROM_ROWS
from test.integration.datastorage.support import (
    BATCH_PATH,
    CONNECTION_DIES_AT_POISON,
    PARKED_DLQ,
    POISON,
    POISON_REFUSED,
    OpenStack,
    assert_problem,
    dlq_length,
    entry_event_ids,
    execute,
    make_event,
    query,
    stored_count_by_id,
)
from test.integration.polling import eventually


def batch_with_poison(correlation_id: str, size: int, **fields: Any) -> list[dict[str, Any]]:
    """`size` events with client-chosen ids, the one in the middle marked as the poison."""
    events = [
        make_event(correlation_id, event_id=str(uuid.uuid4()), event_action=f"step-{i}", **fields)
        for i in range(size)
    ]
    events[size // 2]["event_action"] = POISON
    return events


@pytest.mark.parametrize("size", [5, COPY_FROM_ROWS], ids=["insert", "copy"])
def test_a_batch_the_database_fails_in_the_middle_of_is_queued_event_by_event_and_nothing_stored(
    stack_on_shared_servers: OpenStack, correlation_id: str, size: int
) -> None:
    with stack_on_shared_servers(dlq=PARKED_DLQ) as stack, stack.client() as client:
        execute(stack.database_url, CONNECTION_DIES_AT_POISON)
        events = batch_with_poison(correlation_id, size)

        response = client.post(BATCH_PATH, json=events)

        assert response.status_code == 202, response.text
        ids = [event["event_id"] for event in events]
        assert response.json() == {
            "status": "accepted",
            "message": f"{size} audit events queued for async processing",
            "event_ids": ids,
        }
        assert entry_event_ids(stack.redis_url) == ids
        assert stored_count_by_id(stack.database_url, correlation_id) == {}


def test_an_event_postgres_always_refuses_does_not_hold_back_the_rest_of_its_batch(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    fields_of_2026 = {
        "actor_ip": "192.0.2.7",
        "cluster_id": "east",
        "parent_event_date": "2026-01-31",
        "error_code": "E1",
        "error_message": "kept through the DLQ",
        "retention_days": 30,
        "is_sensitive": True,
    }
    with stack_on_shared_servers() as stack, stack.client() as client:
        execute(stack.database_url, POISON_REFUSED)
        events = batch_with_poison(correlation_id, 5, **fields_of_2026)
        [poison] = [event["event_id"] for event in events if event["event_action"] == POISON]
        others = [event["event_id"] for event in events if event["event_id"] != poison]

        assert client.post(BATCH_PATH, json=events).status_code == 202

        eventually(
            lambda: dlq_length(stack.redis_url, DEAD_LETTER_STREAM) == 1,
            timeout=30,
            message="the refused event is buried",
        )
        assert dlq_length(stack.redis_url) == 0
        assert entry_event_ids(stack.redis_url, DEAD_LETTER_STREAM) == [poison]
        assert stored_count_by_id(stack.database_url, correlation_id) == dict.fromkeys(others, 1)
        for stored in query(client, correlation_id=correlation_id)["data"]:
            assert {key: stored[key] for key in fields_of_2026} == fields_of_2026


def test_a_batch_the_queue_cannot_take_whole_is_refused_whole_and_a_retry_stores_each_event_once(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    with (
        stack_on_shared_servers(dlq=dataclasses.replace(PARKED_DLQ, max_len=3)) as stack,
        stack.client() as client,
    ):
        execute(stack.database_url, CONNECTION_DIES_AT_POISON)
        events = batch_with_poison(correlation_id, 5)

        refused = client.post(BATCH_PATH, json=events)

        assert_problem(refused, 500, "database-error", "dead-letter queue is full")
        assert dlq_length(stack.redis_url) == 0
        assert stored_count_by_id(stack.database_url, correlation_id) == {}

        execute(stack.database_url, "DROP TRIGGER die_at_poison ON audit_events")
        retried = client.post(BATCH_PATH, json=events)

        assert retried.status_code == 201, retried.text
        assert stored_count_by_id(stack.database_url, correlation_id) == {
            event["event_id"]: 1 for event in events
        }
