"""The DLQ retry worker stops when cancelled, even if a library swallowed the cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from datastorage.dlq import _stop_if_cancelled


async def test_a_cancellation_a_library_swallowed_still_stops_the_worker() -> None:
    rounds = 0

    async def worker_loop() -> None:
        nonlocal rounds
        while rounds < 3:
            _stop_if_cancelled()
            rounds += 1
            # Swallowed, as asyncio.wait_for does on Python 3.11 when the result arrives with the cancel.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10 if rounds == 1 else 0)  # the cancel arrives in the first round

    task = asyncio.create_task(worker_loop())
    await asyncio.sleep(0)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert rounds == 1


async def test_an_uncancelled_task_goes_on() -> None:
    _stop_if_cancelled()
