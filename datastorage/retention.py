"""Retention: events past their retention are purged, each chain's oldest first, never a case on hold.

Which events may go. An event is kept for the longer of its own
`retention_days` and its category's floor (the `audit_retention_policies`
row, else the configured default); it is past retention once its
`event_date` plus that many days is before the run's day (UTC). The events of
a correlation_id form a hash chain (`datastorage.chain`), which verifies only
while what is left of it is its newer end. So an event may go only when it
and every older event of its chain are past retention and not on legal hold
(`datastorage.legalhold`).

How they go. A run walks the monthly partitions from the oldest, as far as
events can be past retention. A partition whose events may all go, and which
is older than any month an event may still arrive for, is dropped whole;
elsewhere the events that may go are deleted `batch_size` at a time. Within a
partition, an event goes only together with, or after, every older event of
its chain (an event stored late may sit in an older partition than events
before it in its chain: it waits for a later run). Each drop and each batch
is one transaction that holds the purge lock (placing and releasing holds
share it, so neither lands in the middle of a step) and tells each chain it
touched how many events it lost and the hash of the newest
(`chain.record_purge`). Every run is a row of `retention_operations`.

`RetentionPurger` runs `run_retention` every interval in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

import asyncpg

from datastorage.chain import lock_chains, record_purge
from datastorage.config import RetentionSettings
from datastorage.outages import OutageLog
from datastorage.partitions import Month, existing_partitions
from datastorage.timestamps import MAX_AGE, Clock, event_date

log = logging.getLogger(__name__)

# Fixed key: taken exclusively by each purge step, shared by placing and releasing legal holds.
PURGE_LOCK_KEY: Final = 0x44535250
# Dropping a partition locks the whole table, and every insert queues behind the request;
# this bounds that wait. A run that gives up is logged with the error; the next one tries again.
DROP_LOCK_TIMEOUT: Final = "5s"
# Checking or deleting a month of events may take far longer than the pool's per-request timeout.
STATEMENT_TIMEOUT: Final = 3600.0
# Failures that end a run; it is logged with the error and the next interval brings the next run.
_RUN_FAILURES: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _kept_days(alias: str) -> str:
    """SQL: how many days the event `alias` is kept. $2 is the floor of categories without a policy."""
    return (
        f"GREATEST({alias}.retention_days, coalesce((SELECT p.retention_days FROM audit_retention_policies p "
        f"WHERE p.event_category = {alias}.event_category), $2))"
    )


# The parameters of the statements below: $1 the run's day, $2 the default floor, and
# $3 and $4 the first day of the partition walked and of the month after it.
_IN_PARTITION: Final = "e.event_date >= $3 AND e.event_date < $4"
# An event of the partition may go when it is past retention, not on hold, and every older
# event of its chain not purged yet is in this partition, past retention and not on hold: as
# many of them as lie between the purged ones and it. Counting within the partition spares
# looking at any other. (Rows stored before the chain existed belong to no chain: only the
# first two conditions apply to them.)
_MAY_GO: Final = f"""(
    NOT e.legal_hold
    AND e.event_date + {_kept_days("e")} < $1
    AND (e.chain_sequence IS NULL OR e.chain_sequence - 1 = (
        SELECT h.purged_count FROM audit_chain_heads h WHERE h.correlation_id = e.correlation_id
    ) + (
        SELECT count(*) FROM audit_events o
        WHERE o.event_date >= $3 AND o.event_date < $4
          AND o.correlation_id = e.correlation_id AND o.chain_sequence < e.chain_sequence
          AND NOT o.legal_hold AND o.event_date + {_kept_days("o")} < $1
    ))
)"""
# IS NOT TRUE: an event the rule cannot decide for (a chain without a head) keeps its partition.
_ALL_MAY_GO: Final = (
    f"SELECT NOT EXISTS (SELECT 1 FROM audit_events e WHERE {_IN_PARTITION} AND {_MAY_GO} IS NOT TRUE)"
)
# Each chain's in its order: whatever LIMIT cuts off, a chain loses only its oldest events.
_DELETE_BATCH: Final = f"""
WITH doomed AS (
    SELECT e.event_id, e.event_date FROM audit_events e
    WHERE {_IN_PARTITION} AND {_MAY_GO}
    ORDER BY e.correlation_id, e.chain_sequence
    LIMIT $5
)
DELETE FROM audit_events d USING doomed
WHERE d.event_id = doomed.event_id AND d.event_date = doomed.event_date
  AND d.event_date >= $3 AND d.event_date < $4
RETURNING d.correlation_id, d.chain_sequence, d.event_hash
"""
_CHAINS_OF_PARTITION: Final = """
SELECT correlation_id, count(*) AS events,
       (array_agg(event_hash ORDER BY chain_sequence DESC))[1] AS through_hash
FROM audit_events WHERE event_date >= $1 AND event_date < $2 AND chain_sequence IS NOT NULL
GROUP BY correlation_id
"""
_EVENTS_OF_PARTITION: Final = "SELECT count(*) FROM audit_events WHERE event_date >= $1 AND event_date < $2"
# The shortest any event is kept: no event newer than this many days can be past retention.
_SHORTEST_DAYS: Final = "SELECT least($1::integer, min(retention_days)) FROM audit_retention_policies"
_START_RUN: Final = (
    "INSERT INTO retention_operations (run_date, started_at) VALUES ($1, $2) RETURNING operation_id"
)
_FINISH_RUN: Final = """
UPDATE retention_operations SET finished_at = $2, rows_deleted = $3, partitions_dropped = $4, error = $5
WHERE operation_id = $1
"""


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """One purge run, as its row in `retention_operations` says."""

    operation_id: int
    run_date: date
    rows_deleted: int
    partitions_dropped: tuple[str, ...]
    error: str | None


@dataclass(slots=True)
class _Tally:
    """What a run has purged so far: every step it counts has committed."""

    rows_deleted: int = 0
    partitions_dropped: list[str] = field(default_factory=list)


def months_to_walk(partitions: Iterable[str], *, today: date, shortest_days: int) -> list[Month]:
    """The months of `partitions`, oldest first, that may hold events past retention on `today`."""
    horizon = today - timedelta(days=shortest_days)
    months = (Month.of_partition(name) for name in partitions)
    return sorted(month for month in months if month is not None and month.first_day < horizon)


def oldest_open_month(today: date) -> Month:
    """The oldest month an event may still arrive for (7 days back); it and later ones are never dropped,
    or `partitions.PartitionKeeper` would create them again."""
    return Month.of(today - MAX_AGE)


async def run_retention(pool: asyncpg.Pool, *, clock: Clock, settings: RetentionSettings) -> RetentionRun:
    """One run: purges what is past retention on the clock's day and logs it in `retention_operations`.

    A failure ends the run; it is returned with its error, and what it purged before stays purged.
    Raises only when the run cannot even be logged (PostgreSQL unreachable).
    """
    started = clock()
    today = event_date(started)
    async with pool.acquire() as connection:
        operation_id = await connection.fetchval(_START_RUN, today, started)
    tally = _Tally()
    error: str | None = "ended by an unexpected error; see the DataStorage log"
    try:
        async with pool.acquire() as connection:
            await _purge(connection, today=today, settings=settings, tally=tally)
        error = None
    except _RUN_FAILURES as failure:
        error = f"{type(failure).__name__}: {failure}"
    except asyncio.CancelledError:
        error = "stopped: DataStorage shut down"
        raise
    finally:
        # On a fresh connection: after a cancelled query, the run's own is in no state to write.
        await _finish_run(pool, operation_id, clock(), tally, error)
    return RetentionRun(operation_id, today, tally.rows_deleted, tuple(tally.partitions_dropped), error)


async def _finish_run(
    pool: asyncpg.Pool, operation_id: int, finished: datetime, tally: _Tally, error: str | None
) -> None:
    try:
        async with pool.acquire() as connection:
            await connection.execute(
                _FINISH_RUN, operation_id, finished, tally.rows_deleted, tally.partitions_dropped, error
            )
    except _RUN_FAILURES as failure:
        log.warning(
            "cannot log the end of a retention run",
            extra={"operation_id": operation_id, "error": str(failure)},
        )


async def _purge(
    connection: asyncpg.Connection, *, today: date, settings: RetentionSettings, tally: _Tally
) -> None:
    shortest_days = await connection.fetchval(_SHORTEST_DAYS, settings.default_days)
    months = months_to_walk(await existing_partitions(connection), today=today, shortest_days=shortest_days)
    keep_from = oldest_open_month(today)
    for month in months:
        bounds = (today, settings.default_days, month.first_day, month.next().first_day)
        if month < keep_from:
            dropped = await _drop_if_all_may_go(connection, month, bounds)
            if dropped is not None:
                tally.rows_deleted += dropped
                tally.partitions_dropped.append(month.partition_name)
                continue
        while True:
            deleted = await _delete_batch(connection, bounds, settings.batch_size)
            tally.rows_deleted += deleted
            if deleted < settings.batch_size:
                break


async def _drop_if_all_may_go(
    connection: asyncpg.Connection, month: Month, bounds: tuple[date, int, date, date]
) -> int | None:
    """Drops the month's partition if every event in it may go; returns how many went (None: kept)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", PURGE_LOCK_KEY)
        if await connection.fetchval("SELECT to_regclass($1)", month.partition_name) is None:
            return None  # another instance's run dropped it meanwhile
        # SHARE: nothing is written to the partition between the check and the drop; reading goes on.
        await connection.execute(f"LOCK TABLE {month.partition_name} IN SHARE MODE")
        if not await connection.fetchval(_ALL_MAY_GO, *bounds, timeout=STATEMENT_TIMEOUT):
            return None
        events = await connection.fetchval(_EVENTS_OF_PARTITION, *bounds[2:], timeout=STATEMENT_TIMEOUT)
        chains = await connection.fetch(_CHAINS_OF_PARTITION, *bounds[2:], timeout=STATEMENT_TIMEOUT)
        await _record_losses(
            connection, {row["correlation_id"]: (row["events"], row["through_hash"]) for row in chains}
        )
        await connection.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
        await connection.execute(f"DROP TABLE {month.partition_name}", timeout=STATEMENT_TIMEOUT)
    log.info("dropped partition past retention", extra={"partition": month.partition_name, "events": events})
    return int(events)


async def _delete_batch(
    connection: asyncpg.Connection, bounds: tuple[date, int, date, date], batch_size: int
) -> int:
    """Deletes up to `batch_size` events of the partition that may go; returns how many."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", PURGE_LOCK_KEY)
        rows = await connection.fetch(_DELETE_BATCH, *bounds, batch_size, timeout=STATEMENT_TIMEOUT)
        await _record_losses(connection, chain_losses(rows))
    return len(rows)


def chain_losses(deleted: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, str]]:
    """Per chain among deleted rows (`correlation_id`, `chain_sequence`, `event_hash`): how many went
    and the hash of the newest of them. Rows of no chain (no sequence) are left out."""
    newest: dict[str, tuple[int, int, str]] = {}
    for row in deleted:
        sequence = row["chain_sequence"]
        if sequence is None:
            continue
        count, top, through_hash = newest.get(row["correlation_id"], (0, 0, ""))
        if sequence > top:
            top, through_hash = sequence, row["event_hash"]
        newest[row["correlation_id"]] = (count + 1, top, through_hash)
    return {chain: (count, through_hash) for chain, (count, _, through_hash) in newest.items()}


async def _record_losses(connection: asyncpg.Connection, losses: Mapping[str, tuple[int, str]]) -> None:
    """Tells each chain, in this transaction, how many of its oldest events went and the newest one's hash."""
    if not losses:
        return
    await lock_chains(connection, losses)
    for correlation_id, (count, through_hash) in losses.items():
        await record_purge(connection, correlation_id, count=count, through_hash=through_hash)


class RetentionPurger:
    """Runs the purge every `settings.interval` seconds, the first one interval after start, until
    cancelled (at shutdown): a step cut off rolls back whole, and its run is logged as stopped."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Clock, settings: RetentionSettings) -> None:
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._outage = OutageLog(
            log,
            began="retention run failed; retrying next interval",
            ended="retention runs work again",
            attempt="run",
        )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.interval)
            try:
                run = await run_retention(self._pool, clock=self._clock, settings=self._settings)
            except _RUN_FAILURES as failure:
                self._outage.failed(str(failure), retry_seconds=self._settings.interval)
                continue
            if run.error is not None:
                self._outage.failed(run.error, retry_seconds=self._settings.interval)
                continue
            self._outage.succeeded()
            if run.rows_deleted or run.partitions_dropped:
                log.info(
                    "retention run purged events",
                    extra={
                        "operation_id": run.operation_id,
                        "rows_deleted": run.rows_deleted,
                        "partitions_dropped": list(run.partitions_dropped),
                    },
                )
