"""Kubernetes Events for SignalProcessings, posted in the background.

Events are for people running `kubectl describe`; the reconcile never waits
for one. They are queued and posted by one task; under a burst the queue is
bounded and the oldest unposted Events are dropped (and counted), because
Kubernetes itself treats Events as best-effort and the audit trail, not the
Events, is the record that must be complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from prometheus_client import CollectorRegistry, Counter

from controller import kube
from controller.signalprocessing import API_VERSION, KIND, SignalProcessing, timestamp

EVENTS: Final = kube.Resource("", "v1", "events")
_COMPONENT: Final = "signalprocessing-controller"
_QUEUE_LIMIT: Final = 10_000
_CONCURRENCY: Final = 4

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvolvedObject:
    """The object an Event is about: a SignalProcessing, or the controller's own Pod."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, sp: SignalProcessing) -> InvolvedObject:
        metadata = sp.metadata
        return cls(API_VERSION, KIND, metadata.name, metadata.namespace, metadata.uid)


class EventRecorder:
    def __init__(self, api: kube.ApiClient, registry: CollectorRegistry) -> None:
        self._api = api
        self._queue: deque[dict[str, Any]] = deque(maxlen=_QUEUE_LIMIT)
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped = Counter(
            "signalprocessing_k8s_events_dropped_total",
            "Events dropped because the queue was full",
            registry=registry,
        )
        self._posted = Counter("signalprocessing_k8s_events_posted_total", "Events posted", registry=registry)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._post_forever()) for _ in range(_CONCURRENCY)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def record(
        self,
        involved: InvolvedObject,
        *,
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._dropped.inc()
        self._queue.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{involved.name}.{secrets.token_hex(8)}",
                    "namespace": involved.namespace,
                },
                "involvedObject": {
                    "apiVersion": involved.api_version,
                    "kind": involved.kind,
                    "name": involved.name,
                    "namespace": involved.namespace,
                    "uid": involved.uid,
                },
                "type": kind,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": _COMPONENT},
                "reportingComponent": _COMPONENT,
                "firstTimestamp": timestamp(now),
                "lastTimestamp": timestamp(now),
                "count": 1,
            }
        )
        self._ready.set()

    async def _post_forever(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            event = self._queue.popleft()
            try:
                await self._api.create(EVENTS, namespace=event["metadata"]["namespace"], body=event)
                self._posted.inc()
            except kube.ApiError as error:
                logger.warning("could not post Event %s: %s", event["reason"], error)
