"""Fixtures for the audit tests: the fake DataStorage (up, or down until started) and clients."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.audit import AuditClient

from .fakes import FAST_BACKOFF, FakeDataStorage

MakeClient = Callable[..., AuditClient]


@pytest.fixture
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def down_datastorage(free_port: int) -> AsyncIterator[FakeDataStorage]:
    """A DataStorage whose port refuses connections until the test calls ``start()``."""
    server = FakeDataStorage(free_port)
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
            "request_timeout": 2.0,
        } | overrides
        client = AuditClient(down_datastorage.url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close(timeout=1.0)
