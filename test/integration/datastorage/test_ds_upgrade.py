"""Upgrading from the release before the 2026 fields: its rows and its queued events come through whole.

The database is put where that release left it (migration 0001 only) and
filled as it wrote: its INSERT columns (frozen below, since the code that
wrote them is gone), monthly partitions, `cluster_name` on some rows, and an
event of its format waiting in the dead-letter queue. Then the current
DataStorage starts on it, as an upgrade does: it applies every later
migration, and every row must be there with its values (`cluster_name` now
`cluster_id`), served by the API.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg

from datastorage.dlq import DLQ_STREAM
from datastorage.migrations import available_migrations, migrate
from datastorage.partitions import Month, partition_ddl
from datastorage.timestamps import event_date, format_timestamp
from test.integration.datastorage.support import (
    WorkerDatabases,
    dlq_length,
    open_stack_at,
    query,
    redis_client,
    sql,
)
from test.integration.polling import eventually

LAST_VERSION_BEFORE_2026_FIELDS: Final = 1
# The columns that release's repository wrote, in its order; the others got their defaults.
OLD_RELEASE_INSERT: Final = """
INSERT INTO audit_events (
    event_id, event_version, event_timestamp, event_date, event_type, event_category, event_action,
    event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, parent_event_id,
    namespace, cluster_name, event_data, severity, duration_ms
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18, $19)
ON CONFLICT (event_id, event_date) DO NOTHING
"""
ROWS_PER_MONTH: Final = 4


def old_release_rows(correlation_id: str, now: datetime) -> list[tuple[Any, ...]]:
    """Rows over the current month and the three before it (several partitions), varied as that
    release wrote them: cluster_name, namespace, duration and parent on some rows only."""
    rows: list[tuple[Any, ...]] = []
    for month in range(4):
        for n in range(ROWS_PER_MONTH):
            at = now - timedelta(days=31 * month, minutes=n)
            parent = rows[-1][0] if n % 2 else None
            rows.append(
                (
                    uuid.uuid4(),
                    "1.0",
                    at,
                    event_date(at),
                    "signalprocessing.phase.transition",
                    "signalprocessing",
                    f"step-{month}-{n}",
                    ("success", "failure", "pending")[n % 3],
                    "service",
                    "signalprocessing-controller",
                    "SignalProcessing",
                    f"sp-{month}-{n}",
                    correlation_id,
                    parent,
                    "payments" if n % 2 else None,
                    f"cluster-{n}" if n % 2 == 0 else None,
                    json.dumps({"phase": "Completed", "n": n, "labels": {"month": month}}),
                    ("info", "critical")[n % 2],
                    n * 10 or None,
                )
            )
    return rows


def old_release_dlq_message(correlation_id: str, now: datetime) -> str:
    """A dead-letter entry as that release queued it: `cluster_name`, none of the 2026 keys."""
    payload = {
        "event_id": str(uuid.uuid4()),
        "version": "1.0",
        "event_timestamp": format_timestamp(now),
        "event_type": "signalprocessing.signal.processed",
        "event_category": "signalprocessing",
        "event_action": "queued-before-upgrade",
        "event_outcome": "success",
        "actor_type": "service",
        "actor_id": "signalprocessing-service",
        "resource_type": "signalprocessing",
        "resource_id": correlation_id,
        "correlation_id": correlation_id,
        "parent_event_id": None,
        "namespace": None,
        "cluster_name": "queued-cluster",
        "severity": "info",
        "duration_ms": None,
        "event_data": {"phase": "Completed"},
    }
    return json.dumps(
        {"type": "audit_event", "payload": payload, "timestamp": payload["event_timestamp"], "retry_count": 0}
    )


def write_as_the_old_release(database_url: str, rows: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            for month in sorted({Month.of(row[3]) for row in rows}):
                await connection.execute(partition_ddl(month))
            await connection.executemany(OLD_RELEASE_INSERT, rows)
        finally:
            await connection.close()

    asyncio.run(run())


def stored_rows(database_url: str, correlation_id: str) -> dict[uuid.UUID, dict[str, Any]]:
    rows = sql(database_url, "SELECT * FROM audit_events WHERE correlation_id = $1", correlation_id)
    return {row["event_id"]: row for row in rows}


def test_rows_and_queued_events_of_the_release_before_come_through_the_upgrade_whole(
    fresh_database: str,
    worker_databases: WorkerDatabases,
    new_log_path: Callable[[], Path],
    correlation_id: str,
) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    applied = asyncio.run(migrate(fresh_database, up_to=LAST_VERSION_BEFORE_2026_FIELDS))
    assert [migration.version for migration in applied] == [1]
    write_as_the_old_release(fresh_database, old_release_rows(correlation_id, now))
    before = stored_rows(fresh_database, correlation_id)
    assert len({Month.of(row["event_date"]) for row in before.values()}) > 1, "rows span several partitions"

    with worker_databases.redis_database() as redis_url:
        with redis_client(redis_url) as queue:
            queue.xadd(DLQ_STREAM, {"message": old_release_dlq_message(correlation_id, now)})

        with (
            open_stack_at(fresh_database, redis_url, log_path=new_log_path()) as stack,
            stack.client() as client,
        ):
            eventually(lambda: dlq_length(redis_url) == 0, timeout=30, message="the queued event is stored")
            after = stored_rows(fresh_database, correlation_id)
            served = {
                uuid.UUID(event["event_id"]): event
                for event in query(client, correlation_id=correlation_id, limit=1000)["data"]
            }
            on_cluster_0 = query(client, correlation_id=correlation_id, cluster_id="cluster-0")["data"]

    versions = sql(fresh_database, "SELECT version FROM schema_migrations ORDER BY version")
    assert [row["version"] for row in versions] == [migration.version for migration in available_migrations()]
    [queued_id] = after.keys() - before.keys()
    assert (after[queued_id]["cluster_id"], after[queued_id]["retention_days"]) == ("queued-cluster", 2555)
    for event_id, old in before.items():
        kept = {("cluster_id" if key == "cluster_name" else key): value for key, value in old.items()}
        assert {key: after[event_id][key] for key in kept} == kept
    assert served.keys() == after.keys()
    for event_id, old in before.items():
        assert served[event_id]["cluster_id"] == (old["cluster_name"] or "")
        assert served[event_id]["event_data"] == json.loads(old["event_data"])
        assert served[event_id]["event_action"] == old["event_action"]
    assert {event["event_action"] for event in on_cluster_0} == {f"step-{month}-0" for month in range(4)}
