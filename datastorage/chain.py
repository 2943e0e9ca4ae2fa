"""The hash chain of each correlation_id in PostgreSQL: its lock, its head, and where new events link.

A chain is the events of one correlation_id in the order they were stored;
each carries its place (`chain_sequence`), the hash of the event before it and
its own (see `hashing`). `audit_chain_heads` holds one row per chain: how
many events were ever chained, the newest one, and how many of the oldest
retention has purged. Whoever changes a chain (the insert path, retention)
first takes the chain's transaction-scoped advisory lock, with `lock_chains`,
so a chain grows one writer at a time; several chains are locked in one fixed
order, so two writers never deadlock over them.

The contract with retention: it deletes only a prefix of a chain (its oldest
events), and in the same transaction calls `record_purge` with the number it
deleted and the `event_hash` of the newest of them. Verification then expects
the oldest surviving event to follow `purged_through_hash`.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

import asyncpg

from datastorage.hashing import EventHasher
from datastorage.records import AuditRecord

# Locks in sorted key order, one statement; PostgreSQL evaluates a volatile
# function in the select list after ORDER BY, so the order is the array's.
_LOCK_CHAINS: Final = (
    "SELECT pg_advisory_xact_lock(key) FROM unnest($1::bigint[]) WITH ORDINALITY AS locks(key, position) "
    "ORDER BY position"
)
# One primary-key lookup per wanted chain, whatever PostgreSQL knows of the table: the LIMIT keeps the
# subquery a parameterised inner scan. `correlation_id = ANY($1)` was planned as a scan of the whole
# table whenever the plan was made before statistics caught up with the table's growth (a pooled
# connection keeps its prepared statement, and the generic plan it settles on, for hours): 3 ms per
# batch at 4,000 chains, and linear in every chain ever written.
READ_HEADS: Final = """
SELECT head.* FROM unnest($1::text[]) AS wanted(correlation_id) CROSS JOIN LATERAL (
    SELECT correlation_id, event_count, last_event_hash, last_event_id, last_event_timestamp,
           purged_count, purged_through_hash
    FROM audit_chain_heads WHERE correlation_id = wanted.correlation_id LIMIT 1
) AS head
"""


def write_heads_sql(first_parameter: int) -> str:
    """The statement that creates or moves forward the heads `head_arguments` describes, its five
    arrays numbered from `first_parameter`, to be run in the statement that stores the events (one
    round trip fewer per batch). Only the insert path's columns: a purge committed meanwhile keeps
    its own."""
    arrays = ", ".join(
        f"${number}::{kind}[]"
        for number, kind in enumerate(("text", "bigint", "text", "uuid", "timestamptz"), first_parameter)
    )
    return f"""
INSERT INTO audit_chain_heads AS head
    (correlation_id, event_count, last_event_hash, last_event_id, last_event_timestamp)
SELECT * FROM unnest({arrays})
ON CONFLICT (correlation_id) DO UPDATE SET
    event_count = EXCLUDED.event_count,
    last_event_hash = EXCLUDED.last_event_hash,
    last_event_id = EXCLUDED.last_event_id,
    last_event_timestamp = EXCLUDED.last_event_timestamp,
    updated_at = now()
"""


def head_arguments(heads: Sequence[ChainHead]) -> list[list[Any]]:
    """The arrays `write_heads_sql` takes, in its order."""
    return [
        [head.correlation_id for head in heads],
        [head.event_count for head in heads],
        [head.last_event_hash for head in heads],
        [head.last_event_id for head in heads],
        [head.last_event_timestamp for head in heads],
    ]


_RECORD_PURGE: Final = """
UPDATE audit_chain_heads
SET purged_count = purged_count + $2, purged_through_hash = $3, updated_at = now()
WHERE correlation_id = $1
RETURNING purged_count
"""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """A chain's row in `audit_chain_heads`."""

    correlation_id: str
    event_count: int
    last_event_hash: str
    last_event_id: uuid.UUID
    last_event_timestamp: datetime
    purged_count: int = 0
    purged_through_hash: str = ""


# Named tuples, not dataclasses: one of each is made per event on every write, and a link is
# appended to its row as it is.
class ChainLink(NamedTuple):
    """Where a stored event sits in its chain: the chain columns of its row, in their order."""

    chain_sequence: int
    previous_event_hash: str
    event_hash: str
    hash_algorithm: str


class PreparedRecord(NamedTuple):
    """A record and its canonical bytes, computed before the chain is locked so the lock is held briefly."""

    record: AuditRecord
    canonical: bytes


def chain_lock_key(correlation_id: str) -> int:
    """The chain's advisory lock key: the first 8 bytes of SHA-256 of the correlation_id, signed."""
    digest = hashlib.sha256(correlation_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_chains(connection: asyncpg.Connection, correlation_ids: Iterable[str]) -> None:
    """Takes the advisory locks of these chains until the transaction ends, in ascending key order.

    Call inside a transaction, once, with every chain the transaction changes.
    """
    keys = sorted({chain_lock_key(correlation_id) for correlation_id in correlation_ids})
    await connection.execute(_LOCK_CHAINS, keys)


@contextlib.asynccontextmanager
async def locked_transaction(
    connection: asyncpg.Connection, correlation_ids: Iterable[str]
) -> AsyncIterator[None]:
    """A transaction that holds the locks of these chains (as `lock_chains` takes them) from its start:
    committed when the block ends, rolled back if it raises, as asyncpg's `transaction()`.

    BEGIN and the locks go to PostgreSQL as one simple query, the keys (integers) written into its
    text: `transaction()` would send BEGIN alone, and a write of single events, which waits for each
    of its round trips, takes one fewer (four: this, the heads, the insert, COMMIT).
    """
    keys = sorted({chain_lock_key(correlation_id) for correlation_id in correlation_ids})
    array = "'{" + ",".join(map(str, keys)) + "}'"  # integers only: safe in the query's text
    try:
        await connection.execute(f"BEGIN; {_LOCK_CHAINS.replace('$1', array)}")
        yield
    except BaseException:
        if not connection.is_closed():  # also after a failed BEGIN: a ROLLBACK outside one does nothing
            await connection.execute("ROLLBACK")
        raise
    await connection.execute("COMMIT")


async def read_heads(
    connection: asyncpg.Connection, correlation_ids: Collection[str]
) -> dict[str, ChainHead]:
    """The heads of those of these chains that have one."""
    rows = await connection.fetch(READ_HEADS, list(correlation_ids))
    return {row["correlation_id"]: ChainHead(**dict(row)) for row in rows}


async def record_purge(
    connection: asyncpg.Connection, correlation_id: str, *, count: int, through_hash: str
) -> None:
    """Records on the chain's head that retention deleted its `count` oldest remaining events, the newest
    of which had `through_hash` as its `event_hash`.

    Call in the transaction that deletes them; it takes the chain's lock (again, if `lock_chains` took
    it already: a transaction that purges several chains should lock them all first, in one call).
    Raises ValueError for a count below 1 or an empty hash, LookupError when the chain has no head.
    """
    if count < 1:
        raise ValueError(f"a purge deletes at least one event, not {count}")
    if not through_hash:
        raise ValueError("a purge names the event_hash of the newest event it deleted")
    await lock_chains(connection, [correlation_id])
    if await connection.fetchval(_RECORD_PURGE, correlation_id, count, through_hash) is None:
        raise LookupError(f"no chain head for correlation_id {correlation_id!r}")


class ChainLinker:
    """Links records, one after another in the order given, to the ends of their chains.

    Starts from the chains' heads as read (a chain without one starts empty), and keeps the ends it
    has moved them to, so a batch can be linked a chunk at a time.
    """

    def __init__(self, heads: Mapping[str, ChainHead], hasher: EventHasher) -> None:
        self._ends = {
            correlation_id: (head.event_count, head.last_event_hash) for correlation_id, head in heads.items()
        }
        self._newest: dict[str, AuditRecord] = {}
        self._hasher = hasher
        self._algorithm = hasher.algorithm

    def link(self, record: AuditRecord, canonical: bytes) -> ChainLink:
        """The record's place in its chain, which it now ends."""
        count, previous_hash = self._ends.get(record.correlation_id, (0, ""))
        event_hash = self._hasher.link(previous_hash, canonical)
        self._ends[record.correlation_id] = (count + 1, event_hash)
        self._newest[record.correlation_id] = record
        return ChainLink(count + 1, previous_hash, event_hash, self._algorithm)

    def moved_heads(self) -> list[ChainHead]:
        """The new heads of the chains linked to (one per chain)."""
        return [
            ChainHead(correlation_id, *self._ends[correlation_id], record.event_id, record.event_timestamp)
            for correlation_id, record in self._newest.items()
        ]


def link_records(
    prepared: Sequence[PreparedRecord], heads: Mapping[str, ChainHead], hasher: EventHasher
) -> tuple[list[ChainLink], list[ChainHead]]:
    """Links new records, in their order, to the ends of their chains.

    Returns each record's link, and the chains' new heads (one per chain touched).
    """
    linker = ChainLinker(heads, hasher)
    links = [linker.link(item.record, item.canonical) for item in prepared]
    return links, linker.moved_heads()
