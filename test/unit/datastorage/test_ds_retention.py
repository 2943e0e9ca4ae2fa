"""Retention's pure parts: which partitions a run walks, which it may drop, and what each chain lost."""

from __future__ import annotations

from datetime import date

import pytest

from datastorage.partitions import Month
from datastorage.retention import chain_losses, months_to_walk, oldest_open_month

PARTITIONS = ["audit_events_2026_03", "audit_events_2026_01", "audit_events_2026_02", "audit_events_incoming"]


@pytest.mark.parametrize(
    ("shortest_days", "months"),
    [
        pytest.param(
            30, [Month(2026, 1), Month(2026, 2), Month(2026, 3)], id="march-has-days-before-the-horizon"
        ),
        pytest.param(46, [Month(2026, 1), Month(2026, 2)], id="horizon-on-march-1st"),
        pytest.param(2555, [], id="seven-years"),
    ],
)
def test_a_run_walks_the_months_that_can_hold_events_past_retention_oldest_first(
    shortest_days: int, months: list[Month]
) -> None:
    assert months_to_walk(PARTITIONS, today=date(2026, 4, 16), shortest_days=shortest_days) == months


@pytest.mark.parametrize(
    ("today", "month"),
    [
        pytest.param(date(2026, 4, 16), Month(2026, 4), id="mid-month"),
        pytest.param(date(2026, 4, 7), Month(2026, 3), id="a-week-into-the-month"),
        pytest.param(date(2026, 1, 3), Month(2025, 12), id="across-the-year"),
    ],
)
def test_the_month_an_event_may_still_arrive_for_is_never_dropped(today: date, month: Month) -> None:
    assert oldest_open_month(today) == month


def test_each_chain_loses_its_count_and_the_hash_of_its_newest_deleted_event() -> None:
    deleted: list[dict[str, object]] = [
        {"correlation_id": "a", "chain_sequence": 2, "event_hash": "a2"},
        {"correlation_id": "b", "chain_sequence": 7, "event_hash": "b7"},
        {"correlation_id": "a", "chain_sequence": 3, "event_hash": "a3"},
        {"correlation_id": "a", "chain_sequence": 1, "event_hash": "a1"},
        {"correlation_id": "c", "chain_sequence": None, "event_hash": None},
    ]

    assert chain_losses(deleted) == {"a": (3, "a3"), "b": (1, "b7")}
