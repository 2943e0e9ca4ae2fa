"""Building blocks of the DataStorage integration tests: stacks, events, and direct looks at the stores.

A stack is an in-process DataStorage with the PostgreSQL database and Redis
database it stores to, logging to a file of its own. `open_stack_on` puts one
on fresh databases of the suite's shared servers (`WorkerDatabases`), for the
worker's shared stack and for tests that move the clock or change settings;
`open_stack_with_servers` starts a PostgreSQL and Redis of its own, for tests
that stop or kill them. `make_event` builds a valid event (Go client wire
format) that tests change only where it matters. `sql`, `dlq_length`,
`metric` and `logged` read the stores, metrics and log behind the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis

from datastorage.config import DlqSettings, Settings
from datastorage.dlq import DLQ_STREAM
from datastorage.runner import DataStorageServer
from datastorage.timestamps import Clock, format_timestamp, utc_now
from localservers import PostgresServer, RedisServer
from processes.ports import reserve_port
from test.integration.metrics import Scrape

EVENTS_PATH = "/api/v1/audit/events"
BATCH_PATH = "/api/v1/audit/events/batch"
VERIFY_CHAIN_PATH = "/api/v1/audit/verify-chain"
KNOWN_EVENTS_PATH = "/api/v1/audit/events/known"
LEGAL_HOLD_PATH = "/api/v1/audit/legal-hold"
PROBLEM_TYPE = "https://kubernaut.ai/problems/"

# Retry quickly so that outage tests see the drain within a second or two.
FAST_DLQ = DlqSettings(
    max_attempts=3, poll_interval=0.05, backoff_initial=0.05, backoff_max=0.2, claim_idle=0.5
)

# PostgreSQL failing at a chosen row, through a trigger on a test's own database: the server ends the
# very connection that inserts the poison row, before any later row (as a crash or a failover would,
# mid-transaction), or refuses that row.
POISON: Final = "poison"
CONNECTION_DIES_AT_POISON: Final = f"""
CREATE FUNCTION die_at_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_action = '{POISON}' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(60);  -- interruptible: the termination takes effect here
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER die_at_poison BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION die_at_poison();
"""
POISON_REFUSED: Final = f"""
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_action = '{POISON}' THEN
        RAISE EXCEPTION 'this row is refused, every time';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""
# The retry worker polls so rarely that it never takes what a test queued.
PARKED_DLQ: Final = dataclasses.replace(FAST_DLQ, poll_interval=3600.0)


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
        "cluster_id": None,
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
    """A DataStorage, the PostgreSQL database and Redis database it stores to, and its log file."""

    database_url: str
    redis_url: str
    datastorage: DataStorageServer
    log_path: Path

    @property
    def url(self) -> str:
        return self.datastorage.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT)


@dataclasses.dataclass
class StackWithServers(Stack):
    """A stack on servers of its own, which the test may stop, restart or kill."""

    postgres: PostgresServer
    redis: RedisServer


# The factories the fixtures hand to tests: `settings` override `Settings` fields.
OpenStack = Callable[..., contextlib.AbstractContextManager[Stack]]
OpenStackWithServers = Callable[..., contextlib.AbstractContextManager[StackWithServers]]

# Redis database 0 is the shared stack's own DataStorage's. Worker N ("gwN"; 0
# without xdist) owns this many numbers from 1 + N * REDIS_DBS_PER_WORKER on:
# its shared stack's and those of the tests it runs one after another.
REDIS_DBS_PER_WORKER: Final = 4


def worker_index(worker_id: str) -> int:
    """N for xdist's worker "gwN"; 0 for "master", a run without xdist."""
    return 0 if worker_id == "master" else int(worker_id.removeprefix("gw"))


class WorkerDatabases:
    """Fresh PostgreSQL and Redis databases on the suite's shared servers, unique by construction.

    PostgreSQL databases are named `ds_<worker>_<n>`, n counting up within this
    worker, and created through the DataStorage role (which has CREATEDB); each
    is dropped when its block ends. Redis databases are numbers from this
    worker's own block, flushed before and after use, then used again.
    Worker ids are unique within a run, and each run has its own shared
    servers, so no two users ever share a name.
    """

    def __init__(self, *, database_url: str, redis_url: str, worker_id: str) -> None:
        self._admin_url = database_url
        self._redis_url = redis_url
        self._worker_id = worker_id
        self._serial = itertools.count()
        first = 1 + worker_index(worker_id) * REDIS_DBS_PER_WORKER
        self._free_redis_dbs = list(reversed(range(first, first + REDIS_DBS_PER_WORKER)))
        with redis_client(redis_url) as client:
            available = int(client.config_get("databases")["databases"])
        if first + REDIS_DBS_PER_WORKER > available:
            raise RuntimeError(
                f"worker {worker_id} needs Redis databases {first}-{first + REDIS_DBS_PER_WORKER - 1}, "
                f"but the shared Redis has {available}: raise DATABASES in localservers/redis_server.py"
            )

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """The URL of a new, empty PostgreSQL database, dropped (connections and all) after the block."""
        name = f"ds_{self._worker_id}_{next(self._serial)}"
        execute(self._admin_url, f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(self._admin_url)._replace(path=f"/{name}").geturl()
        finally:
            execute(self._admin_url, f'DROP DATABASE "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def redis_database(self) -> Iterator[str]:
        """The URL of an empty Redis database of this worker's block, flushed again after the block."""
        if not self._free_redis_dbs:
            raise RuntimeError(
                f"worker {self._worker_id} already uses all its {REDIS_DBS_PER_WORKER} Redis databases"
            )
        number = self._free_redis_dbs.pop()
        url = urlsplit(self._redis_url)._replace(path=f"/{number}").geturl()
        try:
            _flush(url)
            yield url
        finally:
            _flush(url)
            self._free_redis_dbs.append(number)


# A DataStorage on the shared servers expects every write answered 201: a write goes to the DLQ (202)
# only after this long, which no loaded machine reaches (two suites, each with a node, on 2 cores
# have kept a PostgreSQL write waiting over the service's default 10 s, and over 5 s on a spec's own
# DataStorage).
PATIENT_DB_TIMEOUT: Final = 300.0
# A spec that stops or kills its own PostgreSQL wants a write given up soon.
OUTAGE_DB_TIMEOUT: Final = 5.0
# How long a spec's HTTP client waits for DataStorage's answer.
CLIENT_TIMEOUT: Final = 30.0


@contextlib.contextmanager
def open_stack_on(
    databases: WorkerDatabases,
    *,
    log_path: Path,
    clock: Clock = utc_now,
    dlq: DlqSettings = FAST_DLQ,
    **settings: Any,
) -> Iterator[Stack]:
    """A DataStorage of one's own on a fresh PostgreSQL database and Redis database of the shared servers."""
    with (
        databases.database() as database_url,
        databases.redis_database() as redis_url,
        open_stack_at(database_url, redis_url, log_path=log_path, clock=clock, dlq=dlq, **settings) as stack,
    ):
        yield stack


@contextlib.contextmanager
def open_stack_at(
    database_url: str,
    redis_url: str,
    *,
    log_path: Path,
    clock: Clock = utc_now,
    dlq: DlqSettings = FAST_DLQ,
    **settings: Any,
) -> Iterator[Stack]:
    """A DataStorage on databases the test has prepared (an older schema, queued events) beforehand."""
    with _datastorage(database_url, redis_url, log_path=log_path, clock=clock, dlq=dlq, **settings) as server:
        yield Stack(database_url, redis_url, server, log_path)


@contextlib.contextmanager
def open_stack_with_servers(
    *,
    log_path: Path,
    clock: Clock = utc_now,
    dlq: DlqSettings = FAST_DLQ,
    db_timeout: float = OUTAGE_DB_TIMEOUT,
    **settings: Any,
) -> Iterator[StackWithServers]:
    """PostgreSQL, Redis and DataStorage of one's own, for a test that stops or kills a server."""
    with (
        PostgresServer() as postgres,
        RedisServer() as redis_server,
        _datastorage(
            postgres.url,
            redis_server.url,
            log_path=log_path,
            clock=clock,
            dlq=dlq,
            db_timeout=db_timeout,
            **settings,
        ) as server,
    ):
        yield StackWithServers(postgres.url, redis_server.url, server, log_path, postgres, redis_server)


@contextlib.contextmanager
def _datastorage(
    database_url: str,
    redis_url: str,
    *,
    log_path: Path,
    clock: Clock,
    dlq: DlqSettings,
    db_timeout: float = PATIENT_DB_TIMEOUT,
    **settings: Any,
) -> Iterator[DataStorageServer]:
    """An in-process DataStorage on a reserved port, logging to `log_path` only."""
    with reserve_port() as port:
        configured = Settings(
            database_url=database_url,
            redis_url=redis_url,
            host="127.0.0.1",
            port=port.port,
            db_timeout=db_timeout,
            dlq=dlq,
            **settings,
        )
        with DataStorageServer(configured, clock=clock, log_path=log_path) as server:
            yield server


def logged(log_path: Path, message: str) -> list[dict[str, Any]]:
    """The JSON lines of a DataStorage log whose message starts with `message`."""
    try:
        text = log_path.read_text()
    except FileNotFoundError:
        return []
    # Complete lines only: the last one may be half written while the server logs.
    entries = [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]
    return [entry for entry in entries if str(entry["message"]).startswith(message)]


def execute(database_url: str, statement: str) -> None:
    """Runs one statement outside a transaction (CREATE and DROP DATABASE need that)."""

    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


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


def _flush(redis_url: str) -> None:
    with redis_client(redis_url) as client:
        client.flushdb()


def dlq_length(redis_url: str, stream: str = DLQ_STREAM) -> int:
    with redis_client(redis_url) as client:
        return int(client.xlen(stream))


def entry_event_ids(redis_url: str, stream: str = DLQ_STREAM) -> list[str]:
    """The event id of each entry of a stream, in stream order (each entry holds one event)."""
    with redis_client(redis_url) as client:
        entries = client.xrange(stream)
    return [json.loads(fields["message"])["payload"]["event_id"] for _, fields in entries]


def waits_for_advisory_lock(database_url: str, key: int) -> bool:
    """Whether some session waits for the advisory lock `key` (a chain's, see `chain.chain_lock_key`)."""
    # A bigint advisory lock shows as its high and low 32 bits (classid, objid), objsubid 1.
    unsigned = key % 2**64
    rows = sql(
        database_url,
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1 "
        "AND classid::bigint = $1 AND objid::bigint = $2",
        unsigned >> 32,
        unsigned & 0xFFFFFFFF,
    )
    return bool(rows)


def scrape(client: httpx.Client) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of the one series `name{labels}` on /metrics; `MetricSeriesError` when there is none."""
    return scrape(client).value(name, **labels)


def counter(client: httpx.Client, name: str, **labels: str) -> float:
    """A counter's value that is 0 when this label set was never counted (see `Scrape.counter`)."""
    return scrape(client).counter(name, **labels)


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
