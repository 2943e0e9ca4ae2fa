"""Delivery of audit events to DataStorage: never blocks a reconcile, never drops an event.

The pipeline hands events (built by ``controller.audit_events``) to ``AuditClient.emit``, which only
queues them. One background task sends them in batches to ``POST {url}/api/v1/audit/events/batch`` and
keeps retrying, with capped exponential backoff, for as long as DataStorage is down or failing. This
module owns that queue, the HTTP calls and the audit metrics; it knows nothing of Kubernetes or of the
event contents.

Guarantees and the choices behind them:

* At-least-once. An event leaves the queue only when DataStorage acknowledged it (201, or 202 when it
  was parked in DataStorage's dead-letter queue) or rejected it as invalid. Every event carries a
  deterministic ``event_id`` and DataStorage stores an id once, so retries and re-emission after a
  controller restart do not duplicate anything. The queue lives in memory: events still queued when
  the process dies are recovered by the pipeline building them again (same ids), not by this module.
* Poison events. A 400/413/422 for a batch means some element can never be accepted. The element
  DataStorage names (``index`` in the problem body, or ``event at index N`` in its detail) is taken
  out and the rest resent; when no index is given the batch is halved until the bad element is alone.
  That one element is quarantined: logged at ERROR with its full body and reason, counted, and not
  retried. Keeping it would block every event behind it forever, which would lose far more.
* A full queue. ``max_pending`` is a watermark, not a wall: above it ``emit`` still queues (it must
  neither drop, nor block, nor raise), logs once, and ``saturated`` turns true. The pipeline is
  expected to check ``saturated`` before it starts a phase step and to requeue the SP with a delay
  instead (nothing is lost: the step simply has not happened yet, and each step emits at most a few
  events). Memory is then bounded by ``max_pending`` plus the few events of the steps already running.
  Spilling to a local journal was rejected: it only moves the same "full" question to a disk that, in
  a pod, is as ephemeral as memory, and restart safety already comes from deterministic ids.
* Any other answer (5xx, 429, 404, other 4xx, an unexpected 2xx, a timeout, a refused connection) is
  treated as "DataStorage is not able to take it now": the same batch is retried, forever.
* Re-sent events. After a restart the pipeline hands over, with ``resend``, the trail of every SP it
  meets, most of it delivered long ago. Before such events are sent, DataStorage is asked which of them
  it has (``POST {url}/api/v1/audit/events/known``, by id and timestamp: one index probe each, no
  write, no chain lock); those are settled without being sent. A restart then costs one read per batch
  of trail events and writes only what never arrived, where sending every trail again cost a locked,
  refused write per event. The alternative, marking delivery in each SP's status, would cost every SP
  one more status write on the hot path to save work only at restarts. When the question cannot be
  answered the events are sent as usual: DataStorage stores an id once, so this only costs traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import aiohttp
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from controller.audit_events import AuditEvent

log = logging.getLogger(__name__)

BATCH_PATH: Final = "/api/v1/audit/events/batch"
KNOWN_PATH: Final = "/api/v1/audit/events/known"

_ACCEPTED: Final = frozenset({201, 202})
# Answers about the content of the batch: resending the same bytes can never succeed.
_REJECTED: Final = frozenset({400, 413, 422})
# Quarantined events are logged in full at ERROR (the durable record); this window is only for
# inspection, so that a long run with a broken producer cannot grow memory without bound.
_QUARANTINE_KEPT: Final = 1000
# Delivery latency spans from a normal flush interval to a DataStorage outage of an hour or more.
_LATENCY_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
_INDEX_IN_DETAIL: Final = re.compile(r"\bindex\s*:?\s*(\d+)")
# A DataStorage from before the question of known events: it answers the path with these.
_NOT_ASKABLE: Final = frozenset({404, 405})


@dataclass(frozen=True, slots=True)
class DeliveryBackoff:
    """Delay before the n-th consecutive retry of a batch: ``base * factor**n``, capped, with jitter.

    ``jitter`` is a fraction: each delay is scaled by a random factor in ``[1 - jitter, 1 + jitter]``
    (then capped), so that many controllers recovering together do not hit DataStorage in step.
    """

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        # The exponent is clamped so that retrying "forever" cannot overflow a float.
        raw = self.base * self.factor ** min(attempt, 64)
        scale = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter) if self.jitter else 1.0
        return max(0.0, min(self.cap, raw * scale))


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """An event DataStorage refused as invalid, kept for inspection."""

    event_id: str
    reason: str
    body: str


@dataclass(frozen=True, slots=True)
class _Queued:
    seq: int
    event_id: str
    body: bytes
    enqueued_at: float  # time.monotonic()
    resent_at: str | None = None  # a re-sent event's timestamp: DataStorage is asked about it first


@dataclass(frozen=True, slots=True)
class _Accepted:
    pass


@dataclass(frozen=True, slots=True)
class _Rejected:
    status: int
    detail: str
    index: int | None


@dataclass(frozen=True, slots=True)
class _Retry:
    reason: str


class _Metrics:
    def __init__(self, registry: CollectorRegistry, capacity: int) -> None:
        self.buffered = Counter(
            "audit_events_buffered_total", "Audit events accepted by emit() for delivery.", registry=registry
        )
        self.delivered = Counter(
            "audit_events_delivered_total",
            "Audit events acknowledged by DataStorage (201 or 202).",
            registry=registry,
        )
        self.retried = Counter(
            "audit_events_retried_total",
            "Audit events in a batch attempt that failed transiently and will be sent again.",
            registry=registry,
        )
        self.already_stored = Counter(
            "audit_events_already_stored_total",
            "Re-sent events (the trails met after a restart) DataStorage already had: not sent again.",
            registry=registry,
        )
        self.quarantined = Counter(
            "audit_events_quarantined_total",
            "Audit events refused as invalid (by DataStorage or unserialisable); logged, never retried.",
            registry=registry,
        )
        self.pending = Gauge(
            "audit_events_pending", "Audit events emitted and not yet settled.", registry=registry
        )
        self.capacity = Gauge(
            "audit_events_pending_limit",
            "Pending count above which the client reports saturation (max_pending).",
            registry=registry,
        )
        self.capacity.set(capacity)
        self.latency = Histogram(
            "audit_delivery_latency_seconds",
            "Time from emit() to DataStorage's acknowledgement, per event.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )


class AuditClient:
    """Queues audit events and delivers them to DataStorage in the background.

    Use it as an async context manager, or call ``start()`` and ``close()`` (for example from kopf's
    startup and cleanup handlers). ``emit`` is called on the event loop the client was started on: the
    controller is one asyncio process, so nothing here is guarded against other threads.
    Metrics are registered on ``registry`` (the default registry when omitted), so at most one client
    per registry can exist.
    """

    def __init__(
        self,
        base_url: str,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        request_timeout: float = 5.0,
        backoff: DeliveryBackoff | None = None,
        registry: CollectorRegistry | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("audit: base_url (DATA_STORAGE_URL) must not be empty")
        if batch_size < 1:
            raise ValueError(f"audit: batch_size must be >= 1, got {batch_size!r}")
        if flush_interval <= 0:
            raise ValueError(f"audit: flush_interval must be > 0 seconds, got {flush_interval!r}")
        if max_pending < batch_size:
            raise ValueError(f"audit: max_pending must be >= batch_size ({batch_size}), got {max_pending!r}")
        if request_timeout <= 0:
            raise ValueError(f"audit: request_timeout must be > 0 seconds, got {request_timeout!r}")

        self._url = base_url.rstrip("/") + BATCH_PATH
        self._known_url = base_url.rstrip("/") + KNOWN_PATH
        self._can_ask_known = True
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._backoff = backoff or DeliveryBackoff()
        self._rng = random.Random()
        self._metrics = _Metrics(REGISTRY if registry is None else registry, max_pending)
        self._session = session
        self._owns_session = session is None

        self._queue: deque[_Queued] = deque()
        self._next_seq = 0  # sequence number of the next emitted event
        self._unsettled = 0  # emitted and neither delivered nor quarantined
        self._saturation_reported = False

        # Batches are sent one at a time in queue order, so "every seq below this is settled" is exact.
        self._settled_upto = 0
        self._urgent_upto = 0  # events below this seq are sent without waiting for the interval
        self._progress = asyncio.Condition()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._quarantined: deque[QuarantinedEvent] = deque(maxlen=_QUARANTINE_KEPT)

    async def __aenter__(self) -> AuditClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pending(self) -> int:
        """Events emitted and not yet settled (delivered or quarantined), including the batch in flight."""
        return self._unsettled

    @property
    def saturated(self) -> bool:
        """True while ``pending >= max_pending``: callers should defer new work, not stop emitting."""
        return self._unsettled >= self._max_pending

    @property
    def quarantined(self) -> tuple[QuarantinedEvent, ...]:
        """The most recent events refused as invalid, oldest first."""
        return tuple(self._quarantined)

    async def start(self) -> None:
        """Start the background sender; events emitted before this are kept and sent."""
        if self._worker is not None:
            return
        if self._closed:
            raise RuntimeError("audit: a closed AuditClient cannot be started again")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._worker = asyncio.create_task(self._run(), name="audit-delivery")
        self._worker.add_done_callback(_report_worker_death)
        self._wakeup.set()

    def emit(self, event: AuditEvent) -> None:
        """Queue ``event`` for delivery. Never blocks, never raises, never drops.

        An event that cannot be serialised to JSON is quarantined at once instead of being queued.
        """
        try:
            self._enqueue(event)
        except Exception:
            # A reconcile must not fail because of audit; getting here is a bug in this module.
            log.exception("audit: could not queue event %s", getattr(event, "event_id", "?"))

    def resend(self, events: Sequence[AuditEvent]) -> None:
        """Queue events emitted before, perhaps by another process (a restart's trail): each is sent only if
        DataStorage does not have it already. Never blocks, never raises, never drops."""
        for event in events:
            try:
                self._enqueue(event, resent=True)
            except Exception:
                log.exception("audit: could not queue event %s", getattr(event, "event_id", "?"))

    async def flush(self) -> None:
        """Wait until every event emitted before this call is settled, sending partial batches now.

        Bound the wait with ``asyncio.timeout``; cancelling it leaves the client running and the events
        queued. Raises ``RuntimeError`` if events are waiting but the client is not running.
        """
        target = self._next_seq
        if self._settled_upto >= target:
            return
        if self._worker is None or self._worker.done():
            raise RuntimeError(
                f"audit: {target - self._settled_upto} events pending and the client is not running"
            )
        self._urgent_upto = max(self._urgent_upto, target)
        self._wakeup.set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._settled_upto >= target)

    # The timeout is not the caller's to impose from outside: when it expires, close() still has to stop
    # the sender and release the session.
    async def close(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Flush for at most ``timeout`` seconds, then stop; returns how many events are left undelivered.

        Left-over events are reported at ERROR. They are recovered only if the pipeline re-emits them
        after the restart (same ids). Calling ``close`` again is harmless.
        """
        self._closed = True
        worker = self._worker
        if worker is not None and not worker.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.flush()
            worker.cancel()
            # wait() rather than awaiting the task: a cancellation of close() itself must still propagate.
            await asyncio.wait([worker])
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        left = self._unsettled
        if left:
            log.error("audit: closing with %d events not delivered to DataStorage", left)
        return left

    def _enqueue(self, event: AuditEvent, *, resent: bool = False) -> None:
        event_id = str(event.event_id)
        raw = event.to_raw()
        try:
            body = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self._quarantine(event_id, f"not serialisable as JSON: {exc}", repr(event))
            return
        if self._closed:
            log.error("audit: event %s emitted after close() began; it may not be delivered", event_id)
        resent_at = str(raw["event_timestamp"]) if resent else None
        self._queue.append(_Queued(self._next_seq, event_id, body.encode(), time.monotonic(), resent_at))
        self._next_seq += 1
        self._unsettled += 1
        pending = self._unsettled
        self._metrics.buffered.inc()
        self._metrics.pending.inc()
        if pending >= self._max_pending and not self._saturation_reported:
            self._saturation_reported = True
            log.warning(
                "audit: %d events pending (max_pending=%d); still queueing, callers should defer new work",
                pending,
                self._max_pending,
            )
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._deliver(batch)
            async with self._progress:
                self._settled_upto = batch[-1].seq + 1
                self._progress.notify_all()

    async def _next_batch(self) -> list[_Queued]:
        """Wait until a batch is due: full, or its oldest event waited ``flush_interval``, or flushed."""
        while True:
            self._wakeup.clear()  # before looking, so that a later emit() is never missed
            if self._queue:
                oldest = self._queue[0]
                due = oldest.enqueued_at + self._flush_interval
                if (
                    len(self._queue) >= self._batch_size
                    or oldest.seq < self._urgent_upto
                    or time.monotonic() >= due
                ):
                    count = min(self._batch_size, len(self._queue))
                    return [self._queue.popleft() for _ in range(count)]
                wait: float | None = due - time.monotonic()
            else:
                wait = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()

    async def _deliver(self, batch: list[_Queued]) -> None:
        """Send ``batch`` until every element is delivered or quarantined."""
        chunks: deque[list[_Queued]] = deque([batch])
        failures = 0
        while chunks:
            chunk = chunks.popleft()
            if any(item.resent_at is not None for item in chunk):
                chunk = await self._leave_out_stored(chunk)
                if not chunk:
                    continue
            verdict = await self._send(chunk)
            if isinstance(verdict, _Accepted):
                failures = 0
                now = time.monotonic()
                for item in chunk:
                    self._metrics.latency.observe(now - item.enqueued_at)
                self._metrics.delivered.inc(len(chunk))
                self._settle(len(chunk))
            elif isinstance(verdict, _Rejected):
                failures = 0
                chunks.extendleft(reversed(self._split_rejected(chunk, verdict)))
            else:
                self._metrics.retried.inc(len(chunk))
                delay = self._backoff.delay(failures, self._rng)
                failures += 1
                log.warning(
                    "audit: batch of %d events not accepted (%s); retry %d in %.2fs",
                    len(chunk),
                    verdict.reason,
                    failures,
                    delay,
                )
                chunks.appendleft(chunk)
                await asyncio.sleep(delay)

    async def _leave_out_stored(self, chunk: list[_Queued]) -> list[_Queued]:
        """The chunk without the re-sent events DataStorage has (settled here), the rest no longer re-sent;
        the chunk as it is when DataStorage cannot say now (it is asked again before the next attempt)."""
        resent = [item for item in chunk if item.resent_at is not None]
        known = await self._ask_known(resent) if self._can_ask_known else set()
        if known is None:
            return chunk
        left = []
        for item in chunk:
            if item.event_id in known:
                self._metrics.already_stored.inc()
                self._settle(1)
            else:
                left.append(dataclasses.replace(item, resent_at=None))
        return left

    async def _ask_known(self, resent: Sequence[_Queued]) -> set[str] | None:
        """The ids of these events DataStorage has stored; None when it cannot say now."""
        session = self._session
        if session is None:
            return None
        query = {
            "events": [{"event_id": item.event_id, "event_timestamp": item.resent_at} for item in resent]
        }
        try:
            async with session.post(self._known_url, json=query, timeout=self._request_timeout) as response:
                if response.status in _NOT_ASKABLE:
                    self._can_ask_known = False
                    log.warning(
                        "audit: DataStorage cannot say which events it has (HTTP %d at %s): re-sent trails "
                        "are sent whole, and DataStorage leaves out what it has",
                        response.status,
                        self._known_url,
                    )
                    return set()
                if response.status != 200:
                    return None
                answer = await response.json()
                return {str(event_id) for event_id in answer["known"]}
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError, TypeError):
            return None

    def _split_rejected(self, chunk: list[_Queued], verdict: _Rejected) -> list[list[_Queued]]:
        """What is left to send after a rejection: the named element quarantined, or two halves."""
        reason = f"HTTP {verdict.status}: {verdict.detail}"
        index = verdict.index
        if index is not None and 0 <= index < len(chunk):
            self._quarantine_queued(chunk[index], reason)
            rest = chunk[:index] + chunk[index + 1 :]
            return [rest] if rest else []
        if len(chunk) == 1:
            self._quarantine_queued(chunk[0], reason)
            return []
        middle = len(chunk) // 2
        log.info(
            "audit: DataStorage refused a batch of %d without naming the element (%s); halving it",
            len(chunk),
            reason,
        )
        return [chunk[:middle], chunk[middle:]]

    async def _send(self, chunk: Sequence[_Queued]) -> _Accepted | _Rejected | _Retry:
        session = self._session
        if session is None:
            return _Retry("no HTTP session")
        body = b"[" + b",".join(item.body for item in chunk) + b"]"
        try:
            async with session.post(
                self._url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self._request_timeout,
            ) as response:
                if response.status in _ACCEPTED:
                    return _Accepted()
                answer = (await response.read()).decode("utf-8", "replace")
                if response.status in _REJECTED:
                    detail, index = _problem_detail(answer)
                    return _Rejected(response.status, detail, index)
                return _Retry(f"HTTP {response.status}: {answer[:200]}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Retry(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            # Unknown failures are retried like transient ones: dropping the batch would lose events.
            log.exception("audit: unexpected error while sending a batch")
            return _Retry(f"{type(exc).__name__}: {exc}")

    def _quarantine_queued(self, item: _Queued, reason: str) -> None:
        self._quarantine(item.event_id, reason, item.body.decode("utf-8", "replace"))
        self._settle(1)

    def _quarantine(self, event_id: str, reason: str, body: str) -> None:
        log.error(
            "audit: event %s refused and quarantined; it will not be retried (%s). Event: %s",
            event_id,
            reason,
            body,
        )
        self._quarantined.append(QuarantinedEvent(event_id, reason, body))
        self._metrics.quarantined.inc()

    def _settle(self, count: int) -> None:
        self._unsettled -= count
        pending = self._unsettled
        self._metrics.pending.dec(count)
        if self._saturation_reported and pending < self._max_pending:
            self._saturation_reported = False
            log.info("audit: back under max_pending (%d events pending)", pending)


def _problem_detail(answer: str) -> tuple[str, int | None]:
    """The detail of an RFC 7807 answer and the index of the bad element, when it names one."""
    detail = answer
    try:
        problem = json.loads(answer)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        index = problem.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return str(problem.get("detail", answer)), index
        if isinstance(problem.get("detail"), str):
            detail = problem["detail"]
    match = _INDEX_IN_DETAIL.search(detail)
    return detail, int(match.group(1)) if match else None


def _report_worker_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("audit: delivery task died; events are no longer sent", exc_info=task.exception())
