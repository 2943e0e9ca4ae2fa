"""An outage is logged when it begins and when it ends, with its count and duration, never per attempt."""

from __future__ import annotations

import logging

import pytest

from datastorage.outages import OutageLog

LOGGER = "datastorage.test_outages"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def outage(monotonic: FakeMonotonic) -> OutageLog:
    return OutageLog(
        logging.getLogger(LOGGER),
        began="Redis unreachable: DLQ retry paused",
        ended="Redis reachable again",
        monotonic=monotonic,
    )


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_many_failed_attempts_log_one_line_and_the_recovery_counts_them(
    outage: OutageLog, monotonic: FakeMonotonic, caplog: pytest.LogCaptureFixture
) -> None:
    for attempt in range(12):
        outage.failed(f"connection refused ({attempt})")
        monotonic.now += 0.25
    outage.succeeded()

    assert messages(caplog) == [
        "Redis unreachable: DLQ retry paused",
        "Redis reachable again after 12 failed attempts over 3.0 s",
    ]
    began, ended = (record for record in caplog.records if record.name == LOGGER)
    assert began.levelno == ended.levelno == logging.WARNING
    assert began.__dict__["error"] == "connection refused (0)"
    assert ended.__dict__["failed_attempts"] == 12
    assert ended.__dict__["last_error"] == "connection refused (11)"


def test_success_without_an_outage_logs_nothing(outage: OutageLog, caplog: pytest.LogCaptureFixture) -> None:
    outage.succeeded()
    outage.succeeded()

    assert messages(caplog) == []
    assert not outage.is_ongoing


def test_each_outage_is_logged_and_counted_on_its_own(
    outage: OutageLog, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed("down")
    outage.failed("down")
    outage.succeeded()
    outage.failed("down again")
    assert outage.is_ongoing
    outage.succeeded()

    assert messages(caplog) == [
        "Redis unreachable: DLQ retry paused",
        "Redis reachable again after 2 failed attempts over 0.0 s",
        "Redis unreachable: DLQ retry paused",
        "Redis reachable again after 1 failed attempt over 0.0 s",
    ]


def test_the_attempt_noun_and_level_are_the_callers(
    monotonic: FakeMonotonic, caplog: pytest.LogCaptureFixture
) -> None:
    refusals = OutageLog(
        logging.getLogger(LOGGER),
        began="events refused",
        ended="events accepted again",
        attempt="request",
        level=logging.ERROR,
        monotonic=monotonic,
    )
    refusals.failed("both down", events=3)
    refusals.failed("both down", events=1)
    refusals.succeeded()

    assert messages(caplog) == ["events refused", "events accepted again after 2 failed requests over 0.0 s"]
    assert {record.levelno for record in caplog.records if record.name == LOGGER} == {logging.ERROR}
    assert caplog.records[0].__dict__["events"] == 3
