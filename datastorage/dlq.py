"""The dead-letter queue: where accepted events wait in Redis while PostgreSQL is unavailable.

`DeadLetterQueue.enqueue` appends records to the stream `audit:dlq:events`,
one entry each, all or none, and refuses (rather than silently trimming old
entries) when the stream is at its maximum length, so an accepted event is
never dropped.

`DlqRetryWorker` drains the stream into PostgreSQL through a consumer group,
so several DataStorage instances can share it and entries held by an instance
that died are taken over after `claim_idle`. While PostgreSQL or Redis is
unavailable it backs off and keeps the entries, and logs the outage when it
begins and when it ends, not at every retry. An entry that PostgreSQL
rejects is put back with its attempt count raised; after `max_attempts` it
moves to `audit:dead-letter:events` and is counted. Storing is idempotent on
the event id, so an entry written twice (a crash between insert and
acknowledgement) is still stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from datastorage.config import DlqSettings
from datastorage.errors import QueueUnavailable, StorageUnavailable
from datastorage.metrics import Metrics
from datastorage.outages import OutageLog
from datastorage.records import AuditRecord
from datastorage.store import EventStore, RecordsRejected
from datastorage.timestamps import Clock, format_timestamp

log = logging.getLogger(__name__)

DLQ_STREAM: Final = "audit:dlq:events"
DEAD_LETTER_STREAM: Final = "audit:dead-letter:events"
CONSUMER_GROUP: Final = "datastorage-dlq-retry"
DEAD_LETTER_MAX_LEN: Final = 100_000
MESSAGE_TYPE: Final = "audit_event"

# Checks room and appends in one atomic step: either every message of a batch
# is queued or none is. MAXLEN ~ is only a guard; the room check keeps the
# stream below it, so trimming never removes an accepted event.
_ENQUEUE_SCRIPT: Final = """
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
if #ARGV - 1 > room then
  return redis.error_reply('DLQFULL room for ' .. room .. ' more')
end
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'message', ARGV[i])
end
return ids
"""

Entry = tuple[str, dict[str, str] | None]


class DeadLetterQueue:
    def __init__(self, redis: Redis[str], *, max_len: int, metrics: Metrics, clock: Clock) -> None:
        self._redis = redis
        self._max_len = max_len
        self._metrics = metrics
        self._clock = clock
        self._enqueue = redis.register_script(_ENQUEUE_SCRIPT)

    async def enqueue(self, records: Sequence[AuditRecord], *, reason: str) -> None:
        """Queues all records or none; raises QueueUnavailable when Redis is down or the queue is full."""
        messages = [self.envelope(record, reason=reason) for record in records]
        try:
            await self._enqueue(keys=[DLQ_STREAM], args=[self._max_len, *messages])
            depth = int(await self._redis.xlen(DLQ_STREAM))
        except ResponseError as error:
            if "DLQFULL" in str(error):
                raise QueueUnavailable(
                    f"dead-letter queue is full ({self._max_len} events): {error}".replace("DLQFULL ", "")
                ) from error
            raise QueueUnavailable(f"Redis refused the events: {error}") from error
        except (RedisError, OSError) as error:
            raise QueueUnavailable(f"Redis unavailable: {error}") from error
        self._metrics.dlq_enqueued.inc(len(records))
        self._metrics.record_dlq_depth(depth, self._max_len)

    def envelope(self, record: AuditRecord, *, reason: str, retry_count: int = 0) -> str:
        """The stream message: kubernaut's envelope around the record's payload."""
        return json.dumps(
            {
                "type": MESSAGE_TYPE,
                "payload": record.to_payload(),
                "timestamp": format_timestamp(self._clock()),
                "retry_count": retry_count,
                "last_error": reason,
            },
            ensure_ascii=False,
            allow_nan=False,
        )

    async def depth(self) -> int:
        return int(await self._redis.xlen(DLQ_STREAM))


@dataclass(frozen=True, slots=True)
class _Decoded:
    entry_id: str
    envelope: dict[str, Any]
    record: AuditRecord


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one pass over the queue did: entries seen, and whether PostgreSQL refused any (then back off)."""

    handled: int
    had_failures: bool


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class DlqRetryWorker:
    """Moves queued events into PostgreSQL; `run()` until cancelled."""

    def __init__(
        self,
        redis: Redis[str],
        store: EventStore,
        queue: DeadLetterQueue,
        *,
        settings: DlqSettings,
        metrics: Metrics,
        clock: Clock,
        consumer: str | None = None,
    ) -> None:
        self._redis = redis
        self._store = store
        self._queue = queue
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self.consumer = consumer or default_consumer_name()
        self._group_ready = False
        self._redis_outage = OutageLog(
            log, began="Redis unreachable: DLQ retry paused", ended="Redis reachable again"
        )
        # The write path already warns that PostgreSQL is down; the worker only says when it waits for it.
        self._postgres_outage = OutageLog(
            log,
            began="PostgreSQL unreachable: DLQ retry waits",
            ended="DLQ retry resumed",
            level=logging.INFO,
        )

    async def run(self) -> None:
        backoff = self._settings.backoff_initial
        while True:
            _stop_if_cancelled()
            try:
                result = await self.drain_once()
            except StorageUnavailable as error:
                # Redis answered: the entries PostgreSQL did not take were read from it.
                self._redis_outage.succeeded()
                self._postgres_outage.failed(error.detail, wait_seconds=backoff)
                self._metrics.dlq_retry_failures.labels(dependency="postgresql").inc()
                result = RoundResult(handled=0, had_failures=True)
            except (RedisError, OSError) as error:
                self._group_ready = False
                self._redis_outage.failed(str(error), wait_seconds=backoff)
                self._metrics.dlq_retry_failures.labels(dependency="redis").inc()
                result = RoundResult(handled=0, had_failures=True)
            else:
                self._redis_outage.succeeded()
                self._postgres_outage.succeeded()
            if result.had_failures:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.backoff_max)
                continue
            backoff = self._settings.backoff_initial
            if result.handled == 0:
                await asyncio.sleep(self._settings.poll_interval)

    async def drain_once(self) -> RoundResult:
        """Takes one chunk (own unfinished entries, then stale ones of others, then new) and stores it."""
        await self._ensure_group()
        entries = await self._next_entries()
        if not entries:
            await self._record_depth()
            return RoundResult(handled=0, had_failures=False)
        decoded: list[_Decoded] = []
        had_failures = False
        for entry_id, fields in entries:
            if fields is None:
                # Pending but already deleted from the stream: nothing left to store.
                await self._remove([entry_id])
                continue
            item = _decode(entry_id, fields)
            if isinstance(item, str):
                # Retrying cannot help an entry that cannot be read: bury it now, without backing off.
                await self._bury(entry_id, fields, retry_count=0, error=item)
            else:
                decoded.append(item)
        if decoded:
            try:
                await self._store.save([item.record for item in decoded], table_label="audit_events_dlq")
                await self._remove([item.entry_id for item in decoded])
                self._metrics.dlq_drained.inc(len(decoded))
            except RecordsRejected:
                had_failures = await self._store_one_by_one(decoded) or had_failures
        await self._record_depth()
        return RoundResult(handled=len(entries), had_failures=had_failures)

    async def release(self) -> None:
        """Leaves the consumer group if this worker holds no unfinished entries (graceful shutdown)."""
        with contextlib.suppress(RedisError, OSError):
            pending = await self._redis.xpending_range(
                DLQ_STREAM, CONSUMER_GROUP, min="-", max="+", count=1, consumername=self.consumer
            )
            if not pending:
                await self._redis.xgroup_delconsumer(  # type: ignore[no-untyped-call]  # stub lacks types
                    DLQ_STREAM, CONSUMER_GROUP, self.consumer
                )

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(DLQ_STREAM, CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def _next_entries(self) -> list[Entry]:
        count = self._settings.batch_size
        try:
            own = await self._redis.xreadgroup(CONSUMER_GROUP, self.consumer, {DLQ_STREAM: "0"}, count=count)
            if entries := _stream_entries(own):
                return entries
            claimed = await self._redis.xautoclaim(
                DLQ_STREAM,
                CONSUMER_GROUP,
                self.consumer,
                min_idle_time=int(self._settings.claim_idle * 1000),
                start_id="0-0",
                count=count,
            )
            if claimed[1]:
                return [(entry_id, fields) for entry_id, fields in claimed[1]]
            new = await self._redis.xreadgroup(CONSUMER_GROUP, self.consumer, {DLQ_STREAM: ">"}, count=count)
            return _stream_entries(new)
        except ResponseError as error:
            if "NOGROUP" in str(error):
                # Redis lost the group (restarted without data); make it again next round.
                self._group_ready = False
                return []
            raise

    async def _store_one_by_one(self, decoded: Sequence[_Decoded]) -> bool:
        """Finds the entries PostgreSQL refuses; stores the others. True when any was refused."""
        refused = False
        for item in decoded:
            try:
                await self._store.save([item.record], table_label="audit_events_dlq")
            except RecordsRejected as error:
                refused = True
                await self._retry_later(item, error=error.detail)
                continue
            await self._remove([item.entry_id])
            self._metrics.dlq_drained.inc()
        return refused

    async def _retry_later(self, item: _Decoded, *, error: str) -> None:
        attempts = int(item.envelope.get("retry_count", 0)) + 1
        if attempts >= self._settings.max_attempts:
            await self._bury(
                item.entry_id, {"message": json.dumps(item.envelope)}, retry_count=attempts, error=error
            )
            return
        requeued = self._queue.envelope(item.record, reason=error, retry_count=attempts)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(DLQ_STREAM, CONSUMER_GROUP, item.entry_id)
            pipe.xdel(DLQ_STREAM, item.entry_id)
            pipe.xadd(DLQ_STREAM, {"message": requeued})
            await pipe.execute()
        self._metrics.dlq_retried.inc()
        log.warning(
            "PostgreSQL refused a DLQ entry; will retry",
            extra={"event_id": str(item.record.event_id), "attempt": attempts, "error": error},
        )

    async def _bury(self, entry_id: str, fields: dict[str, str], *, retry_count: int, error: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                DEAD_LETTER_STREAM,
                {
                    "message": fields.get("message", ""),
                    "original_id": entry_id,
                    "moved_at": format_timestamp(self._clock()),
                    "final_retry_count": str(retry_count),
                    "last_error": error,
                },
                maxlen=DEAD_LETTER_MAX_LEN,
                approximate=True,
            )
            pipe.xack(DLQ_STREAM, CONSUMER_GROUP, entry_id)
            pipe.xdel(DLQ_STREAM, entry_id)
            await pipe.execute()
        self._metrics.dlq_dead_lettered.inc()
        log.error(
            "DLQ entry moved to the dead-letter stream",
            extra={"entry_id": entry_id, "attempts": retry_count, "error": error},
        )

    async def _remove(self, entry_ids: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(DLQ_STREAM, CONSUMER_GROUP, *entry_ids)
            pipe.xdel(DLQ_STREAM, *entry_ids)
            await pipe.execute()

    async def _record_depth(self) -> None:
        self._metrics.record_dlq_depth(await self._queue.depth(), self._settings.max_len)


def _stop_if_cancelled() -> None:
    """Raises CancelledError if this task was cancelled but the cancellation got lost on the way.

    redis-py bounds every command with `asyncio.wait_for`, which on Python 3.11
    returns the command's result, and drops the cancellation, when both arrive
    at once. The worker would then go on retrying, and shutdown would wait for
    it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _stream_entries(reply: Any) -> list[Entry]:
    """XREADGROUP's reply (a list or, on RESP3, a dict) flattened to the entries of our one stream."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    entries: list[Entry] = []
    for _name, stream_entries in streams:
        entries.extend((entry_id, fields) for entry_id, fields in stream_entries)
    return entries


def _decode(entry_id: str, fields: dict[str, str]) -> _Decoded | str:
    """The entry's envelope and record, or a reason why it can never be stored."""
    if "message" not in fields:
        return "entry has no message field"
    try:
        envelope = json.loads(fields["message"])
        if not isinstance(envelope, dict) or envelope.get("type") != MESSAGE_TYPE:
            return f"message is not an {MESSAGE_TYPE} envelope"
        payload = envelope.get("payload")
        if not isinstance(payload, dict):
            return "envelope has no payload object"
        return _Decoded(entry_id, envelope, AuditRecord.from_payload(payload))
    except ValueError as error:
        return f"undecodable message: {error}"
