"""SQL for `audit_events`: every statement DataStorage runs against it, parameterised.

Functions take a connection and know nothing of pools, HTTP or Redis. A batch
is written all or nothing and idempotently: `ON CONFLICT DO NOTHING` on the
primary key skips a record whose (event_id, event_date) is already stored.
Small batches go as one `INSERT ... SELECT FROM unnest(<one array per
column>)` statement; large ones by binary COPY into a staging table, then one
`INSERT ... SELECT`, in one transaction. Errors come out as asyncpg's, except
`MissingPartition`, which the caller can cure by creating partitions.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import asyncpg

from datastorage.records import AuditRecord
from datastorage.timestamps import event_date

# Each written column with the PostgreSQL type of the array that carries it:
# asyncpg sends one typed array per column, and unnest turns them back into rows.
_WRITTEN_COLUMNS: Final = (
    ("event_id", "uuid"),
    ("event_version", "text"),
    ("event_timestamp", "timestamptz"),
    ("event_date", "date"),
    ("event_type", "text"),
    ("event_category", "text"),
    ("event_action", "text"),
    ("event_outcome", "text"),
    ("actor_type", "text"),
    ("actor_id", "text"),
    ("resource_type", "text"),
    ("resource_id", "text"),
    ("correlation_id", "text"),
    ("parent_event_id", "uuid"),
    ("namespace", "text"),
    ("cluster_name", "text"),
    ("event_data", "text"),
    ("severity", "text"),
    ("duration_ms", "integer"),
)
STORED_COLUMNS: Final = tuple(column for column, _ in _WRITTEN_COLUMNS)
_INSERT_ROWS: Final = (
    f"INSERT INTO audit_events ({', '.join(STORED_COLUMNS)}) "
    f"SELECT {', '.join(f'{c}::jsonb' if c == 'event_data' else c for c in STORED_COLUMNS)} "
    f"FROM unnest({', '.join(f'${i}::{t}[]' for i, (_, t) in enumerate(_WRITTEN_COLUMNS, 1))}) "
    f"AS incoming ({', '.join(STORED_COLUMNS)}) "
    "ON CONFLICT (event_id, event_date) DO NOTHING"
)

# From this many rows on, a batch goes by binary COPY into a staging table and
# one INSERT ... SELECT (five round trips, but cheaper per row than arrays);
# smaller ones by the single INSERT above (one round trip). Measured with
# bench.ingest: COPY wins for batches of 1000, the single INSERT for small ones.
COPY_FROM_ROWS: Final = 500
_STAGING_TABLE: Final = "audit_events_incoming"
# Private to the connection and emptied by every commit; created on first use.
_CREATE_STAGING: Final = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING_TABLE} (LIKE audit_events) ON COMMIT DELETE ROWS"
)
_MOVE_STAGED: Final = (
    f"INSERT INTO audit_events ({', '.join(STORED_COLUMNS)}) "
    f"SELECT {', '.join(STORED_COLUMNS)} FROM {_STAGING_TABLE} "
    "ON CONFLICT (event_id, event_date) DO NOTHING"
)

# Keys and types as in kubernaut's query responses: unset text is '', unset
# duration 0, so clients that decode into non-null fields keep working.
_SELECT_STORED: Final = """
SELECT
    event_id, event_timestamp, event_date, event_version AS version, event_type, event_category,
    event_action, event_outcome, correlation_id, parent_event_id, parent_event_date, actor_type,
    actor_id, resource_type, resource_id, coalesce(namespace, '') AS namespace,
    coalesce(cluster_name, '') AS cluster_name, coalesce(severity, '') AS severity,
    coalesce(duration_ms, 0) AS duration_ms, coalesce(error_code, '') AS error_code,
    coalesce(error_message, '') AS error_message, coalesce(retention_days, 0) AS retention_days,
    coalesce(is_sensitive, false) AS is_sensitive, event_data
FROM audit_events
"""

_NO_PARTITION: Final = re.compile(r"no partition of relation .* found for row")


class MissingPartition(Exception):
    """A record's `event_date` has no partition yet; `days` are the dates of the batch."""

    def __init__(self, days: set[date]) -> None:
        super().__init__(f"no partition for {sorted(days)}")
        self.days = days


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Exact-match filters (None means any) and an inclusive time range on `event_timestamp`."""

    event_type: str | None = None
    event_category: str | None = None
    event_outcome: str | None = None
    severity: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def insert_records(connection: asyncpg.Connection, records: Sequence[AuditRecord]) -> int:
    """Stores the records atomically; returns how many were new (repeats are skipped)."""
    if not records:
        return 0
    try:
        if len(records) < COPY_FROM_ROWS:
            columns = zip(*(row_values(record) for record in records), strict=True)
            status = await connection.execute(_INSERT_ROWS, *(list(column) for column in columns))
        else:
            async with connection.transaction():
                await connection.execute(_CREATE_STAGING)
                await connection.copy_records_to_table(
                    _STAGING_TABLE, records=[row_values(record) for record in records], columns=STORED_COLUMNS
                )
                status = await connection.execute(_MOVE_STAGED)
    except asyncpg.CheckViolationError as error:
        if _NO_PARTITION.search(str(error)):
            raise MissingPartition({record.event_date for record in records}) from error
        raise
    return int(status.rsplit(" ", 1)[-1])


def row_values(record: AuditRecord) -> tuple[Any, ...]:
    """The record as a row of `STORED_COLUMNS` (also the form asyncpg's COPY takes)."""
    return (
        record.event_id,
        record.version,
        record.event_timestamp,
        event_date(record.event_timestamp),
        record.event_type,
        record.event_category,
        record.event_action,
        record.event_outcome,
        record.actor_type,
        record.actor_id,
        record.resource_type,
        record.resource_id,
        record.correlation_id,
        record.parent_event_id,
        record.namespace,
        record.cluster_name,
        record.event_data_json(),
        record.severity,
        record.duration_ms,
    )


async def event_exists(connection: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    return bool(
        await connection.fetchval("SELECT EXISTS (SELECT 1 FROM audit_events WHERE event_id = $1)", event_id)
    )


async def query_events(
    connection: asyncpg.Connection, event_filter: EventFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page, newest first, and the total matching; both read from one snapshot."""
    where, arguments = _where(event_filter)
    page_sql = (
        f"{_SELECT_STORED} {where} ORDER BY event_timestamp DESC, event_id DESC "
        f"LIMIT ${len(arguments) + 1} OFFSET ${len(arguments) + 2}"
    )
    count_sql = f"SELECT count(*) FROM audit_events {where}"
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        rows = await connection.fetch(page_sql, *arguments, limit, offset)
        total = await connection.fetchval(count_sql, *arguments)
    return [dict(row) for row in rows], int(total)


def _where(event_filter: EventFilter) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    arguments: list[Any] = []

    def add(condition: str, value: Any) -> None:
        arguments.append(value)
        conditions.append(condition.format(f"${len(arguments)}"))

    for column in ("event_type", "event_category", "event_outcome", "severity", "correlation_id"):
        value = getattr(event_filter, column)
        if value is not None:
            add(f"{column} = {{}}", value)
    if event_filter.since is not None:
        add("event_timestamp >= {}", event_filter.since)
        # The same bound on the partition key lets PostgreSQL skip whole months.
        add("event_date >= {}", event_date(event_filter.since))
    if event_filter.until is not None:
        add("event_timestamp <= {}", event_filter.until)
        add("event_date <= {}", event_date(event_filter.until))
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), arguments
