"""Waiting for an observable condition instead of sleeping a fixed time.

`eventually` calls a probe until it returns a truthy value (or stops raising
AssertionError) and fails with the caller's message and the last observation.

While it waits it also watches what the spec depends on: fixtures register
their servers with `depending_on(...)`, and when one of them has died the wait
fails at once with that server's log tail, instead of waiting out its timeout
for something no process will ever do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, TypeVar

T = TypeVar("T")

# A probe is asked again after 20 ms, then less and less often up to `interval`:
# a short wait ends soon after its condition holds, and a long one does not
# load the API server (or whatever the probe reads) for nothing.
FIRST_PAUSE: Final = 0.02
DEFAULT_INTERVAL: Final = 0.2

DeathReport = Callable[[], "str | None"]
"""None while a dependency lives; how it died (with its log tail) once it has."""

_dependencies: list[DeathReport] = []


class ConditionNotMet(AssertionError):
    """The condition did not hold before the deadline."""


class DependencyDied(RuntimeError):
    """A server the spec depends on exited while the spec waited for it to do something."""


@contextmanager
def depending_on(*reports: DeathReport) -> Iterator[None]:
    """Every wait inside the block fails at once if one of `reports` says its server died."""
    _dependencies.extend(reports)
    try:
        yield
    finally:
        for report in reports:
            _dependencies.remove(report)


def first_death() -> str | None:
    for report in _dependencies:
        death = report()
        if death is not None:
            return death
    return None


def _failure(message: str, timeout: float, last: object) -> ConditionNotMet:
    return ConditionNotMet(f"{message} (not met within {timeout:.1f}s; last observed: {last!r})")


def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = DEFAULT_INTERVAL,
    message: str,
) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    pause = min(FIRST_PAUSE, interval)
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except AssertionError as error:
            last = error
        death = first_death()
        if death is not None:
            raise DependencyDied(f"{message}: stopped waiting, a dependency died: {death}")
        if time.monotonic() > deadline:
            raise _failure(message, timeout, last)
        time.sleep(pause)
        pause = min(pause * 1.5, interval)
