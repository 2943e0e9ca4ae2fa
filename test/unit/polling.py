"""The polling helper of the unit specs: wait for a condition that has no event to await."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

# Generous: conditions normally hold within milliseconds; this only bounds a broken test.
WAIT_LIMIT = 5.0


async def wait_until(predicate: Callable[[], bool], *, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``WAIT_LIMIT`` seconds."""
    try:
        async with asyncio.timeout(WAIT_LIMIT):
            # Polling on purpose: the conditions (a request seen, a metric moved) have no event to await.
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"timed out after {WAIT_LIMIT}s waiting for {what}")
