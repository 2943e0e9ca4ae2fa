"""The retry delay after transient errors: ±10 % jitter around base·2^(n-1), never past the cap."""

from __future__ import annotations

import random

import pytest

from controller.backoff import RetryBackoff

BACKOFF = RetryBackoff(base=30.0, cap=300.0, jitter=0.1)


class Draw(random.Random):
    """A random source whose every draw lands `fraction` of the way through the range asked for."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction

    def random(self) -> float:
        return self.fraction


@pytest.mark.parametrize(
    ("failures", "fraction", "delay"),
    [
        pytest.param(1, 0.0, 27.0, id="first-retry-up-to-10%-sooner"),
        pytest.param(1, 0.5, 30.0, id="first-retry-at-base"),
        pytest.param(1, 1.0, 33.0, id="first-retry-up-to-10%-later"),
        pytest.param(0, 0.5, 30.0, id="no-failure-counted-yet-is-a-first"),
        pytest.param(2, 0.5, 60.0, id="second-doubles"),
        pytest.param(3, 0.5, 120.0, id="third-doubles-again"),
        pytest.param(4, 1.0, 264.0, id="jitter-above-while-under-the-cap"),
        pytest.param(5, 0.5, 300.0, id="growth-stops-at-the-cap"),
        pytest.param(5, 1.0, 300.0, id="jitter-never-passes-the-cap"),
        pytest.param(5, 0.0, 270.0, id="jitter-below-the-cap-still-spreads"),
        pytest.param(10_000, 0.5, 300.0, id="a-huge-count-does-not-overflow"),
    ],
)
def test_delay(failures: int, fraction: float, delay: float) -> None:
    assert BACKOFF.delay(failures, Draw(fraction)) == pytest.approx(delay)


@pytest.mark.parametrize("failures", [pytest.param(n, id=f"failure-{n}") for n in range(1, 9)])
def test_every_draw_stays_within_10_percent_of_nominal_and_under_the_cap(failures: int) -> None:
    rng = random.Random(failures)
    nominal = min(BACKOFF.cap, BACKOFF.base * 2 ** (failures - 1))

    delays = [BACKOFF.delay(failures, rng) for _ in range(2000)]

    assert min(delays) >= 0.9 * nominal
    assert max(delays) <= min(BACKOFF.cap, 1.1 * nominal)
    # Spread out on both sides of nominal, and below the cap once there, so SPs do not retry in step.
    assert min(delays) < 0.91 * nominal
    assert max(delays) > min(0.99 * BACKOFF.cap, 1.09 * nominal)


def test_without_a_random_source_the_module_one_is_used() -> None:
    assert 27.0 <= BACKOFF.delay(1) <= 33.0
