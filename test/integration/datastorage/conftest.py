"""Fixtures of the DataStorage integration tests: one stack per worker, one correlation id per test.

Each xdist worker starts its own PostgreSQL, Redis and DataStorage on first
use. Tests share it, and isolate their rows by a fresh `correlation_id`, so
filters and totals only ever see the test's own events. Tests that stop a
server or move the clock open a private stack (`support.open_stack`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from test.integration.datastorage.support import Stack, open_stack


@pytest.fixture(scope="session")
def ds_stack() -> Iterator[Stack]:
    with open_stack() as stack:
        yield stack


@pytest.fixture(scope="session")
def ds_client(ds_stack: Stack) -> Iterator[httpx.Client]:
    with ds_stack.client() as client:
        yield client


@pytest.fixture
def correlation_id() -> str:
    return f"ds-it-{uuid.uuid4()}"
