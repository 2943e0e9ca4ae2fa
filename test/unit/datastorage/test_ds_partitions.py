"""Monthly partition arithmetic: which months to keep ready, their names and bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from datastorage.partitions import Month, months_to_cover, partition_ddl


def test_partitions_are_named_after_year_and_month() -> None:
    assert Month(2026, 3).partition_name == "audit_events_2026_03"


def test_december_is_followed_by_january_of_the_next_year() -> None:
    assert Month(2026, 12).next() == Month(2027, 1)


@pytest.mark.parametrize(
    ("now", "months_ahead", "expected"),
    [
        pytest.param(
            datetime(2026, 3, 15, tzinfo=UTC),
            2,
            [Month(2026, 3), Month(2026, 4), Month(2026, 5)],
            id="mid-month",
        ),
        pytest.param(
            datetime(2026, 3, 3, tzinfo=UTC),
            1,
            [Month(2026, 2), Month(2026, 3), Month(2026, 4)],
            id="early-month-keeps-last-month-for-7-day-old-events",
        ),
        pytest.param(
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            1,
            [Month(2026, 12), Month(2027, 1)],
            id="across-the-year-end",
        ),
        pytest.param(datetime(2026, 3, 15, tzinfo=UTC), 0, [Month(2026, 3)], id="nothing-ahead"),
    ],
)
def test_months_to_cover_reach_from_the_oldest_acceptable_event_to_the_months_ahead(
    now: datetime, months_ahead: int, expected: list[Month]
) -> None:
    assert months_to_cover(now, months_ahead=months_ahead) == expected


def test_a_partition_spans_its_month_exactly() -> None:
    ddl = partition_ddl(Month(2026, 12))
    assert "audit_events_2026_12 PARTITION OF audit_events" in ddl
    assert "FROM ('2026-12-01') TO ('2027-01-01')" in ddl


@pytest.mark.parametrize(
    ("name", "month"),
    [
        pytest.param("audit_events_2026_03", Month(2026, 3), id="a-month"),
        pytest.param("audit_events_2026_13", None, id="no-such-month"),
        pytest.param("audit_events_incoming", None, id="not-a-partition"),
        pytest.param("other_events_2026_03", None, id="another-table"),
    ],
)
def test_a_partition_name_gives_back_its_month(name: str, month: Month | None) -> None:
    assert Month.of_partition(name) == month
    if month is not None:
        assert month.partition_name == name


def test_month_of_a_day() -> None:
    assert Month.of(date(2026, 2, 28)) == Month(2026, 2)
