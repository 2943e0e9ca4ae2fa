"""Debouncing policy-directory events: one reload per burst, none lost, never two at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from controller.hotreload import Debouncer
from test.unit.polling import wait_until

DELAY = 0.2


@dataclass
class _Timer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    """A `call_later` whose time moves only when the test says so."""

    now: float = 0.0
    timers: list[_Timer] = field(default_factory=list)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t.due <= self.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due and not t.cancelled]
        for timer in due:
            timer.callback()


@dataclass
class GatedAction:
    """Counts runs; while `gate` is set, a run waits until the test opens it."""

    runs: int = 0
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    fail_first: bool = False

    async def __call__(self) -> None:
        self.runs += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_first and self.runs == 1:
            raise RuntimeError("reload blew up")


async def settle(debouncer: Debouncer) -> None:
    await wait_until(lambda: not debouncer.running, what="the debounced run to end")


async def test_a_burst_of_events_runs_once_after_the_last_one() -> None:
    clock, action = FakeClock(), GatedAction()
    debouncer = Debouncer(DELAY, action, call_later=clock.call_later)
    for _ in range(20):
        debouncer.poke()
        clock.advance(DELAY / 4)
    assert action.runs == 0

    clock.advance(DELAY)
    await settle(debouncer)

    assert action.runs == 1
    assert not debouncer.pending


async def test_the_delay_restarts_with_each_event() -> None:
    clock, action = FakeClock(), GatedAction()
    debouncer = Debouncer(DELAY, action, call_later=clock.call_later)
    debouncer.poke()
    clock.advance(DELAY * 0.9)
    debouncer.poke()
    clock.advance(DELAY * 0.9)
    await asyncio.sleep(0)
    assert action.runs == 0

    clock.advance(DELAY * 0.1)
    await settle(debouncer)
    assert action.runs == 1


async def test_run_now_runs_at_once_and_takes_the_place_of_the_pending_run() -> None:
    clock, action = FakeClock(), GatedAction()
    debouncer = Debouncer(DELAY, action, call_later=clock.call_later)
    debouncer.poke()  # the first events of a kubelet update, then its swap of ..data

    debouncer.run_now()
    await settle(debouncer)
    assert action.runs == 1

    clock.advance(DELAY)
    await settle(debouncer)
    assert action.runs == 1
    assert not debouncer.pending


async def test_events_further_apart_than_the_delay_run_each() -> None:
    clock, action = FakeClock(), GatedAction()
    debouncer = Debouncer(DELAY, action, call_later=clock.call_later)
    for _ in range(3):
        debouncer.poke()
        clock.advance(DELAY)
        await settle(debouncer)
    assert action.runs == 3


async def test_an_event_during_a_run_causes_exactly_one_more_run() -> None:
    clock, gate = FakeClock(), asyncio.Event()
    action = GatedAction(gate=gate)
    debouncer = Debouncer(DELAY, action, call_later=clock.call_later)
    debouncer.poke()
    clock.advance(DELAY)
    await action.started.wait()
    for _ in range(5):  # the file changes again while the first reload reads it
        debouncer.poke()
        clock.advance(DELAY)
    assert action.runs == 1
    assert debouncer.pending

    gate.set()
    await settle(debouncer)

    assert action.runs == 2
    assert not debouncer.pending


async def test_a_failed_run_does_not_stop_later_runs() -> None:
    clock, action = FakeClock(), GatedAction(fail_first=True)
    debouncer = Debouncer(DELAY, action, call_later=clock.call_later)
    debouncer.poke()
    clock.advance(DELAY)
    await settle(debouncer)
    debouncer.poke()
    clock.advance(DELAY)
    await settle(debouncer)
    assert action.runs == 2


async def test_close_drops_a_pending_run_and_cancels_a_running_one() -> None:
    clock, action = FakeClock(), GatedAction(gate=asyncio.Event())
    debouncer = Debouncer(DELAY, action, call_later=clock.call_later)
    debouncer.poke()
    clock.advance(DELAY)
    await action.started.wait()
    debouncer.poke()

    await debouncer.close()
    clock.advance(DELAY)
    await asyncio.sleep(0)

    assert action.runs == 1
    assert not debouncer.pending


@pytest.mark.parametrize("pokes", [1, 2, 50])
async def test_the_real_loop_clock_coalesces_too(pokes: int) -> None:
    done = asyncio.Event()
    runs = 0

    async def action() -> None:
        nonlocal runs
        runs += 1
        done.set()

    debouncer = Debouncer(0.01, action)
    for _ in range(pokes):
        debouncer.poke()
    async with asyncio.timeout(5):
        await done.wait()
    await settle(debouncer)
    assert runs == 1
