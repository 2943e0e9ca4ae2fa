"""Group commit in `AuditIngest.accept_one`, against a store that holds each write until the test lets it go.

The integration tests (`test_ds_group_commit`) prove the answers against PostgreSQL and Redis; these
pin the collector itself: what goes into which write, and that every request is answered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import pytest

from datastorage.dlq import DeadLetterQueue
from datastorage.ingest import AuditIngest, Outcome
from datastorage.metrics import Metrics
from datastorage.records import AuditRecord
from datastorage.store import EventStore


def record(action: str) -> AuditRecord:
    return AuditRecord(
        event_id=uuid.uuid4(),
        version="1.0",
        event_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        event_type="signalprocessing.signal.processed",
        event_category="signalprocessing",
        event_action=action,
        event_outcome="success",
        actor_type="service",
        actor_id="signalprocessing-service",
        actor_ip=None,
        resource_type="signalprocessing",
        resource_id="rr-1",
        correlation_id="rr-1",
        parent_event_id=None,
        parent_event_date=None,
        namespace=None,
        cluster_id=None,
        severity="info",
        duration_ms=None,
        error_code=None,
        error_message=None,
        retention_days=2555,
        is_sensitive=False,
        event_data={},
    )


class HeldStore:
    """Records each write's actions; each write waits until `release()` (or fails with `failure`)."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.failure: Exception | None = None
        self._released = asyncio.Event()

    async def save(self, records: Sequence[AuditRecord], *, table_label: str) -> int:
        self.writes.append([item.event_action for item in records])
        await self._released.wait()
        if self.failure is not None:
            raise self.failure
        return len(records)

    def release(self) -> None:
        self._released.set()


def ingest(store: HeldStore, *, group_max_events: int = 100) -> AuditIngest:
    queue = cast(DeadLetterQueue, None)  # no test here reaches the DLQ
    return AuditIngest(cast(EventStore, store), queue, Metrics(), group_max_events=group_max_events)


async def settle() -> None:
    """Lets every task run until it waits for something only the test can do."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_lone_event_is_written_at_once_and_later_ones_wait_for_the_next_write() -> None:
    store = HeldStore()
    accepting = ingest(store)

    first = asyncio.create_task(accepting.accept_one(record("first")))
    await settle()
    assert store.writes == [["first"]]

    later = [asyncio.create_task(accepting.accept_one(record(f"later-{n}"))) for n in range(3)]
    await settle()
    assert store.writes == [["first"]]

    store.release()
    assert await asyncio.gather(first, *later) == [Outcome.STORED] * 4
    assert store.writes == [["first"], ["later-0", "later-1", "later-2"]]


async def test_a_write_takes_at_most_group_max_events() -> None:
    store = HeldStore()
    accepting = ingest(store, group_max_events=2)

    answers = [asyncio.create_task(accepting.accept_one(record(str(n)))) for n in range(5)]
    await settle()
    store.release()
    await asyncio.gather(*answers)

    assert store.writes == [["0", "1"], ["2", "3"], ["4"]]


async def test_with_group_max_events_1_each_event_is_written_alone_at_once() -> None:
    store = HeldStore()
    accepting = ingest(store, group_max_events=1)

    answers = [asyncio.create_task(accepting.accept_one(record(str(n)))) for n in range(3)]
    await settle()
    assert store.writes == [["0"], ["1"], ["2"]]  # all in flight together, as before group commit

    store.release()
    assert await asyncio.gather(*answers) == [Outcome.STORED] * 3


async def test_an_unexpected_error_fails_each_request_of_its_write_and_the_next_write_goes_on() -> None:
    store = HeldStore()
    accepting = ingest(store)
    first = asyncio.create_task(accepting.accept_one(record("first")))
    await settle()
    group = [asyncio.create_task(accepting.accept_one(record(str(n)))) for n in range(2)]
    await settle()

    store.failure = RuntimeError("a bug")
    store.release()

    for answer in (first, *group):
        with pytest.raises(RuntimeError, match="a bug"):
            await answer
    store.failure = None
    assert await accepting.accept_one(record("next")) is Outcome.STORED
    assert store.writes == [["first"], ["0", "1"], ["next"]]


async def test_a_request_that_goes_away_leaves_the_others_of_its_write_answered() -> None:
    store = HeldStore()
    accepting = ingest(store)
    first = asyncio.create_task(accepting.accept_one(record("first")))
    await settle()
    gone, staying = (asyncio.create_task(accepting.accept_one(record(name))) for name in ("gone", "staying"))
    await settle()

    gone.cancel()
    store.release()

    assert list(await asyncio.gather(first, staying)) == [Outcome.STORED] * 2
    assert gone.cancelled()
    assert store.writes == [["first"], ["gone", "staying"]]


async def test_a_writer_cancelled_with_the_event_loop_leaves_no_request_waiting() -> None:
    store = HeldStore()
    accepting = ingest(store)
    in_flight = asyncio.create_task(accepting.accept_one(record("in-flight")))
    await settle()
    waiting = asyncio.create_task(accepting.accept_one(record("waiting")))
    await settle()
    assert store.writes == [["in-flight"]]

    [writer] = [task for task in asyncio.all_tasks() if task.get_name() == "group-commit"]
    writer.cancel()

    for answer in (in_flight, waiting):
        with pytest.raises(asyncio.CancelledError):
            await answer
