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
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Sequence

from datastorage.dlq import DeadLetterQueue
from datastorage.errors import NothingAccepted, QueueUnavailable, StorageUnavailable
from datastorage.metrics import Metrics
from datastorage.outages import OutageLog
from datastorage.records import AuditRecord
from datastorage.store import EventStore, RecordsRejected

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    STORED = "stored"
    QUEUED = "queued"


class AuditIngest:
    def __init__(self, store: EventStore, queue: DeadLetterQueue, metrics: Metrics) -> None:
        self._store = store
        self._queue = queue
        self._metrics = metrics
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
        """Stores or queues all records (never some of them); raises NothingAccepted if neither works."""
        try:
            await self._store.save(records, table_label=table_label)
        except (StorageUnavailable, RecordsRejected) as storage_error:
            if isinstance(storage_error, StorageUnavailable):
                self._postgres_outage.failed(storage_error.detail, events=len(records))
            else:
                self._postgres_outage.succeeded()  # it answered, refusing these rows
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
        self._postgres_outage.succeeded()
        self._refusals.succeeded()
        self._count(records, status="success")
        return Outcome.STORED

    def _count(self, records: Sequence[AuditRecord], *, status: str) -> None:
        for category, count in Counter(record.event_category for record in records).items():
            self._metrics.audit_traces.labels(service=category, status=status).inc(count)
