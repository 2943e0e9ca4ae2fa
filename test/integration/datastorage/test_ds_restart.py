"""DataStorage restarted (gracefully or killed) while events wait in the DLQ: the next instance stores them.

These run DataStorage as a process (`python -m datastorage`), as deployed,
with private PostgreSQL and Redis servers where a test stops PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from datastorage.dlq import CONSUMER_GROUP, DLQ_STREAM
from devstack.datastorage_process import DataStorageProcess
from localservers import PostgresServer, RedisServer
from processes.child import ProcessStartError
from processes.ports import reserve_port
from test.integration.datastorage.support import (
    BATCH_PATH,
    WorkerDatabases,
    dlq_length,
    make_event,
    redis_client,
    stored_count_by_id,
)
from test.integration.polling import eventually

# Entries held by a vanished instance are taken over after this long.
FAST_RETRY_FLAGS = ["--dlq-poll-interval", "0.05", "--dlq-backoff-max", "0.2", "--dlq-claim-idle", "0.5"]


@pytest.fixture
def servers() -> Iterator[tuple[PostgresServer, RedisServer]]:
    with PostgresServer() as postgres, RedisServer() as redis_server:
        yield postgres, redis_server


def held_by_workers(redis_url: str) -> int:
    with redis_client(redis_url) as client:
        return len(client.xpending_range(DLQ_STREAM, CONSUMER_GROUP, min="-", max="+", count=100))


def datastorage(database_url: str, redis_url: str, log: Path) -> DataStorageProcess:
    return DataStorageProcess(
        database_url=database_url,
        redis_url=redis_url,
        log_path=log,
        extra_args=[*FAST_RETRY_FLAGS, "--log-level", "warning"],
    )


@pytest.mark.parametrize("stop", ["graceful", "killed"])
def test_events_queued_before_a_restart_are_stored_once_by_the_next_instance(
    servers: tuple[PostgresServer, RedisServer], tmp_path: Path, correlation_id: str, stop: str
) -> None:
    postgres, redis_server = servers
    first = datastorage(postgres.url, redis_server.url, tmp_path / "first.log").start()
    try:
        stored = httpx.post(f"{first.url}{BATCH_PATH}", json=[make_event(correlation_id) for _ in range(2)])
        assert stored.status_code == 201
        postgres.stop(keep_data=True)
        queued = httpx.post(f"{first.url}{BATCH_PATH}", json=[make_event(correlation_id) for _ in range(5)])
        assert queued.status_code == 202
        # The first instance's worker has taken the entries and holds them: the next one must take them over.
        eventually(
            lambda: held_by_workers(redis_server.url) == 5, timeout=30, message="the worker holds the entries"
        )
    finally:
        first.stop() if stop == "graceful" else first.kill()
    assert dlq_length(redis_server.url) == 5

    postgres.start()
    with datastorage(postgres.url, redis_server.url, tmp_path / "second.log"):
        eventually(
            lambda: dlq_length(redis_server.url) == 0, timeout=30, message="the next instance drains the DLQ"
        )

    expected = set(stored.json()["event_ids"]) | set(queued.json()["event_ids"])
    assert stored_count_by_id(postgres.url, correlation_id) == dict.fromkeys(expected, 1)


def test_datastorage_refuses_to_start_without_postgres_and_says_why(
    worker_databases: WorkerDatabases, tmp_path: Path
) -> None:
    # Nothing listens on a port reserved and left unused: to DataStorage, PostgreSQL is down.
    with reserve_port() as no_postgres, worker_databases.redis_database() as redis_url:
        database_url = f"postgresql://datastorage:secret@127.0.0.1:{no_postgres.port}/datastorage"
        refused = datastorage(database_url, redis_url, tmp_path / "refused.log")
        try:
            with pytest.raises(
                ProcessStartError, match="cannot migrate PostgreSQL at postgresql://datastorage:\\*\\*\\*@"
            ):
                refused.start()
        finally:
            refused.close()
