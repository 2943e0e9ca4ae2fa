"""Time rules of the audit API: RFC 3339 parsing, query bounds, the event window, the partition day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from datastorage.timestamps import (
    check_event_time,
    event_date,
    format_timestamp,
    parse_date,
    parse_duration,
    parse_rfc3339,
    parse_time_bound,
)

NOW = datetime(2026, 3, 1, 0, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-03-01T00:00:00Z", datetime(2026, 3, 1, tzinfo=UTC), id="utc-z"),
        pytest.param("2026-03-01t00:00:00z", datetime(2026, 3, 1, tzinfo=UTC), id="lower-case"),
        pytest.param("2026-03-01T01:00:00+01:00", datetime(2026, 3, 1, tzinfo=UTC), id="offset-to-utc"),
        pytest.param(
            "2026-03-01T00:00:00.123456789-00:00",
            datetime(2026, 3, 1, 0, 0, 0, 123456, tzinfo=UTC),
            id="go-nanoseconds-cut-to-micro",
        ),
        pytest.param("2026-03-01 00:00:00.5Z", datetime(2026, 3, 1, 0, 0, 0, 500000, tzinfo=UTC), id="space"),
    ],
)
def test_rfc3339_timestamps_are_parsed_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-03-01T00:00:00", id="no-offset"),
        pytest.param("2026-03-01", id="date-only"),
        pytest.param("1700000000", id="unix-seconds"),
        pytest.param("2026-02-30T00:00:00Z", id="no-such-day"),
        pytest.param("9999-12-31T23:59:59-01:00", id="past-year-9999-in-utc"),
        pytest.param("", id="empty"),
    ],
)
def test_anything_but_rfc3339_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="date-time"):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    ("timestamp", "problem"),
    [
        pytest.param(NOW + timedelta(minutes=5, seconds=1), "in the future", id="just-past-5-minutes-ahead"),
        pytest.param(NOW - timedelta(days=7, seconds=1), "too old", id="just-past-7-days-old"),
    ],
)
def test_events_outside_the_window_are_refused(timestamp: datetime, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_event_time(timestamp, NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(NOW + timedelta(minutes=5), id="5-minutes-ahead"),
        pytest.param(NOW - timedelta(days=7), id="7-days-old"),
        pytest.param(NOW, id="now"),
    ],
)
def test_events_inside_the_window_are_accepted(timestamp: datetime) -> None:
    check_event_time(timestamp, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("24h", NOW - timedelta(hours=24), id="hours"),
        pytest.param("7d", NOW - timedelta(days=7), id="days"),
        pytest.param("1h30m", NOW - timedelta(minutes=90), id="go-compound"),
        pytest.param("1.5h", NOW - timedelta(minutes=90), id="fraction"),
        pytest.param("500ms", NOW - timedelta(milliseconds=500), id="milliseconds"),
        pytest.param("2026-02-27", datetime(2026, 2, 27, tzinfo=UTC), id="date-is-utc-midnight"),
        pytest.param("2026-02-27T10:00:00", datetime(2026, 2, 27, 10, tzinfo=UTC), id="local-form-is-utc"),
        pytest.param("2026-02-27T10:00:00+02:00", datetime(2026, 2, 27, 8, tzinfo=UTC), id="rfc3339"),
    ],
)
def test_query_bounds_accept_rfc3339_dates_and_durations_back_from_now(text: str, expected: datetime) -> None:
    assert parse_time_bound(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "h", "-1h", "2026-13-01", "1y", "99999999999d"])
def test_unknown_query_bounds_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a|too long|not a valid"):
        parse_time_bound(text, NOW)


def test_a_date_is_a_calendar_day() -> None:
    assert parse_date("2028-02-29") == date(2028, 2, 29)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-29",
        "2026-13-01",
        "20260301",
        "2026-W09-1",
        "2026-03-01T00:00:00Z",
        " 2026-03-01",
        "١٢٣٤-01-01",
    ],
)
def test_anything_but_a_calendar_day_is_refused_as_a_date(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_date(text)


def test_durations_sum_their_parts() -> None:
    assert parse_duration("1d2h3m4s") == timedelta(days=1, hours=2, minutes=3, seconds=4)


def test_the_partition_day_is_the_utc_day_whatever_the_offset() -> None:
    late_evening_in_new_york = datetime(2026, 2, 28, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert event_date(late_evening_in_new_york) == date(2026, 3, 1)


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        pytest.param(datetime(2026, 3, 1, tzinfo=UTC), "2026-03-01T00:00:00Z", id="whole-seconds"),
        pytest.param(
            datetime(2026, 3, 1, 0, 0, 0, 1500, tzinfo=UTC), "2026-03-01T00:00:00.001500Z", id="micro"
        ),
    ],
)
def test_timestamps_are_written_as_rfc3339_utc(timestamp: datetime, text: str) -> None:
    assert format_timestamp(timestamp) == text
    assert parse_rfc3339(text) == timestamp
