"""Logging a dependency's outage once, with a count, instead of once per failed attempt.

The DLQ retry worker, the partition upkeep and the write path retry whatever
PostgreSQL or Redis refused, many times a second in a short outage. An
`OutageLog` writes one line when the first attempt of an outage fails and one
when an attempt succeeds again, saying how many attempts failed and for how
long; the failed attempts in between log nothing. Both lines have the same
level, so a reader who filters on it sees the outage end as well as begin.
Durations come from the monotonic clock, never from the service's injected
clock, which tests move by months.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class OutageLog:
    """One outage at a time of one dependency, as seen by one caller.

    `began` is the first line ("Redis unreachable: DLQ retry paused"); `ended`
    starts the last one, which goes on "after N failed <attempt>s over T s".
    Calls must not interleave across threads: each instance belongs to one
    event loop, where these synchronous methods cannot be interrupted.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        began: str,
        ended: str,
        attempt: str = "attempt",
        level: int = logging.WARNING,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._began = began
        self._ended = ended
        self._attempt = attempt
        self._level = level
        self._monotonic = monotonic
        self._failures = 0
        self._since = 0.0
        self._last_error = ""

    @property
    def is_ongoing(self) -> bool:
        return self._failures > 0

    def failed(self, error: str, **extra: object) -> None:
        """Counts a failed attempt; the first of an outage is logged with its error and `extra`."""
        if self._failures == 0:
            self._since = self._monotonic()
            self._logger.log(self._level, self._began, extra={"error": error, **extra})
        self._failures += 1
        self._last_error = error

    def succeeded(self) -> None:
        """Ends the outage, if one is ongoing, with one line counting its failed attempts."""
        if self._failures == 0:
            return
        seconds = self._monotonic() - self._since
        attempts = f"{self._failures} failed {self._attempt}{'' if self._failures == 1 else 's'}"
        self._logger.log(
            self._level,
            f"{self._ended} after {attempts} over {seconds:.1f} s",
            extra={
                "failed_attempts": self._failures,
                "outage_seconds": round(seconds, 3),
                "last_error": self._last_error,
            },
        )
        self._failures = 0
        self._last_error = ""
