"""Legal holds: a case (the audit trail of one correlation_id) on hold is never purged, until released.

Placing a hold marks the case's stored events (the `legal_hold*` columns) and
records the hold in `audit_legal_holds`; releasing clears the marks and
records who released it and when, so the table is the history of every hold.
Retention keeps marked events and, since a chain is purged oldest first,
every later event of their chain: events of the case that arrive while it is
held stay too. Both take the purge lock shared (`retention.PURGE_LOCK_KEY`):
a purge step ran wholly before a hold (which covers what is left) or runs
wholly after it (and sees it).

Functions take a connection and raise `NotFound` for a case with no stored
events or no hold in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from datastorage.errors import NotFound
from datastorage.retention import PURGE_LOCK_KEY

# With the case's hash, the key that makes placing and releasing the holds of one case take turns.
_CASE_LOCK_CLASS: Final = 0x4C48
_NEW_HOLD: Final = (
    "INSERT INTO audit_legal_holds (correlation_id, reason, placed_by, placed_at) VALUES ($1, $2, $3, $4)"
)
_HOLD_IN_FORCE: Final = """
SELECT h.correlation_id, h.reason, h.placed_by, h.placed_at,
       (SELECT count(*) FROM audit_events e WHERE e.correlation_id = h.correlation_id AND e.legal_hold)
           AS events_held
FROM audit_legal_holds h WHERE h.correlation_id = $1 AND h.released_at IS NULL
"""
_MARK_EVENTS: Final = """
UPDATE audit_events
SET legal_hold = true, legal_hold_reason = $2, legal_hold_placed_by = $3, legal_hold_placed_at = $4
WHERE correlation_id = $1
"""
_RELEASE_HOLD: Final = """
UPDATE audit_legal_holds SET released_by = $2, released_at = $3
WHERE correlation_id = $1 AND released_at IS NULL
RETURNING hold_id
"""
_UNMARK_EVENTS: Final = """
UPDATE audit_events
SET legal_hold = false, legal_hold_reason = NULL, legal_hold_placed_by = NULL, legal_hold_placed_at = NULL
WHERE correlation_id = $1 AND legal_hold
"""


@dataclass(frozen=True, slots=True)
class LegalHold:
    """A hold in force; `events_held` counts the case's events marked with it."""

    correlation_id: str
    reason: str
    placed_by: str
    placed_at: datetime
    events_held: int


@dataclass(frozen=True, slots=True)
class ReleasedHold:
    correlation_id: str
    released_by: str
    released_at: datetime
    events_released: int


async def place_hold(
    connection: asyncpg.Connection, *, correlation_id: str, reason: str, placed_by: str, placed_at: datetime
) -> tuple[LegalHold, bool]:
    """The hold in force on the case, and True when this call placed it.

    A hold already in force is returned unchanged with False, so a client may
    safely repeat the request. Raises NotFound when the case has no stored event.
    """
    async with connection.transaction():
        await _lock_case(connection, correlation_id)
        row = await connection.fetchrow(_HOLD_IN_FORCE, correlation_id)
        if row is not None:
            return LegalHold(**dict(row)), False
        status = await connection.execute(_MARK_EVENTS, correlation_id, reason, placed_by, placed_at)
        marked = _row_count(status)
        if marked == 0:
            raise NotFound(f"no audit events with correlation_id {correlation_id!r}")
        await connection.execute(_NEW_HOLD, correlation_id, reason, placed_by, placed_at)
    return LegalHold(correlation_id, reason, placed_by, placed_at, marked), True


async def release_hold(
    connection: asyncpg.Connection, *, correlation_id: str, released_by: str, released_at: datetime
) -> ReleasedHold:
    """Ends the hold in force on the case; raises NotFound when there is none."""
    async with connection.transaction():
        await _lock_case(connection, correlation_id)
        if await connection.fetchval(_RELEASE_HOLD, correlation_id, released_by, released_at) is None:
            raise NotFound(f"no legal hold in force on correlation_id {correlation_id!r}")
        status = await connection.execute(_UNMARK_EVENTS, correlation_id)
    return ReleasedHold(correlation_id, released_by, released_at, _row_count(status))


async def _lock_case(connection: asyncpg.Connection, correlation_id: str) -> None:
    await connection.execute("SELECT pg_advisory_xact_lock_shared($1)", PURGE_LOCK_KEY)
    await connection.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", _CASE_LOCK_CLASS, correlation_id
    )


def _row_count(status: str) -> int:
    """The row count of a command status such as `UPDATE 3`."""
    return int(status.rsplit(" ", 1)[-1])
