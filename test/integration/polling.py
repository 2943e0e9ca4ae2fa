"""Waiting for an observable condition instead of sleeping a fixed time.

`eventually` calls a probe until it returns a truthy value (or stops raising
AssertionError) and fails with the caller's message and the last observation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ConditionNotMet(AssertionError):
    """The condition did not hold before the deadline."""


def _failure(message: str, timeout: float, last: object) -> ConditionNotMet:
    return ConditionNotMet(f"{message} (not met within {timeout:.1f}s; last observed: {last!r})")


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05, message: str
) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except AssertionError as error:
            last = error
        if time.monotonic() > deadline:
            raise _failure(message, timeout, last)
        time.sleep(interval)
