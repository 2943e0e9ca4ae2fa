"""Fixtures of the enrichment tests: a clock that moves only when told, and the caches that read it."""

from __future__ import annotations

import pytest

from controller.caches import EnrichmentCaches

from .fakes import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def caches(clock: ManualClock) -> EnrichmentCaches:
    """Fresh enrichment caches whose TTLs run on `clock`."""
    return EnrichmentCaches.create(clock=clock)
