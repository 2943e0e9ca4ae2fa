"""Fixtures for the audit tests: the fake DataStorage (up, or down until started) and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.audit import AuditClient
from processes.ports import reserve_port

from .fakes import FAST_BACKOFF, FakeDataStorage

MakeClient = Callable[..., AuditClient]


@pytest.fixture
def reserved_port() -> Iterator[int]:
    """A port no other process takes while the test runs, though nothing listens on it yet."""
    with reserve_port() as reservation:
        yield reservation.port


@pytest.fixture
async def down_datastorage(reserved_port: int) -> AsyncIterator[FakeDataStorage]:
    """A DataStorage whose port refuses connections until the test calls ``start()``."""
    server = FakeDataStorage(reserved_port)
    yield server
    await server.stop()


@pytest.fixture
async def datastorage(down_datastorage: FakeDataStorage) -> FakeDataStorage:
    await down_datastorage.start()
    return down_datastorage


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def make_client(
    down_datastorage: FakeDataStorage, registry: CollectorRegistry
) -> AsyncIterator[MakeClient]:
    """Unstarted clients aimed at the fake, with a fast backoff and a private registry; closed at teardown."""
    clients: list[AuditClient] = []

    def make(**overrides: Any) -> AuditClient:
        options: dict[str, Any] = {
            "batch_size": 10,
            "flush_interval": 0.02,
            "backoff": FAST_BACKOFF,
            "registry": registry,
            "request_timeout": 10.0,  # generous: a loaded machine; the timeout tests set their own
        } | overrides
        client = AuditClient(down_datastorage.url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close(timeout=1.0)
