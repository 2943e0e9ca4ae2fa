"""Test doubles for the audit tests: a scriptable DataStorage on 127.0.0.1, events, and a polling helper.

The fake speaks the batch endpoint and the question of known events. It stores each event id once, as
DataStorage does, and can be told to fail, hang, refuse a batch as too large, reject poison events with
or without naming them, or not know the question of known events (an older DataStorage).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from controller.audit import DeliveryBackoff
from controller.audit_events import AuditEvent, AuditSubject, phase_transition

IndexStyle = Literal["field", "detail", "none"]

FAST_BACKOFF = DeliveryBackoff(base=0.001, factor=2.0, cap=0.005, jitter=0.0)


class FakeDataStorage:
    """``POST /api/v1/audit/events/batch`` on a real socket, with scripted misbehaviour."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[list[dict[str, Any]]] = []  # every batch received, answered or not
        self.content_types: list[str] = []
        self.stored: dict[str, dict[str, Any]] = {}  # event_id -> event, first write wins
        self.answers: deque[int] = deque()  # statuses to answer the next requests with, in order
        self.hang_next = 0  # requests to leave unanswered until stop()
        self.poison: set[str] = set()  # event ids answered with 400
        self.index_style: IndexStyle = "detail"
        self.max_batch: int | None = None  # larger batches get 413
        self.known_queries: list[list[dict[str, Any]]] = []  # every question of known events
        self.known_answers: deque[int] = deque()  # statuses to answer the next questions with
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def stored_ids(self) -> list[str]:
        """The ids stored so far, in the order DataStorage first accepted them."""
        return list(self.stored)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/audit/events/batch", self._batch)
        app.router.add_post("/api/v1/audit/events/known", self._known)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, shutdown_timeout=0.5).start()

    def release(self) -> None:
        """Answer the requests left hanging by ``hang_next``."""
        self._release.set()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._release = asyncio.Event()

    async def _batch(self, request: web.Request) -> web.Response:
        batch: list[dict[str, Any]] = await request.json()
        self.requests.append(batch)
        self.content_types.append(request.content_type)
        if self.hang_next:
            self.hang_next -= 1
            await self._release.wait()
        if self.answers:
            status = self.answers.popleft()
            return _problem(status, f"scripted {status}")
        if self.max_batch is not None and len(batch) > self.max_batch:
            return _problem(413, f"batch of {len(batch)} is too large")
        for index, event in enumerate(batch):
            if event["event_id"] in self.poison:
                return self._reject(index)
        for event in batch:
            self.stored.setdefault(event["event_id"], event)
        ids = [event["event_id"] for event in batch]
        return web.json_response(
            {"event_ids": ids, "message": f"{len(ids)} audit events created"}, status=201
        )

    async def _known(self, request: web.Request) -> web.Response:
        asked: list[dict[str, Any]] = (await request.json())["events"]
        self.known_queries.append(asked)
        if self.known_answers:
            status = self.known_answers.popleft()
            return _problem(status, f"scripted {status}")
        known = [key["event_id"] for key in asked if key["event_id"] in self.stored]
        return web.json_response({"known": known})

    def _reject(self, index: int) -> web.Response:
        if self.index_style == "field":
            return _problem(400, "invalid event", index=index)
        if self.index_style == "detail":
            return _problem(400, f"event at index {index}: event_data must be an object")
        return _problem(400, "validation failed")


def _problem(status: int, detail: str, **extra: Any) -> web.Response:
    body = {"type": "https://kubernaut.ai/problems/test", "title": "Test", "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body | extra), content_type="application/problem+json")


def make_events(count: int, *, prefix: str = "sp", at: datetime | None = None) -> list[AuditEvent]:
    """``count`` distinct events (one SP each), in a stable order."""
    when = at or datetime.now(UTC)
    return [
        phase_transition(
            AuditSubject(
                namespace="ns",
                name=f"{prefix}-{i}",
                uid=f"{prefix}-uid-{i}",
                correlation_id=f"rr-{prefix}-{i}",
                signal_name="HighMemoryUsage",
                severity="warning",
            ),
            from_phase="Pending",
            to_phase="Enriching",
            at=when,
        )
        for i in range(count)
    ]


def ids(events: list[AuditEvent]) -> list[str]:
    return [str(event.event_id) for event in events]
