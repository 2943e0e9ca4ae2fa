"""Readiness gates: the controller counts as ready only while every gate is open.

A gate is a name and a probe: an async callable that returns what it saw when the gate may open,
and raises saying why when it may not. The gates fail closed:

- every gate starts closed ("not probed yet"), and a gate whose probe is not attached yet stays
  closed with the reason it was held with ("loading the policies", "not loaded: ...");
- `ReadinessGates.run` probes every attached gate at once at start, then every `interval`; a probe
  that raises or takes longer than `timeout` closes its gate, the next one that passes opens it;
- while a gate is closed the gates are probed sooner, after 1 s, 2 s, 4 s ... up to `interval`, so
  a controller turns ready soon after what it waits for comes up, and a healthy one is not probed
  more often than `interval`;
- a gate whose last probe is older than `stale_after` (two rounds and their timeouts) counts as
  closed: a probe loop that hangs or died must not leave an old "open" standing.

This module only keeps and reports the state; the probes and the `/readyz` endpoint are in
`controller.readyz`. Readiness stops nothing: reconciliation goes on whatever the gates say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

logger = logging.getLogger(__name__)

Probe: TypeAlias = Callable[[], Awaitable[str]]
"""Returns what it saw when its gate may open; raises, saying why, when it may not."""
Clock: TypeAlias = Callable[[], datetime]
GateObserver: TypeAlias = Callable[[str, bool], None]
"""Told every gate's state after each probe (a metrics gauge)."""

NOT_PROBED: Final = "not probed yet"
FIRST_RETRY_SECONDS: Final = 1.0


class GateClosed(Exception):
    """A probe's answer "not ready", with the reason as its message."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class GateState:
    name: str
    is_open: bool
    reason: str
    checked_at: datetime | None  # when the last probe ended; None: never probed
    since: datetime  # when the gate took its current state (open or closed)

    def as_of(self, now: datetime, stale_after: timedelta) -> GateState:
        """This state as it counts at `now`: closed when an open gate's last probe is too old."""
        if not self.is_open or self.checked_at is None or now - self.checked_at <= stale_after:
            return self
        return replace(
            self,
            is_open=False,
            reason=f"stale: no probe since {_timestamp(self.checked_at)} (the probe loop is stuck)",
        )

    def to_raw(self) -> dict[str, Any]:
        return {
            "state": "open" if self.is_open else "closed",
            "reason": self.reason,
            "lastProbe": _timestamp(self.checked_at),
            "since": _timestamp(self.since),
        }


def next_pause(
    *, all_open: bool, retry: float, interval: float, first_retry: float = FIRST_RETRY_SECONDS
) -> tuple[float, float]:
    """The pause before the next round, and the retry pause after that one.

    All gates open: `interval`, and the retry starts again from `first_retry`. A gate closed: the
    retry pause (at most `interval`), doubled for the round after.
    """
    if all_open:
        return interval, min(first_retry, interval)
    pause = min(retry, interval)
    return pause, min(pause * 2, interval)


class ReadinessGates:
    """The named gates of one controller, their probes, and their last results."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        interval: float,
        timeout: float,
        clock: Clock = utc_now,
        first_retry: float = FIRST_RETRY_SECONDS,
    ) -> None:
        if not names or len(set(names)) != len(names):
            raise ValueError(f"readiness: gate names must be given, once each: {list(names)}")
        if interval <= 0 or timeout <= 0:
            raise ValueError(f"readiness: interval {interval} and timeout {timeout} must be positive")
        self.interval = interval
        self.timeout = timeout
        self.first_retry = first_retry
        self.stale_after = timedelta(seconds=2 * (interval + timeout))
        self._clock = clock
        now = clock()
        self._states = {name: GateState(name, False, NOT_PROBED, None, now) for name in names}
        self._probes: dict[str, Probe | None] = dict.fromkeys(names)
        self._observer: GateObserver | None = None
        self._wakeup = asyncio.Event()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._states)

    def attach(self, name: str, probe: Probe) -> None:
        """Probe gate `name` with `probe` from now on; the loop probes it at once."""
        self._check_name(name)
        self._probes[name] = probe
        self._wakeup.set()

    def hold_closed(self, name: str, reason: str) -> None:
        """Close gate `name` for `reason` and stop probing it until a probe is attached again."""
        self._check_name(name)
        self._probes[name] = None
        self._record(name, False, reason, probed=False)

    def observe(self, observer: GateObserver) -> None:
        """Tell `observer` (instead of any earlier one) every gate's state now and after every probe."""
        self._observer = observer
        for state in self._states.values():
            observer(state.name, state.is_open)

    def states(self) -> tuple[GateState, ...]:
        """Every gate as it counts now (stale ones closed)."""
        now = self._clock()
        return tuple(state.as_of(now, self.stale_after) for state in self._states.values())

    def is_ready(self) -> bool:
        return all(state.is_open for state in self.states())

    def report(self) -> dict[str, Any]:
        """The `/readyz` body: ready or not, and each gate's state, reason and last probe."""
        states = self.states()
        return {
            "ready": all(state.is_open for state in states),
            "closed": [state.name for state in states if not state.is_open],
            "gates": {state.name: state.to_raw() for state in states},
            "probeIntervalSeconds": self.interval,
        }

    async def probe_all(self) -> None:
        """Probe every attached gate, all at once, and record what each answered."""
        probes = [(name, probe) for name, probe in self._probes.items() if probe is not None]
        results = await asyncio.gather(*(self._probe(probe) for _, probe in probes))
        for (name, probe), (is_open, reason) in zip(probes, results, strict=True):
            if self._probes[name] is probe:  # not replaced or held closed while it ran
                self._record(name, is_open, reason, probed=True)

    async def run(self) -> None:
        """Probe at once, then forever: every `interval`, sooner while a gate is closed."""
        retry = min(self.first_retry, self.interval)
        while True:
            self._wakeup.clear()
            await self.probe_all()
            all_open = all(state.is_open for state in self._states.values())
            pause, retry = next_pause(
                all_open=all_open, retry=retry, interval=self.interval, first_retry=self.first_retry
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wakeup.wait()

    async def _probe(self, probe: Probe) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self.timeout):
                return True, await probe()
        except TimeoutError:
            return False, f"no answer within {self.timeout:g} s"
        except Exception as error:
            return False, str(error) or type(error).__name__

    def _record(self, name: str, is_open: bool, reason: str, *, probed: bool) -> None:
        previous = self._states[name]
        now = self._clock()
        since = previous.since if previous.is_open == is_open else now
        checked_at = now if probed else previous.checked_at
        self._states[name] = GateState(name, is_open, reason, checked_at, since)
        # Changes only: a gate failing the same way every round is logged once.
        if is_open != previous.is_open or reason != previous.reason:
            level = logging.WARNING if probed and not is_open else logging.INFO
            logger.log(level, "readiness gate %s %s: %s", name, "open" if is_open else "closed", reason)
        if self._observer is not None:
            self._observer(name, is_open)

    def _check_name(self, name: str) -> None:
        if name not in self._states:
            raise KeyError(f"readiness: no gate {name!r}; the gates are {list(self._states)}")
