"""Decides when a SignalProcessing is processed: once per change, never concurrently, retried on time.

kopf delivers every watch event, including the echoes of the controller's own
status writes. The pipeline already ran those phases, so an event whose phase
is behind what this process wrote is stale and skipped. An SP that failed
transiently waits for its retry timer, not for the next event. The first time
this process meets an SP (after a start or a restart) it re-sends the audit
trail the SP's status implies, so that an event lost in a crash between a
status write and its delivery is not lost; the audit client sends only the
events DataStorage does not have, and the event ids make any repeat harmless.

With sharding, an SP of a shard this replica does not own is left alone, its
retry included (the owner has its own); the SPs of shards it takes over are
handed in by `adopt`, from a listing, since their events went to another replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from controller import kube
from controller.audit_events import AuditEvent
from controller.pipeline import AuditSink, RetryLater
from controller.signalprocessing import Phase, SignalProcessing

_REMEMBERED: Final = 50_000  # SPs whose progress is kept; older ones only cost a trail re-send
# A bug is no reason to drop an SP (kopf would log the exception and never hand it over again); it is
# tried again after this long, which keeps a persistent bug from spinning.
_AFTER_AN_UNEXPECTED_ERROR: Final = 60.0

logger = logging.getLogger(__name__)


class Advancer(Protocol):
    """What the reconciler drives (`controller.pipeline.Pipeline`)."""

    async def advance(self, sp: SignalProcessing) -> SignalProcessing:
        """Runs the remaining steps; returns the SP as last written. Raises `RetryLater`."""
        ...

    async def fetch(self, name: str, namespace: str) -> SignalProcessing | None:
        """The SP as the API server has it now; None when it is gone."""
        ...

    def trail(self, sp: SignalProcessing) -> list[AuditEvent]:
        """The audit trail the SP's status implies, ready to send."""
        ...


class Reconciler:
    """`max_concurrent` SPs take their steps at once; kopf hands over every SP of a burst at once, and
    thousands of pipelines at once would time out against the API server together."""

    def __init__(
        self,
        pipeline: Advancer,
        audit: AuditSink,
        *,
        max_concurrent: int,
        owns: Callable[[SignalProcessing], bool] = lambda _: True,
    ) -> None:
        self._pipeline = pipeline
        self._owns = owns
        self._audit = audit
        self._slots = asyncio.Semaphore(max_concurrent)
        self._progress: OrderedDict[str, Phase] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_event(self, sp: SignalProcessing) -> None:
        uid = sp.metadata.uid
        if not self._owns(sp):
            return
        if uid in self._retries:
            return  # a retry is scheduled; this is the echo of recording the failure
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock:
            await self._process(sp)

    def adopt(self, sps: Iterable[SignalProcessing]) -> int:
        """Handles the SPs among `sps` that this replica owns, in the background, as if their latest
        event had just come; returns how many are unfinished. A shard taken over brings its SPs here.

        Finished ones too: a replica killed right after finishing an SP may not have delivered its
        last audit events, and meeting the SP re-sends the trail (only what DataStorage lacks).
        """
        unfinished = 0
        for sp in sps:
            if not self._owns(sp):
                continue
            task = asyncio.get_running_loop().create_task(self.on_event(sp))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            unfinished += not sp.phase.is_terminal
        return unfinished

    def forget(self, uid: str) -> None:
        self._progress.pop(uid, None)
        self._locks.pop(uid, None)
        timer = self._retries.pop(uid, None)
        if timer is not None:
            timer.cancel()

    async def close(self) -> None:
        for timer in self._retries.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    async def _process(self, sp: SignalProcessing) -> None:
        uid = sp.metadata.uid
        phase = sp.phase
        known = self._progress.get(uid)
        if known is None:
            self._audit.resend(self._pipeline.trail(sp))
        elif phase.order < known.order or known.is_terminal:
            return
        if phase.is_terminal:
            self._remember(uid, phase)
            return
        try:
            async with self._slots:
                final = await self._pipeline.advance(sp)
        except RetryLater as retry:
            logger.info("%s: %s", sp.key, retry)
            self._schedule_retry(sp, retry.delay)
            return
        except Exception:
            logger.exception(
                "%s: processing failed unexpectedly; retrying in %.0fs", sp.key, _AFTER_AN_UNEXPECTED_ERROR
            )
            self._schedule_retry(sp, _AFTER_AN_UNEXPECTED_ERROR)
            return
        self._remember(uid, final.phase)
        self._locks.pop(uid, None)

    def _remember(self, uid: str, phase: Phase) -> None:
        self._progress[uid] = phase
        self._progress.move_to_end(uid)
        while len(self._progress) > _REMEMBERED:
            self._progress.popitem(last=False)

    def _schedule_retry(self, sp: SignalProcessing, delay: float) -> None:
        uid, name, namespace = sp.metadata.uid, sp.metadata.name, sp.metadata.namespace

        def fire() -> None:
            self._retries.pop(uid, None)
            task = asyncio.get_running_loop().create_task(self._retry(name, namespace))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._retries[uid] = asyncio.get_running_loop().call_later(delay, fire)

    async def _retry(self, name: str, namespace: str) -> None:
        try:
            fresh = await self._pipeline.fetch(name, namespace)
        except kube.ApiError as error:
            logger.warning("retry of %s/%s could not read it: %s", namespace, name, error)
            return
        if fresh is not None:
            await self.on_event(fresh)
