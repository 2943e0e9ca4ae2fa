"""Monthly partitions of `audit_events`, created before any event needs them.

The table is range-partitioned on `event_date` (the event's UTC day). A
`PartitionKeeper` creates the partitions from the month of the oldest
acceptable event (7 days back) to a few months ahead, at start and then
periodically, reading time from the injected clock. The repository also asks
it for the exact months of a batch that hit a missing partition (events
replayed from the dead-letter queue can be older than the window). Month
arithmetic and names are pure functions.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import asyncpg

from datastorage.metrics import Metrics
from datastorage.outages import OutageLog
from datastorage.timestamps import MAX_AGE, Clock

log = logging.getLogger(__name__)

PARENT_TABLE: Final = "audit_events"
# Fixed key: serialises partition creation among DataStorage instances.
PARTITION_LOCK_KEY: Final = 0x44535054
_PARTITION_NAME: Final = re.compile(rf"{PARENT_TABLE}_(\d{{4}})_(\d{{2}})")


@dataclass(frozen=True, order=True, slots=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def of_partition(cls, name: str) -> Month | None:
        """The month of a partition named as `partition_name` names it; None for any other name."""
        match = _PARTITION_NAME.fullmatch(name)
        if match is None or not 1 <= int(match.group(2)) <= 12:
            return None
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    @property
    def partition_name(self) -> str:
        return f"{PARENT_TABLE}_{self.year:04d}_{self.month:02d}"


def months_to_cover(now: datetime, *, months_ahead: int) -> list[Month]:
    """The month of the oldest acceptable event (now - 7 days) through `months_ahead` months after now's."""
    first = Month.of((now - MAX_AGE).date())
    last = Month.of(now.date())
    for _ in range(months_ahead):
        last = last.next()
    months = [first]
    while months[-1] < last:
        months.append(months[-1].next())
    return months


def partition_ddl(month: Month) -> str:
    # Only integers and dates go into this text; nothing from a client.
    return (
        f"CREATE TABLE IF NOT EXISTS {month.partition_name} PARTITION OF {PARENT_TABLE} "
        f"FOR VALUES FROM ('{month.first_day.isoformat()}') TO ('{month.next().first_day.isoformat()}')"
    )


async def existing_partitions(connection: asyncpg.Connection) -> set[str]:
    rows = await connection.fetch(
        """
        SELECT child.relname
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = $1::regclass
        """,
        PARENT_TABLE,
    )
    return {row["relname"] for row in rows}


async def ensure_partitions(connection: asyncpg.Connection, months: Iterable[Month]) -> list[str]:
    """Creates the missing partitions among `months`; returns the names it created."""
    wanted = sorted(set(months))
    if wanted and {month.partition_name for month in wanted} <= await existing_partitions(connection):
        return []
    created = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
        present = await existing_partitions(connection)
        for month in wanted:
            if month.partition_name not in present:
                await connection.execute(partition_ddl(month))
                created.append(month.partition_name)
    return created


class PartitionKeeper:
    """Keeps partitions ahead of the clock: once at start, then every `interval` seconds."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock,
        months_ahead: int,
        interval: float,
        metrics: Metrics,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._months_ahead = months_ahead
        self._interval = interval
        self._metrics = metrics
        self._outage = OutageLog(
            log,
            began="partition check failed; retrying",
            ended="partition check works again",
            attempt="check",
        )

    async def ensure_current(self) -> list[str]:
        return await self._ensure(months_to_cover(self._clock(), months_ahead=self._months_ahead))

    async def ensure_for(self, days: Iterable[date]) -> list[str]:
        return await self._ensure(Month.of(day) for day in days)

    async def run(self) -> None:
        """Runs until cancelled; failed rounds (PostgreSQL down) are retried next round, logged once."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.ensure_current()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                self._outage.failed(str(error), retry_seconds=self._interval)
            else:
                self._outage.succeeded()

    async def _ensure(self, months: Iterable[Month]) -> list[str]:
        async with self._pool.acquire() as connection:
            created = await ensure_partitions(connection, months)
        for name in created:
            log.info("created partition", extra={"partition": name})
            self._metrics.partitions_created.inc()
        return created
