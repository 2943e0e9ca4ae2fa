"""Opens and closes everything one DataStorage instance runs on, in order.

`open_service` reads the hash chain's key (if one is configured), checks
Redis, applies migrations, opens the PostgreSQL pool, creates the partitions
the clock calls for, and starts the background tasks (DLQ retry, partition
upkeep, and the retention purge when it is enabled). On exit it stops them
and closes the clients. A failure at start raises `StartupError` with a
message that names the server and URL (password hidden), so the process can
stop with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from datastorage.config import Settings, redact_url
from datastorage.dlq import DeadLetterQueue, DlqRetryWorker
from datastorage.hashing import EventHasher, HashKeyError, load_hash_key
from datastorage.ingest import AuditIngest
from datastorage.metrics import Metrics
from datastorage.migrations import migrate
from datastorage.partitions import PartitionKeeper
from datastorage.retention import RetentionPurger
from datastorage.store import EventStore, open_pool
from datastorage.timestamps import Clock

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 5.0


class StartupError(RuntimeError):
    """DataStorage cannot start; the message says which dependency failed and why."""


@dataclass
class Service:
    """The live parts of one instance, shared by all requests."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    redis: Redis[str]
    store: EventStore
    queue: DeadLetterQueue
    ingest: AuditIngest
    worker: DlqRetryWorker
    shutting_down: bool = False
    background: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def open_service(settings: Settings, *, clock: Clock, metrics: Metrics) -> AsyncIterator[Service]:
    hasher = event_hasher(settings)
    async with contextlib.AsyncExitStack() as stack:
        redis = Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
        )
        stack.push_async_callback(_close_redis, redis)
        await _check_redis(redis, settings.redis_url)
        await _migrate(settings.database_url, connect_timeout=settings.db_timeout)
        pool = await _open_pool(settings)
        stack.push_async_callback(_close_pool, pool)

        partitions = PartitionKeeper(
            pool,
            clock=clock,
            months_ahead=settings.partition_months_ahead,
            interval=settings.partition_check_interval,
            metrics=metrics,
        )
        await partitions.ensure_current()
        store = EventStore(
            pool, partitions=partitions, metrics=metrics, timeout=settings.db_timeout, hasher=hasher
        )
        queue = DeadLetterQueue(redis, max_len=settings.dlq.max_len, metrics=metrics, clock=clock)
        worker = DlqRetryWorker(redis, store, queue, settings=settings.dlq, metrics=metrics, clock=clock)
        service = Service(
            settings=settings,
            clock=clock,
            metrics=metrics,
            redis=redis,
            store=store,
            queue=queue,
            ingest=AuditIngest(store, queue, metrics, group_max_events=settings.group_commit_max_events),
            worker=worker,
        )
        service.background = [
            asyncio.create_task(worker.run(), name="dlq-retry"),
            asyncio.create_task(partitions.run(), name="partition-upkeep"),
        ]
        if settings.retention.enabled:
            purger = RetentionPurger(pool, clock=clock, settings=settings.retention)
            service.background.append(asyncio.create_task(purger.run(), name="retention"))
        stack.push_async_callback(_stop_background, service)
        log.info(
            "DataStorage started",
            extra={
                "dlq_consumer": worker.consumer,
                # The loop it really runs on: uvicorn's own choice applies only under uvicorn.run.
                "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
                "http": settings.http,
                "group_commit_max_events": settings.group_commit_max_events,
            },
        )
        yield service


async def preflight(settings: Settings) -> None:
    """Checks the hash key, Redis, and migrates PostgreSQL before a server starts, so a failure is one
    clear error."""
    event_hasher(settings)
    redis = Redis.from_url(
        settings.redis_url, decode_responses=True, socket_connect_timeout=settings.redis_timeout
    )
    try:
        await _check_redis(redis, settings.redis_url)
    finally:
        await _close_redis(redis)
    await _migrate(settings.database_url, connect_timeout=settings.db_timeout)


def event_hasher(settings: Settings) -> EventHasher:
    """Keyed when a key file is configured; raises StartupError (naming the file, never the key) if it
    cannot be read."""
    if settings.audit_hash_key_file is None:
        return EventHasher()
    try:
        return EventHasher(load_hash_key(settings.audit_hash_key_file))
    except HashKeyError as error:
        raise StartupError(str(error)) from None


async def _check_redis(redis: Redis[str], url: str) -> None:
    try:
        await redis.ping()
    except (RedisError, OSError) as error:
        raise StartupError(f"cannot reach Redis at {redact_url(url)}: {error}") from error


async def _migrate(database_url: str, *, connect_timeout: float) -> None:
    try:
        applied = await migrate(database_url, connect_timeout=connect_timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise StartupError(f"cannot migrate PostgreSQL at {redact_url(database_url)}: {error}") from error
    for migration in applied:
        log.info("applied migration", extra={"version": migration.version, "migration": migration.name})


async def _open_pool(settings: Settings) -> asyncpg.Pool:
    try:
        return await open_pool(
            settings.database_url, max_size=settings.db_pool_size, command_timeout=settings.db_timeout
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise StartupError(
            f"cannot connect to PostgreSQL at {redact_url(settings.database_url)}: {error}"
        ) from error


async def _stop_background(service: Service) -> None:
    service.shutting_down = True
    for task in service.background:
        task.cancel()
    await asyncio.gather(*service.background, return_exceptions=True)
    await service.worker.release()


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pool.terminate()


async def _close_redis(redis: Redis[str]) -> None:
    with contextlib.suppress(RedisError, OSError):
        await redis.aclose()  # type: ignore[attr-defined]
