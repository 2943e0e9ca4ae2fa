"""Building blocks of the DataStorage integration tests: stacks, events, and direct looks at the stores.

`open_stack` starts a private PostgreSQL, Redis and in-process DataStorage;
tests that stop servers or move the clock use their own stack, so they
never disturb others. `make_event` builds a valid event (Go client wire
format) that tests change only where it matters. `sql`, `dlq_length` and
`metric` read the stores and metrics behind the API to check what it says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import redis

from datastorage.config import DlqSettings, Settings
from datastorage.dlq import DLQ_STREAM
from datastorage.runner import DataStorageServer
from datastorage.timestamps import Clock, format_timestamp, utc_now
from localservers import PostgresServer, RedisServer

EVENTS_PATH = "/api/v1/audit/events"
BATCH_PATH = "/api/v1/audit/events/batch"
PROBLEM_TYPE = "https://kubernaut.ai/problems/"

# Retry quickly so that outage tests see the drain within a second or two.
FAST_DLQ = DlqSettings(
    max_attempts=3, poll_interval=0.05, backoff_initial=0.05, backoff_max=0.2, claim_idle=0.5
)


def make_event(correlation_id: str, *, at: datetime | None = None, **changes: Any) -> dict[str, Any]:
    """A valid event as the Go client sends it (explicit nulls), at `at` (default now)."""
    event: dict[str, Any] = {
        "version": "1.0",
        "event_type": "signalprocessing.signal.processed",
        "event_timestamp": format_timestamp(at or datetime.now(UTC)),
        "event_category": "signalprocessing",
        "event_action": "processed",
        "event_outcome": "success",
        "correlation_id": correlation_id,
        "event_data": {"phase": "Completed", "signal": {"fingerprint": uuid.uuid4().hex}},
        "namespace": "default",
        "cluster_name": None,
        "severity": None,
        "duration_ms": None,
        "parent_event_id": None,
    }
    event.update(changes)
    # `...` as a value removes the key, for tests of missing fields.
    return {key: value for key, value in event.items() if value is not ...}


def seconds_ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


class MutableClock:
    """A clock a test moves by hand; DataStorage reads it for every notion of now."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = now


@dataclasses.dataclass
class Stack:
    postgres: PostgresServer
    redis: RedisServer
    datastorage: DataStorageServer

    @property
    def url(self) -> str:
        return self.datastorage.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@contextlib.contextmanager
def open_stack(*, clock: Clock = utc_now, dlq: DlqSettings = FAST_DLQ, **settings: Any) -> Iterator[Stack]:
    """PostgreSQL, Redis and DataStorage of one's own; `settings` override `Settings` fields."""
    with PostgresServer() as postgres, RedisServer() as redis_server:
        configured = Settings(
            database_url=postgres.url,
            redis_url=redis_server.url,
            host="127.0.0.1",
            port=0,
            db_timeout=5.0,
            dlq=dlq,
            **settings,
        )
        with DataStorageServer(configured, clock=clock) as datastorage:
            yield Stack(postgres, redis_server, datastorage)


def sql(database_url: str, query: str, *arguments: Any) -> list[dict[str, Any]]:
    """Runs one statement straight against PostgreSQL, to check what the API says."""

    async def run() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(database_url)
        try:
            return [dict(row) for row in await connection.fetch(query, *arguments)]
        finally:
            await connection.close()

    return asyncio.run(run())


def stored_count_by_id(database_url: str, correlation_id: str) -> dict[str, int]:
    rows = sql(
        database_url,
        "SELECT event_id::text AS id, count(*) AS n FROM audit_events WHERE correlation_id = $1 GROUP BY 1",
        correlation_id,
    )
    return {row["id"]: row["n"] for row in rows}


def redis_client(url: str) -> redis.Redis[str]:
    return redis.Redis.from_url(url, decode_responses=True)


def dlq_length(redis_url: str, stream: str = DLQ_STREAM) -> int:
    with redis_client(redis_url) as client:
        return int(client.xlen(stream))


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample on /metrics (0 when absent)."""
    text = client.get("/metrics").text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", re.MULTILINE)
    for found_labels, value in pattern.findall(text):
        if ",".join(sorted(found_labels.split(","))) == wanted or (not labels and not found_labels):
            return float(value)
    return 0.0


def query(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get(EVENTS_PATH, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def total_for(client: httpx.Client, correlation_id: str) -> int:
    return int(query(client, correlation_id=correlation_id, limit=1)["pagination"]["total"])


def assert_problem(
    response: httpx.Response, status: int, code: str, detail_fragment: str = ""
) -> dict[str, Any]:
    """Checks an RFC 7807 answer: status, media type, fields, type URI and a piece of the detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert body["type"] == PROBLEM_TYPE + code, body
    assert body["status"] == status
    assert detail_fragment in body["detail"], body
    return body
