"""SQL for `audit_events`: every statement DataStorage runs against it, parameterised.

Functions take a connection and know nothing of pools, HTTP or Redis. A batch
is written all or nothing and idempotently, in one transaction: the chains
of its correlation_ids are locked (`chain`), events already stored (same
event_id and event_date) are left out, and each new one is linked to the end
of its chain before it is written. Small batches go as one `INSERT ...
SELECT FROM unnest(<one array per column>)` statement; large ones by binary
COPY. Errors come out as asyncpg's, except `MissingPartition`, which the
caller can cure by creating partitions, and `AlreadyStored`, which another
attempt cures.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, Final

import asyncpg

from datastorage.chain import (
    ChainLink,
    ChainLinker,
    head_arguments,
    locked_transaction,
    read_heads,
    write_heads_sql,
)
from datastorage.hashing import EventHasher, canonical_bytes
from datastorage.records import AuditRecord, PendingRecords
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
    ("actor_ip", "inet"),
    ("resource_type", "text"),
    ("resource_id", "text"),
    ("correlation_id", "text"),
    ("parent_event_id", "uuid"),
    ("parent_event_date", "date"),
    ("namespace", "text"),
    ("cluster_id", "text"),
    ("event_data", "text"),
    ("severity", "text"),
    ("duration_ms", "integer"),
    ("error_code", "text"),
    ("error_message", "text"),
    ("retention_days", "integer"),
    ("is_sensitive", "boolean"),
)
STORED_COLUMNS: Final = tuple(column for column, _ in _WRITTEN_COLUMNS)
# A new row's place in its chain, in `ChainLink`'s order.
_CHAIN_COLUMNS: Final = (
    ("chain_sequence", "bigint"),
    ("previous_event_hash", "text"),
    ("event_hash", "text"),
    ("hash_algorithm", "text"),
)
_LINKED_COLUMNS: Final = (*_WRITTEN_COLUMNS, *_CHAIN_COLUMNS)
_INSERTED_COLUMNS: Final = tuple(column for column, _ in _LINKED_COLUMNS)
_INSERT_ROWS: Final = (
    f"INSERT INTO audit_events ({', '.join(_INSERTED_COLUMNS)}) "
    f"SELECT {', '.join(f'{c}::jsonb' if c == 'event_data' else c for c in _INSERTED_COLUMNS)} "
    f"FROM unnest({', '.join(f'${i}::{t}[]' for i, (_, t) in enumerate(_LINKED_COLUMNS, 1))}) "
    f"AS incoming ({', '.join(_INSERTED_COLUMNS)})"
)
# The rows and the heads they move forward, in one statement. No ON CONFLICT: an event stored
# already fails the statement with a unique violation (see `insert_records`), and ON CONFLICT cost
# a write of a few single events a tenth of its time in PostgreSQL (bench.ingest).
_INSERT_ROWS_AND_HEADS: Final = (
    f"WITH inserted AS ({_INSERT_ROWS}) {write_heads_sql(len(_LINKED_COLUMNS) + 1)}"
)
_STORED_KEYS: Final = (
    "SELECT event_id, event_date FROM audit_events "
    "WHERE event_id = ANY($1::uuid[]) AND event_date = ANY($2::date[])"
)

# From this many rows on, a batch goes by binary COPY straight into the table, and the heads by a
# statement of their own (two round trips, but cheaper per row than arrays); smaller ones by the single
# INSERT above (one round trip), which writes the heads too. Measured with bench.ingest: COPY wins for
# batches of 1000, the single INSERT for small ones.
COPY_FROM_ROWS: Final = 500
# Rows per COPY: PostgreSQL stores one chunk while the next is made (see `_copy_in_chunks`). The
# first is small, so that PostgreSQL starts soon, and so is the last, which PostgreSQL stores alone
# at the end; a COPY costs PostgreSQL little more than the rows it carries. A thousand events, from
# checked to committed, on two cores: seven COPYs about 33 ms, five 34, one (no overlap) 45.
FIRST_COPY_ROWS: Final = 50
COPY_CHUNK_ROWS: Final = 150
_WRITE_HEADS: Final = write_heads_sql(1)

# Keys and types as in kubernaut's query responses: unset text is '', unset
# duration 0, so clients that decode into non-null fields keep working.
_SELECT_STORED: Final = """
SELECT
    event_id, event_timestamp, event_date, event_version AS version, event_type, event_category,
    event_action, event_outcome, correlation_id, parent_event_id, parent_event_date, actor_type,
    actor_id, coalesce(host(actor_ip), '') AS actor_ip, resource_type, resource_id,
    coalesce(namespace, '') AS namespace, coalesce(cluster_id, '') AS cluster_id,
    coalesce(severity, '') AS severity, coalesce(duration_ms, 0) AS duration_ms,
    coalesce(error_code, '') AS error_code, coalesce(error_message, '') AS error_message,
    retention_days, is_sensitive, event_data
FROM audit_events
"""

# Every `AuditRecord` field read back in the form the record had when it was hashed: a field
# added to the record is read by its column's name unless it is listed here.
_RECORD_FIELDS: Final = tuple(field.name for field in fields(AuditRecord))
_READ_AS: Final = {"version": "event_version", "actor_ip": "host(actor_ip)", "event_data": "event_data::text"}
_SELECT_CHAIN: Final = (
    f"SELECT {', '.join(f'{_READ_AS.get(name, name)} AS {name}' for name in _RECORD_FIELDS)}, "
    f"{', '.join(column for column, _ in _CHAIN_COLUMNS)} FROM audit_events "
    "WHERE correlation_id = $1 AND chain_sequence IS NOT NULL ORDER BY chain_sequence"
)
# Rows a verification holds at a time: memory stays bounded however long the chain.
_CHAIN_PREFETCH: Final = 500

_NO_PARTITION: Final = re.compile(r"no partition of relation .* found for row")
# How PostgreSQL writes a JSON number as text (never with an exponent: 1e2 is 100).
_JSON_NUMBER_TEXT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)


class MissingPartition(Exception):
    """A record's `event_date` has no partition yet; `days` are the dates of the batch."""

    def __init__(self, days: set[date]) -> None:
        super().__init__(f"no partition for {sorted(days)}")
        self.days = days


class Unhashable(Exception):
    """A record has no canonical bytes (a number in event_data no double holds): it can never be stored."""


class AlreadyStored(Exception):
    """Some of the batch's events were stored already (a repeat, or a concurrent writer): nothing was
    written, and another attempt with `leave_out_stored` leaves them out."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Exact-match filters (None means any), an inclusive time range on `event_timestamp`, and one
    top-level `event_data` key: present (`detail_key` alone) or with a value (see `detail_matches`)."""

    event_type: str | None = None
    event_category: str | None = None
    event_outcome: str | None = None
    severity: str | None = None
    correlation_id: str | None = None
    cluster_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    detail_key: str | None = None
    detail_value: str | None = None


async def insert_records(
    connection: asyncpg.Connection,
    records: Sequence[AuditRecord],
    *,
    hasher: EventHasher,
    leave_out_stored: bool = False,
) -> int:
    """Stores the records atomically, each linked to the end of its chain, in the given order;
    returns how many were new. Repeats within the batch are skipped.

    Events stored already must not be linked again. Looking them up costs every batch an index probe
    per event, and they are rare, so by default the insert finds them (a unique violation of the
    primary key) and raises AlreadyStored, having written nothing; with `leave_out_stored` they are
    looked up first and left out.
    Records a `PendingRecords` has yet to make are made as they are written, and whatever making them
    raises is raised here, the transaction rolled back. Raises Unhashable for a record that has no
    canonical bytes.
    """
    pending = PendingRecords.of(records)
    if not pending:
        return 0
    try:
        async with locked_transaction(connection, pending.correlation_ids):
            chunks: Iterable[list[AuditRecord]] = pending.chunks()
            if leave_out_stored:
                stored = await _stored_keys(connection, pending.all())
                chunks = [[record for record in pending if _key(record) not in stored]]
            heads = await read_heads(connection, pending.correlation_ids)
            linker = ChainLinker(heads, hasher)
            if len(pending) < COPY_FROM_ROWS:
                rows = [row for linked in _linked_rows(chunks, linker) for row in linked]
                if not rows:
                    return 0
                columns = [list(column) for column in zip(*rows, strict=True)]
                await connection.execute(
                    _INSERT_ROWS_AND_HEADS, *columns, *head_arguments(linker.moved_heads())
                )
                inserted = len(rows)
            else:
                inserted = await _copy_in_chunks(connection, _linked_rows(chunks, linker))
                await connection.execute(_WRITE_HEADS, *head_arguments(linker.moved_heads()))
    except asyncpg.UniqueViolationError as error:  # the transaction rolled back: nothing was written
        raise AlreadyStored(f"some of the batch's events were stored already: {error}") from error
    except asyncpg.CheckViolationError as error:
        if _NO_PARTITION.search(str(error)):
            raise MissingPartition({record.event_date for record in pending}) from error
        raise
    return inserted


def _key(record: AuditRecord) -> tuple[uuid.UUID, date]:
    """The primary key a record is stored under."""
    return record.event_id, record.event_date


def _linked_rows(chunks: Iterable[list[AuditRecord]], linker: ChainLinker) -> Iterator[list[tuple[Any, ...]]]:
    """The records' rows, each linked to its chain, in chunks of FIRST_COPY_ROWS, then COPY_CHUNK_ROWS;
    a repeat of a key met before is left out (the first wins, as it would under ON CONFLICT DO NOTHING)."""
    seen: set[tuple[uuid.UUID, date]] = set()
    rows: list[tuple[Any, ...]] = []
    chunk_rows = FIRST_COPY_ROWS
    for chunk in chunks:
        for record in chunk:
            row = row_values(record)
            key = (row[0], row[3])  # event_id, event_date
            if key in seen:
                continue
            seen.add(key)
            try:
                canonical = canonical_bytes(record)
            except ValueError as error:
                raise Unhashable(f"cannot hash the events: {error}") from error
            rows.append((*row, *linker.link(record, canonical)))
            if len(rows) == chunk_rows:
                yield rows
                rows, chunk_rows = [], COPY_CHUNK_ROWS
    if rows:
        yield rows


async def _copy_in_chunks(connection: asyncpg.Connection, chunks: Iterator[list[tuple[Any, ...]]]) -> int:
    """COPYs the rows into audit_events a chunk at a time, making the next chunk (iterating `chunks`
    runs the CPU work: checking, hashing, linking) while PostgreSQL stores the one before; returns how
    many rows it sent. An error from `chunks` wins over one of the COPY in flight, which is waited for
    first, so the transaction can roll back."""
    sent = 0
    copying: asyncio.Task[str] | None = None
    try:
        for rows in chunks:
            if copying is not None:
                await copying
            copying = asyncio.create_task(
                connection.copy_records_to_table("audit_events", records=rows, columns=_INSERTED_COLUMNS)
            )
            sent += len(rows)
            await asyncio.sleep(0)  # the COPY sends its rows now, before the next chunk is made
    except BaseException:
        if copying is not None:
            await asyncio.gather(copying, return_exceptions=True)
        raise
    if copying is not None:
        await copying
    return sent


async def _stored_keys(
    connection: asyncpg.Connection, records: Sequence[AuditRecord]
) -> set[tuple[uuid.UUID, date]]:
    rows = await connection.fetch(
        _STORED_KEYS, [record.event_id for record in records], list({record.event_date for record in records})
    )
    return {(row["event_id"], row["event_date"]) for row in rows}


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
        record.actor_ip,
        record.resource_type,
        record.resource_id,
        record.correlation_id,
        record.parent_event_id,
        record.parent_event_date,
        record.namespace,
        record.cluster_id,
        record.event_data_json(),
        record.severity,
        record.duration_ms,
        record.error_code,
        record.error_message,
        record.retention_days,
        record.is_sensitive,
    )


# One primary-key lookup per wanted event, in its own partition, whatever the plan (see chain.READ_HEADS).
_KNOWN_KEYS: Final = """
SELECT stored.event_id FROM unnest($1::uuid[], $2::date[]) AS wanted(event_id, event_date)
CROSS JOIN LATERAL (
    SELECT event_id FROM audit_events
    WHERE event_id = wanted.event_id AND event_date = wanted.event_date LIMIT 1
) AS stored
"""


async def known_event_ids(
    connection: asyncpg.Connection, keys: Sequence[tuple[uuid.UUID, datetime]]
) -> set[uuid.UUID]:
    """Those of these events (id, timestamp) that are stored."""
    rows = await connection.fetch(
        _KNOWN_KEYS, [event_id for event_id, _ in keys], [event_date(at) for _, at in keys]
    )
    return {row["event_id"] for row in rows}


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


async def chain_events(
    connection: asyncpg.Connection, correlation_id: str
) -> AsyncIterator[tuple[AuditRecord, ChainLink]]:
    """The chain's stored events in chain order, as records again, read a few hundred rows at a time.

    Run it inside a transaction (a cursor lives in one), with the head read in the same snapshot.
    """
    async for row in connection.cursor(_SELECT_CHAIN, correlation_id, prefetch=_CHAIN_PREFETCH):
        values = {name: row[name] for name in _RECORD_FIELDS}
        values["event_data"] = json.loads(values["event_data"])
        # A CHECK keeps the hashes non-null; a superuser who dropped it gets "" and a mismatch.
        link = ChainLink(
            chain_sequence=row["chain_sequence"],
            previous_event_hash=row["previous_event_hash"] or "",
            event_hash=row["event_hash"] or "",
            hash_algorithm=row["hash_algorithm"] or "",
        )
        yield AuditRecord(**values), link


async def count_unchained(connection: asyncpg.Connection, correlation_id: str) -> int:
    """Events of this correlation_id stored before the hash chain existed (no chain columns)."""
    count = await connection.fetchval(
        "SELECT count(*) FROM audit_events WHERE correlation_id = $1 AND chain_sequence IS NULL",
        correlation_id,
    )
    return int(count)


def detail_matches(key: str, value: str) -> list[str]:
    """The JSON objects `{key: v}` whose `v` PostgreSQL writes as the text `value` (`event_data ->> key`).

    A string matches by its content; `true`/`false` match booleans; a number matches as PostgreSQL
    writes it (`42`, `0.5`; a stored 1e2 is `100`, a stored 1.0 stays `1.0`). JSON null, objects
    and arrays never match. Containment (`@>`) of any of these objects is what the GIN index finds;
    it also finds numbers equal to `value` but written otherwise (1.0 for 1), which the text
    comparison then leaves out.
    """
    name = json.dumps(key, ensure_ascii=False)
    matches = [json.dumps({key: value}, ensure_ascii=False)]
    if value in ("true", "false") or _JSON_NUMBER_TEXT.fullmatch(value):
        matches.append(f"{{{name}: {value}}}")
    return matches


def _where(event_filter: EventFilter) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    arguments: list[Any] = []

    def add(condition: str, *values: Any) -> None:
        first = len(arguments) + 1
        arguments.extend(values)
        conditions.append(condition.format(*(f"${number}" for number in range(first, len(arguments) + 1))))

    for column in (
        "event_type",
        "event_category",
        "event_outcome",
        "severity",
        "correlation_id",
        "cluster_id",
    ):
        value = getattr(event_filter, column)
        if value is not None:
            add(f"{column} = {{}}", value)
    if event_filter.detail_key is not None:
        if event_filter.detail_value is None:
            add("event_data ? {}", event_filter.detail_key)
        else:
            # The containment test finds the candidates through event_data's GIN index;
            # the text comparison then decides, as `detail_matches` describes.
            key, value = event_filter.detail_key, event_filter.detail_value
            add(
                "event_data @> ANY({}::jsonb[]) AND event_data ->> {}::text = {}",
                detail_matches(key, value),
                key,
                value,
            )
    if event_filter.since is not None:
        add("event_timestamp >= {}", event_filter.since)
        # The same bound on the partition key lets PostgreSQL skip whole months.
        add("event_date >= {}", event_date(event_filter.since))
    if event_filter.until is not None:
        add("event_timestamp <= {}", event_filter.until)
        add("event_date <= {}", event_date(event_filter.until))
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), arguments
