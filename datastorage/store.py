"""The PostgreSQL side of DataStorage: the pool, timeouts, and the meaning of its failures.

`EventStore` is the one place that acquires connections. It bounds every call
with a timeout, creates a missing partition and retries once, writes again
(hashes recomputed) when linking events into their chains met a deadlock or
a serialisation failure, or events stored already (then leaving them out),
and turns driver errors into two domain errors: `StorageUnavailable`
(PostgreSQL cannot be reached or is shutting down: try again later,
meanwhile use the DLQ) and `RecordsRejected` (PostgreSQL refused these rows:
retrying the same rows will not help). The HTTP handlers and the DLQ worker both write through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg

from datastorage.chain import read_heads
from datastorage.errors import DataStorageError, HashKeyUnavailable, StorageUnavailable
from datastorage.hashing import EventHasher, HashKeyMissing
from datastorage.legalhold import LegalHold, ReleasedHold, place_hold, release_hold
from datastorage.metrics import Metrics
from datastorage.partitions import PartitionKeeper
from datastorage.records import AuditRecord
from datastorage.repository import (
    AlreadyStored,
    EventFilter,
    MissingPartition,
    Unhashable,
    chain_events,
    count_unchained,
    event_exists,
    insert_records,
    known_event_ids,
    query_events,
)
from datastorage.verification import ChainReport, ChainVerification

log = logging.getLogger(__name__)

# Failures of reaching PostgreSQL rather than of the rows sent to it.
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    # A pooled connection PostgreSQL went away under, left mid-operation ("cannot switch to state
    # 15; another operation is in progress"): this connection is broken, PostgreSQL may be too.
    asyncpg.InternalClientError,
)


# Attempts at linking a batch into its chains before the write counts as failed (and goes to the DLQ).
_CHAIN_ATTEMPTS: Final = 4
_CHAIN_RETRY_PAUSE: Final = 0.005  # seconds, doubled per attempt
# Another attempt, hashes recomputed, cures these: SQLSTATE 40001 and 40P01.
_CHAIN_CONFLICTS: Final = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


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
    it sets no session state, takes only transaction-scoped locks, never LISTENs, and opens cursors only
    inside transactions, which close them."""


class EventStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        partitions: PartitionKeeper,
        metrics: Metrics,
        timeout: float,
        hasher: EventHasher,
    ) -> None:
        self._pool = pool
        self._partitions = partitions
        self._metrics = metrics
        self._timeout = timeout
        self._hasher = hasher

    async def save(self, records: Sequence[AuditRecord], *, table_label: str = "audit_events") -> int:
        """Stores the records atomically, linked into their chains; returns how many were new (known
        event ids are skipped). Raises RecordsRejected for a number in event_data no double holds."""
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

    async def verify_chain(self, correlation_id: str) -> ChainReport:
        """Checks the chain of `correlation_id` (see `verification`), reading it in one snapshot.

        Raises HashKeyUnavailable when it has keyed events and this instance has no key.
        """
        async with (
            self._translated_errors(),
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            heads = await read_heads(connection, [correlation_id])
            verification = ChainVerification(correlation_id, heads.get(correlation_id), self._hasher)
            try:
                async for record, link in chain_events(connection, correlation_id):
                    verification.check(record, link)
            except HashKeyMissing as error:
                raise HashKeyUnavailable(
                    f"the chain of {correlation_id!r} has events hashed with hmac-sha256 and this "
                    "DataStorage has no hash key (DATASTORAGE_AUDIT_HASH_KEY_FILE): it cannot verify them"
                ) from error
            return verification.finish(unchained_events=await count_unchained(connection, correlation_id))

    async def place_legal_hold(
        self, *, correlation_id: str, reason: str, placed_by: str, placed_at: datetime
    ) -> tuple[LegalHold, bool]:
        """The hold in force on the case, and True when this call placed it (see `legalhold.place_hold`)."""
        async with self._translated_errors(), self._pool.acquire() as connection:
            return await place_hold(
                connection,
                correlation_id=correlation_id,
                reason=reason,
                placed_by=placed_by,
                placed_at=placed_at,
            )

    async def release_legal_hold(
        self, *, correlation_id: str, released_by: str, released_at: datetime
    ) -> ReleasedHold:
        async with self._translated_errors(), self._pool.acquire() as connection:
            return await release_hold(
                connection, correlation_id=correlation_id, released_by=released_by, released_at=released_at
            )

    async def known(self, keys: Sequence[tuple[uuid.UUID, datetime]]) -> set[uuid.UUID]:
        """Those of these events (id, timestamp) that are stored."""
        async with self._translated_errors(), self._pool.acquire() as connection:
            return await known_event_ids(connection, keys)

    async def exists(self, event_id: uuid.UUID) -> bool:
        async with self._translated_errors(), self._pool.acquire() as connection:
            return await event_exists(connection, event_id)

    async def ping(self) -> None:
        async with self._translated_errors(), self._pool.acquire() as connection:
            await connection.fetchval("SELECT 1")

    async def _insert(self, records: Sequence[AuditRecord]) -> int:
        """One write, tried again with fresh hashes after a conflict over the chains, and leaving out
        events stored already once some turn out to be."""
        attempt, pause, leave_out_stored = 1, _CHAIN_RETRY_PAUSE, False
        while True:
            try:
                async with self._pool.acquire() as connection:
                    return await insert_records(
                        connection, records, hasher=self._hasher, leave_out_stored=leave_out_stored
                    )
            except AlreadyStored:
                if attempt == _CHAIN_ATTEMPTS:
                    raise
                leave_out_stored = True
            except _CHAIN_CONFLICTS as conflict:
                if attempt == _CHAIN_ATTEMPTS:
                    raise
                self._metrics.chain_write_retries.labels(reason=conflict.sqlstate).inc()
                log.info("chain write retried", extra={"attempt": attempt, "sqlstate": conflict.sqlstate})
                await asyncio.sleep(pause)
                pause *= 2
            attempt += 1

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
        except Unhashable as error:
            raise RecordsRejected(str(error)) from error
        except AlreadyStored as error:
            raise StorageUnavailable(
                f"concurrent writers of the same events kept colliding: {error}"
            ) from error
        except _UNAVAILABLE as error:
            raise StorageUnavailable(f"PostgreSQL unavailable: {_describe(error)}") from error
        except asyncpg.PostgresError as error:
            raise RecordsRejected(f"PostgreSQL rejected the events: {_describe(error)}") from error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
