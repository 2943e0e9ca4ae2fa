"""Group commit: single events that arrive while a write is in flight are written together, next.

Each test holds a write in flight on purpose: it holds the chain lock of the
first event it sends, as another writer would, so that write waits in
PostgreSQL; the events it sends then wait in DataStorage, one after another
(the test sends the next once the waiting gauge counts the one before, so
their arrival order is the order sent). Releasing the lock lets the write go
on, and the waiting events follow in one transaction (one `xmin`). Every
request must get the answer it would get alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

import asyncpg
import httpx

from datastorage.chain import chain_lock_key
from test.integration.datastorage.support import (
    CONNECTION_DIES_AT_POISON,
    EVENTS_PATH,
    PARKED_DLQ,
    PATIENT_DB_TIMEOUT,
    POISON,
    POISON_REFUSED,
    OpenStack,
    Stack,
    assert_problem,
    entry_event_ids,
    execute,
    make_event,
    metric,
    seconds_ago,
    sql,
    stored_count_by_id,
    waits_for_advisory_lock,
)
from test.integration.polling import eventually

WAITING: Final = "datastorage_write_group_waiting_events"
# Stored rows of a chain in chain order, with the transaction that wrote each.
STORED_ROWS: Final = """
SELECT event_id::text AS event_id, event_action, chain_sequence, previous_event_hash, event_hash,
       xmin::text AS transaction
FROM audit_events WHERE correlation_id = $1 ORDER BY chain_sequence
"""

# The write held in flight must outlast the slowest machine: timed out, it would go to the DLQ and
# take the waiting events with it before the test has sent them all.
HELD_WRITE_TIMEOUT: Final = PATIENT_DB_TIMEOUT

Send = Callable[[dict[str, Any]], "concurrent.futures.Future[httpx.Response]"]


@contextlib.contextmanager
def write_in_flight(stack: Stack, first: dict[str, Any]) -> Iterator[Send]:
    """Posts `first`, whose write then waits for its chain's lock, held here; yields `send`, which
    posts an event and returns once DataStorage counts it as waiting for the next write. The lock is
    released when the block ends; the answers are the futures' results."""
    with (
        asyncio.Runner() as runner,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
        stack.client() as probe,
    ):
        holder = runner.run(asyncpg.connect(stack.database_url))
        try:
            runner.run(holder.execute("BEGIN"))
            key = chain_lock_key(first["correlation_id"])
            runner.run(holder.execute("SELECT pg_advisory_xact_lock($1)", key))
            pool.submit(post, stack, first)
            eventually(
                lambda: waits_for_advisory_lock(stack.database_url, key),
                message="the first event's write waits for its chain's lock",
            )
            waiting = 0

            def send(event: dict[str, Any]) -> concurrent.futures.Future[httpx.Response]:
                nonlocal waiting
                answer = pool.submit(post, stack, event)
                waiting += 1
                eventually(lambda: metric(probe, WAITING) == waiting, message=f"{waiting} events wait")
                return answer

            yield send
        finally:
            runner.run(holder.execute("COMMIT"))
            runner.run(holder.close())


def post(stack: Stack, event: dict[str, Any]) -> httpx.Response:
    with stack.client() as client:
        return client.post(EVENTS_PATH, json=event)


def stored_rows(database_url: str, correlation_id: str) -> list[dict[str, Any]]:
    return sql(database_url, STORED_ROWS, correlation_id)


def assert_one_chain(rows: list[dict[str, Any]]) -> None:
    assert [row["chain_sequence"] for row in rows] == list(range(1, len(rows) + 1))
    assert [row["previous_event_hash"] for row in rows] == ["", *(row["event_hash"] for row in rows[:-1])]


def event(correlation_id: str, action: str, **changes: Any) -> dict[str, Any]:
    return make_event(correlation_id, event_id=str(uuid.uuid4()), event_action=action, **changes)


def test_events_sent_during_a_write_are_stored_next_in_one_transaction_in_arrival_order(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    with stack_on_shared_servers(db_timeout=HELD_WRITE_TIMEOUT) as ds_stack:
        # Arrival order is neither timestamp order nor id order: the chain must follow arrival.
        first = event(correlation_id, "first")
        later = [event(correlation_id, f"later-{n}", at=seconds_ago(10 + n)) for n in range(4)]

        with write_in_flight(ds_stack, first) as send:
            answers = [send(item) for item in later]
            assert not any(answer.done() for answer in answers)

        assert [answer.result().status_code for answer in answers] == [201] * 4
        assert [answer.result().json()["event_id"] for answer in answers] == [
            item["event_id"] for item in later
        ]
        rows = stored_rows(ds_stack.database_url, correlation_id)
        assert [row["event_action"] for row in rows] == ["first", "later-0", "later-1", "later-2", "later-3"]
        assert_one_chain(rows)
        assert len({row["transaction"] for row in rows[1:]}) == 1
        assert rows[0]["transaction"] != rows[1]["transaction"]


def test_an_invalid_event_is_refused_at_once_and_never_fails_the_group_it_would_join(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    with stack_on_shared_servers(db_timeout=HELD_WRITE_TIMEOUT) as ds_stack:
        with write_in_flight(ds_stack, event(correlation_id, "first")) as send, ds_stack.client() as client:
            before = send(event(correlation_id, "before"))
            invalid = client.post(EVENTS_PATH, json=event(correlation_id, "invalid", event_outcome="maybe"))
            assert_problem(invalid, 400, "validation-error", "event_outcome")
            after = send(event(correlation_id, "after"))

        assert (before.result().status_code, after.result().status_code) == (201, 201)
        rows = stored_rows(ds_stack.database_url, correlation_id)
        assert [row["event_action"] for row in rows] == ["first", "before", "after"]
        assert rows[1]["transaction"] == rows[2]["transaction"]


def test_repeated_event_ids_in_a_group_are_stored_and_linked_once(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    with stack_on_shared_servers(db_timeout=HELD_WRITE_TIMEOUT) as ds_stack:
        stored_before = event(correlation_id, "stored-before")
        assert post(ds_stack, stored_before).status_code == 201
        repeated = event(correlation_id, "repeated")

        with write_in_flight(ds_stack, event(correlation_id, "first")) as send:
            answers = [
                send(item) for item in (repeated, repeated, stored_before, event(correlation_id, "new"))
            ]

        assert [answer.result().status_code for answer in answers] == [201] * 4
        rows = stored_rows(ds_stack.database_url, correlation_id)
        assert [row["event_action"] for row in rows] == ["stored-before", "first", "repeated", "new"]
        assert_one_chain(rows)
        assert set(stored_count_by_id(ds_stack.database_url, correlation_id).values()) == {1}


def test_a_row_postgres_refuses_in_a_group_is_queued_alone_and_the_others_are_stored(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    with stack_on_shared_servers(dlq=PARKED_DLQ, db_timeout=HELD_WRITE_TIMEOUT) as stack:
        execute(stack.database_url, POISON_REFUSED)
        group = [
            event(correlation_id, "before"),
            event(correlation_id, POISON),
            event(correlation_id, "after"),
        ]

        with write_in_flight(stack, event(correlation_id, "first")) as send:
            answers = [send(item) for item in group]

        # What each would have got alone: stored, or queued for the retry worker to bury.
        assert [answer.result().status_code for answer in answers] == [201, 202, 201]
        rows = stored_rows(stack.database_url, correlation_id)
        assert [row["event_action"] for row in rows] == ["first", "before", "after"]
        assert_one_chain(rows)
        assert entry_event_ids(stack.redis_url) == [group[1]["event_id"]]


def test_a_group_postgres_fails_is_queued_event_by_event_each_as_it_would_be_alone(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    # Room for two entries: each event is queued, or refused, on its own.
    with stack_on_shared_servers(
        dlq=dataclasses.replace(PARKED_DLQ, max_len=2), db_timeout=HELD_WRITE_TIMEOUT
    ) as stack:
        execute(stack.database_url, CONNECTION_DIES_AT_POISON)
        group = [
            event(correlation_id, "before"),
            event(correlation_id, POISON),
            event(correlation_id, "after"),
        ]

        with write_in_flight(stack, event(correlation_id, "first")) as send:
            answers = [send(item) for item in group]

        assert [answer.result().status_code for answer in answers[:2]] == [202, 202]
        assert_problem(answers[2].result(), 500, "database-error", "dead-letter queue is full")
        assert entry_event_ids(stack.redis_url) == [group[0]["event_id"], group[1]["event_id"]]
        assert [row["event_action"] for row in stored_rows(stack.database_url, correlation_id)] == ["first"]
