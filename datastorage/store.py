"""The PostgreSQL side of DataStorage: the pool, timeouts, and the meaning of its failures.

`EventStore` is the one place that acquires connections. It bounds every call
with a timeout, creates a missing partition and retries once, and turns
driver errors into two domain errors: `StorageUnavailable` (PostgreSQL cannot
be reached or is shutting down: try again later, meanwhile use the DLQ) and
`RecordsRejected` (PostgreSQL refused these rows: retrying the same rows will
not help). The HTTP handlers and the DLQ worker both write through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import asyncpg

from datastorage.errors import DataStorageError, StorageUnavailable
from datastorage.metrics import Metrics
from datastorage.partitions import PartitionKeeper
from datastorage.records import AuditRecord
from datastorage.repository import (
    EventFilter,
    MissingPartition,
    event_exists,
    insert_records,
    query_events,
)

# Failures of reaching PostgreSQL rather than of the rows sent to it.
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)


class RecordsRejected(DataStorageError):
    """PostgreSQL refused the rows themselves (a constraint, a type); the same rows will fail again."""

    code = "database-error"


async def open_pool(database_url: str, *, max_size: int, command_timeout: float) -> asyncpg.Pool:
    """The pool of PostgreSQL connections; `command_timeout` also bounds connecting.

    No minimum size: asyncpg keeps a minimum by reconnecting in the background,
    and while PostgreSQL is down it logs a traceback for every failed attempt.
    Connections are opened when needed instead (the migrations have proved the
    URL before the pool opens, and the partition check at start opens the
    first), and callers log an outage once (`outages.OutageLog`).
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=0,
        max_size=max_size,
        timeout=command_timeout,
        command_timeout=command_timeout,
        reset=_keep_session,
    )
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset-on-release query, a round trip per request that this service never needs:
    it sets no session state, takes only transaction-scoped locks, and uses neither LISTEN nor cursors."""


class EventStore:
    def __init__(
        self, pool: asyncpg.Pool, *, partitions: PartitionKeeper, metrics: Metrics, timeout: float
    ) -> None:
        self._pool = pool
        self._partitions = partitions
        self._metrics = metrics
        self._timeout = timeout

    async def save(self, records: Sequence[AuditRecord], *, table_label: str = "audit_events") -> int:
        """Stores the records atomically; returns how many were new (known event ids are skipped)."""
        started = time.perf_counter()
        async with self._translated_errors():
            try:
                inserted = await self._insert(records)
            except MissingPartition as missing:
                await self._partitions.ensure_for(missing.days)
                inserted = await self._insert(records)
        self._metrics.write_duration.labels(table=table_label).observe(time.perf_counter() - started)
        return inserted

    async def find_page(
        self, event_filter: EventFilter, *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        async with self._translated_errors(), self._pool.acquire() as connection:
            rows, total = await query_events(connection, event_filter, limit=limit, offset=offset)
        for row in rows:
            row["event_data"] = json.loads(row["event_data"])
        return rows, total

    async def exists(self, event_id: uuid.UUID) -> bool:
        async with self._translated_errors(), self._pool.acquire() as connection:
            return await event_exists(connection, event_id)

    async def ping(self) -> None:
        async with self._translated_errors(), self._pool.acquire() as connection:
            await connection.fetchval("SELECT 1")

    async def _insert(self, records: Sequence[AuditRecord]) -> int:
        async with self._pool.acquire() as connection:
            return await insert_records(connection, records)

    @contextlib.asynccontextmanager
    async def _translated_errors(self) -> AsyncIterator[None]:
        """Bounds the block by the timeout and maps driver errors onto the two domain errors."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except DataStorageError:
            raise
        except TimeoutError as error:
            raise StorageUnavailable("PostgreSQL did not answer in time") from error
        except _UNAVAILABLE as error:
            raise StorageUnavailable(f"PostgreSQL unavailable: {_describe(error)}") from error
        except asyncpg.PostgresError as error:
            raise RecordsRejected(f"PostgreSQL rejected the events: {_describe(error)}") from error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
