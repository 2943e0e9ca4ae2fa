"""Accepting audit events: store them in PostgreSQL, else queue them in the DLQ, else refuse.

This is the decision behind the 201 / 202 / 500 answers of the write
endpoints, kept apart from HTTP. Whatever PostgreSQL fails with, the events go
to the dead-letter queue, from which the retry worker stores them later;
only when the queue cannot take them either is the request refused, so the
client retries. A PostgreSQL outage, and a spell of refusals, are each logged
when they begin and when they end (`outages.OutageLog`), not once per request.

A batch is all or nothing at each step. PostgreSQL stores it in one
transaction, so a failure in the middle stores none of it. The DLQ then takes
every event as an entry of its own (one event PostgreSQL always refuses is
buried alone, the others are stored) in one atomic step: all are queued
(202), or none is and the request is refused (500). Nothing is left half
queued for the client's retry to duplicate; a retry with the same event ids
is stored once in any case.

Single events are written by group commit (`accept_one`): the events that
arrive while a write is in flight wait, and go together in the next write, one
transaction, in arrival order (which is their order in their hash chains).
A lone event is written at once: nothing waits for company. Each request still
gets the answer it would get alone: 201 once the transaction holding its event
has committed; when PostgreSQL is unavailable, each event is queued in the DLQ
as its own entry (202) or refused (500) on its own; when PostgreSQL refuses
a row (which one is unknown), each event is written again alone. Clients that
send one event each at the same time then cost PostgreSQL one transaction per
write, not one per event: each costs four round trips, for which a write
waits, and PostgreSQL's work per statement (`bench.ingest`: single events from
8 clients, about 2.1 times as many a second as with a transaction each).
`group_max_events` 1 turns it off: each event is written alone, at once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Final

from datastorage.dlq import DeadLetterQueue
from datastorage.errors import DataStorageError, NothingAccepted, QueueUnavailable, StorageUnavailable
from datastorage.metrics import Metrics
from datastorage.outages import OutageLog
from datastorage.records import AuditRecord
from datastorage.store import EventStore, RecordsRejected

log = logging.getLogger(__name__)

# The `table` label of the write-duration metric for single events (batches have their own).
SINGLE_EVENTS_TABLE: Final = "audit_events"


class Outcome(enum.Enum):
    STORED = "stored"
    QUEUED = "queued"


# A single event waiting for its write, and the future its request awaits.
_Waiting = tuple[AuditRecord, "asyncio.Future[Outcome]"]


class AuditIngest:
    def __init__(
        self, store: EventStore, queue: DeadLetterQueue, metrics: Metrics, *, group_max_events: int = 100
    ) -> None:
        self._store = store
        self._queue = queue
        self._metrics = metrics
        self._group_max_events = group_max_events
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._postgres_outage = OutageLog(
            log,
            began="PostgreSQL unreachable: events go to the DLQ",
            ended="PostgreSQL takes writes again",
            attempt="write",
        )
        self._refusals = OutageLog(
            log,
            began="events refused: PostgreSQL and the DLQ both failed",
            ended="events accepted again",
            attempt="request",
            level=logging.ERROR,
        )

    async def accept(self, records: Sequence[AuditRecord], *, table_label: str) -> Outcome:
        """Stores or queues all records (never some of them); raises NothingAccepted if neither works.

        Records still being made (`records.PendingRecords`) are made as they are stored; whatever making
        them raises (an invalid event) is raised here, and nothing is stored or queued.
        """
        try:
            await self._store.save(records, table_label=table_label)
        except (StorageUnavailable, RecordsRejected) as storage_error:
            records = list(records)  # those still to be made are made (checked) before any is queued
            self._storage_failed(storage_error, events=len(records))
            return await self._queue_instead(records, storage_error)
        self._stored(records)
        return Outcome.STORED

    async def accept_one(self, record: AuditRecord) -> Outcome:
        """`accept([record])`, with the record written in one transaction with the other single records
        that arrive while a write is in flight (see the module's docstring)."""
        if self._group_max_events == 1:
            return await self.accept([record], table_label=SINGLE_EVENTS_TABLE)
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((record, waiter))
        self._metrics.write_group_waiting.inc()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_groups(), name="group-commit")
        return await waiter

    async def _write_groups(self) -> None:
        """Writes what waits, group after group, until nothing does; the next arrival starts it again."""
        group: list[_Waiting] = []
        try:
            while self._waiting:
                group = self._waiting[: self._group_max_events]
                del self._waiting[: len(group)]
                self._metrics.write_group_waiting.dec(len(group))
                await self._write_group(group)
        except BaseException:
            # Cancelled with the event loop: no request may wait for a writer that is gone.
            for _, waiter in [*group, *self._waiting]:
                waiter.cancel()
            self._metrics.write_group_waiting.dec(len(self._waiting))
            self._waiting.clear()
            raise
        finally:
            # No await since the loop's last check: no arrival can have missed this writer.
            self._writer = None

    async def _write_group(self, group: Sequence[_Waiting]) -> None:
        """Answers each request of the group with the outcome (or error) it would have got alone."""
        records = [record for record, _ in group]
        self._metrics.write_group_events.observe(len(records))
        if len(records) == 1:
            outcomes = [await _outcome(self.accept(records, table_label=SINGLE_EVENTS_TABLE))]
        else:
            try:
                await self._store.save(records, table_label=SINGLE_EVENTS_TABLE)
            except RecordsRejected:
                # PostgreSQL refused some row, and alone the others would have been stored: write each
                # alone, in arrival order, before any later arrival.
                outcomes = [
                    await _outcome(self.accept([record], table_label=SINGLE_EVENTS_TABLE))
                    for record in records
                ]
            except StorageUnavailable as storage_error:
                self._storage_failed(storage_error, events=len(records))
                outcomes = [
                    await _outcome(self._queue_instead([record], storage_error)) for record in records
                ]
            except Exception as error:  # a bug: each request fails with it, as it would have alone
                outcomes = [error] * len(records)
            else:
                self._stored(records)
                outcomes = [Outcome.STORED] * len(records)
        for (_, waiter), outcome in zip(group, outcomes, strict=True):
            if waiter.done():  # its request was cancelled (its client went away)
                continue
            if isinstance(outcome, Outcome):
                waiter.set_result(outcome)
            else:
                waiter.set_exception(outcome)

    def _storage_failed(self, storage_error: DataStorageError, *, events: int) -> None:
        if isinstance(storage_error, StorageUnavailable):
            self._postgres_outage.failed(storage_error.detail, events=events)
        else:
            self._postgres_outage.succeeded()  # it answered, refusing these rows

    async def _queue_instead(
        self, records: Sequence[AuditRecord], storage_error: DataStorageError
    ) -> Outcome:
        """Queues all records in the DLQ after PostgreSQL failed to store them; raises NothingAccepted if
        the DLQ cannot take them either."""
        try:
            await self._queue.enqueue(records, reason=storage_error.detail)
        except QueueUnavailable as queue_error:
            self._refusals.failed(f"{storage_error.detail}; {queue_error.detail}", events=len(records))
            raise NothingAccepted(
                "Failed to write audit events to database and DLQ: "
                f"{storage_error.detail}; {queue_error.detail}"
            ) from queue_error
        self._refusals.succeeded()
        if isinstance(storage_error, RecordsRejected):
            # Not an outage: PostgreSQL refused these very rows, which the DLQ retries and may bury.
            log.warning(
                "PostgreSQL refused the events; queued in the DLQ",
                extra={"events": len(records), "error": storage_error.detail},
            )
        self._count(records, status="dlq_fallback")
        return Outcome.QUEUED

    def _stored(self, records: Sequence[AuditRecord]) -> None:
        self._postgres_outage.succeeded()
        self._refusals.succeeded()
        self._count(records, status="success")

    def _count(self, records: Sequence[AuditRecord], *, status: str) -> None:
        for category, count in Counter(record.event_category for record in records).items():
            self._metrics.audit_traces.labels(service=category, status=status).inc(count)


async def _outcome(accepting: Awaitable[Outcome]) -> Outcome | Exception:
    """The outcome, or the error a request of the group is to answer with."""
    try:
        return await accepting
    except Exception as error:
        return error
