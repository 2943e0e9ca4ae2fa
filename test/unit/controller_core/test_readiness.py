"""The readiness gates: fail closed, reopen, go stale, how often they are probed (fake clock and probes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from controller.readiness import NOT_PROBED, GateClosed, ReadinessGates, next_pause

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeProbe:
    """Passes with `detail` until told to fail; counts its calls."""

    def __init__(self, detail: str = "fine") -> None:
        self.detail = detail
        self.failure: str | None = None
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failure is not None:
            raise GateClosed(self.failure)
        return self.detail


def make_gates(clock: FakeClock, *names: str, interval: float = 15.0, timeout: float = 5.0) -> ReadinessGates:
    return ReadinessGates(names or ("a", "b"), interval=interval, timeout=timeout, clock=clock)


def test_every_gate_starts_closed_and_unprobed() -> None:
    gates = make_gates(FakeClock())

    assert not gates.is_ready()
    report = gates.report()
    assert report["ready"] is False
    assert report["closed"] == ["a", "b"]
    assert report["gates"]["a"] == {
        "state": "closed",
        "reason": NOT_PROBED,
        "lastProbe": None,
        "since": "2026-03-01T12:00:00.000Z",
    }


async def test_a_gate_opens_only_when_its_probe_passes_and_the_controller_only_when_all_do() -> None:
    clock = FakeClock()
    gates = make_gates(clock)
    a, b = FakeProbe("datastorage answered"), FakeProbe()
    b.failure = "connection refused"
    gates.attach("a", a)
    gates.attach("b", b)
    clock.advance(1)

    await gates.probe_all()

    report = gates.report()
    assert (report["ready"], report["closed"]) == (False, ["b"])
    assert report["gates"]["a"] == {
        "state": "open",
        "reason": "datastorage answered",
        "lastProbe": "2026-03-01T12:00:01.000Z",
        "since": "2026-03-01T12:00:01.000Z",
    }
    assert report["gates"]["b"]["state"] == "closed"
    assert report["gates"]["b"]["reason"] == "connection refused"
    assert report["gates"]["b"]["lastProbe"] == "2026-03-01T12:00:01.000Z"

    b.failure = None
    await gates.probe_all()
    assert gates.is_ready()


async def test_a_gate_that_fails_later_closes_again_and_reopens_when_its_probe_passes() -> None:
    clock = FakeClock()
    gates = make_gates(clock, "datastorage")
    probe = FakeProbe()
    gates.attach("datastorage", probe)
    await gates.probe_all()
    opened_at = clock.now

    clock.advance(15)
    await gates.probe_all()
    (state,) = gates.states()
    assert state.is_open and state.since == opened_at  # still open: `since` is the opening

    clock.advance(15)
    probe.failure = "HTTP 503 from http://ds/readyz: database down"
    await gates.probe_all()
    (state,) = gates.states()
    assert not gates.is_ready()
    assert (state.reason, state.since) == ("HTTP 503 from http://ds/readyz: database down", clock.now)

    clock.advance(1)
    probe.failure = None
    await gates.probe_all()
    (state,) = gates.states()
    assert gates.is_ready()
    assert (state.reason, state.since) == ("fine", clock.now)


async def test_a_probe_that_raises_or_hangs_closes_its_gate_with_the_reason() -> None:
    gates = make_gates(FakeClock(), "silent", "hung", timeout=0.01)

    async def silent() -> str:
        raise RuntimeError

    async def hung() -> str:
        await asyncio.Event().wait()
        return "never"

    gates.attach("silent", silent)
    gates.attach("hung", hung)
    await gates.probe_all()

    reasons = {state.name: state.reason for state in gates.states()}
    assert reasons == {"silent": "RuntimeError", "hung": "no answer within 0.01 s"}


async def test_a_held_gate_stays_closed_with_its_reason_until_a_probe_is_attached() -> None:
    gates = make_gates(FakeClock(), "policies")
    gates.hold_closed("policies", "not loaded: policy.rego: rego_parse_error")

    await gates.probe_all()
    (state,) = gates.states()
    assert (state.is_open, state.reason, state.checked_at) == (
        False,
        "not loaded: policy.rego: rego_parse_error",
        None,
    )

    gates.attach("policies", FakeProbe("policy active"))
    await gates.probe_all()
    assert gates.is_ready()

    gates.hold_closed("policies", "loading the policies in /p")
    await gates.probe_all()  # a held gate is not probed: its old probe cannot reopen it
    assert not gates.is_ready()


async def test_an_open_gate_whose_last_probe_is_too_old_counts_as_closed() -> None:
    clock = FakeClock()
    gates = make_gates(clock, "watch", interval=15, timeout=5)
    gates.attach("watch", FakeProbe())
    await gates.probe_all()

    clock.advance(40)  # two rounds and their timeouts: still fresh
    assert gates.is_ready()

    clock.advance(0.001)
    (state,) = gates.states()
    assert not gates.is_ready()
    assert state.reason == "stale: no probe since 2026-03-01T12:00:00.000Z (the probe loop is stuck)"
    assert gates.report()["closed"] == ["watch"]


async def test_the_observer_hears_every_gate_at_once_and_after_every_probe() -> None:
    gates = make_gates(FakeClock())
    heard: list[tuple[str, bool]] = []
    gates.observe(lambda name, is_open: heard.append((name, is_open)))
    assert heard == [("a", False), ("b", False)]

    failing = FakeProbe()
    failing.failure = "no"
    gates.attach("a", FakeProbe())
    gates.attach("b", failing)
    await gates.probe_all()

    assert heard[2:] == [("a", True), ("b", False)]


def test_closed_gates_are_probed_sooner_doubling_up_to_the_interval() -> None:
    pauses, retry = [], 1.0
    for _ in range(6):
        pause, retry = next_pause(all_open=False, retry=retry, interval=15)
        pauses.append(pause)
    assert pauses == [1, 2, 4, 8, 15, 15]

    assert next_pause(all_open=True, retry=retry, interval=15) == (15, 1.0)
    assert next_pause(all_open=False, retry=1.0, interval=0.2) == (0.2, 0.2)


async def test_the_loop_probes_at_start_and_an_attached_probe_at_once() -> None:
    gates = ReadinessGates(("watch", "policies"), interval=3600, timeout=5, first_retry=3600)
    opened: dict[str, asyncio.Event] = {"watch": asyncio.Event(), "policies": asyncio.Event()}
    gates.observe(lambda name, is_open: opened[name].set() if is_open else None)
    watch = FakeProbe()
    gates.attach("watch", watch)
    gates.hold_closed("policies", "loading")
    loop = asyncio.create_task(gates.run())
    try:
        async with asyncio.timeout(5):
            await opened["watch"].wait()  # the first round, at start
        gates.attach("policies", FakeProbe())  # probed at once, not after an hour
        async with asyncio.timeout(5):
            await opened["policies"].wait()
        assert gates.is_ready()
        assert watch.calls == 2  # the attach woke the loop for one more round, no more
    finally:
        loop.cancel()
        await asyncio.wait([loop])


@pytest.mark.parametrize(
    ("names", "interval", "timeout"),
    [((), 1, 1), (("a", "a"), 1, 1), (("a",), 0, 1), (("a",), 1, 0)],
    ids=["no-gates", "twice", "no-interval", "no-timeout"],
)
def test_nonsense_is_refused(names: tuple[str, ...], interval: float, timeout: float) -> None:
    with pytest.raises(ValueError, match="readiness"):
        ReadinessGates(names, interval=interval, timeout=timeout)


def test_an_unknown_gate_is_refused_by_name() -> None:
    with pytest.raises(KeyError, match="no gate 'wach'"):
        make_gates(FakeClock(), "watch").hold_closed("wach", "typo")
