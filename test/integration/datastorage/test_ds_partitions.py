"""Monthly partitions follow the (injected) clock, so no insert ever fails for a missing partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from datastorage.repository import COPY_FROM_ROWS
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    MutableClock,
    OpenStack,
    make_event,
    sql,
)
from test.integration.polling import eventually

JAN_31_LATE = datetime(2031, 1, 31, 23, 59, 0, tzinfo=UTC)


def partitions(database_url: str) -> set[str]:
    rows = sql(
        database_url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'audit_events'::regclass",
    )
    return {row["relname"] for row in rows}


def partition_of(database_url: str, event_id: str) -> str:
    [row] = sql(
        database_url,
        "SELECT tableoid::regclass::text AS p FROM audit_events WHERE event_id = $1::uuid",
        event_id,
    )
    return str(row["p"])


def test_crossing_a_month_boundary_creates_the_next_partitions_ahead(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    clock = MutableClock(JAN_31_LATE)
    with (
        stack_on_shared_servers(
            clock=clock, partition_months_ahead=1, partition_check_interval=0.05
        ) as stack,
        stack.client() as client,
    ):
        assert partitions(stack.database_url) == {"audit_events_2031_01", "audit_events_2031_02"}
        january = client.post(
            EVENTS_PATH, json=make_event(correlation_id, at=JAN_31_LATE + timedelta(seconds=30))
        )

        clock.set(JAN_31_LATE + timedelta(minutes=2))
        february = client.post(EVENTS_PATH, json=make_event(correlation_id, at=clock()))

        assert (january.status_code, february.status_code) == (201, 201)
        assert partition_of(stack.database_url, january.json()["event_id"]) == "audit_events_2031_01"
        assert partition_of(stack.database_url, february.json()["event_id"]) == "audit_events_2031_02"
        eventually(
            lambda: "audit_events_2031_03" in partitions(stack.database_url),
            timeout=10,
            message="March is prepared once the clock is in February",
        )


@pytest.mark.parametrize("batch_size", [1, COPY_FROM_ROWS], ids=["single-insert", "copy"])
def test_an_event_in_a_month_without_a_partition_gets_one_on_demand(
    stack_on_shared_servers: OpenStack, correlation_id: str, batch_size: int
) -> None:
    clock = MutableClock(JAN_31_LATE)
    # The periodic check never runs here: only the insert path can create June.
    with (
        stack_on_shared_servers(
            clock=clock, partition_months_ahead=0, partition_check_interval=3600
        ) as stack,
        stack.client() as client,
    ):
        clock.set(datetime(2031, 6, 15, 12, 0, tzinfo=UTC))
        events = [make_event(correlation_id, at=clock()) for _ in range(batch_size)]

        response = client.post(BATCH_PATH, json=events)

        assert response.status_code == 201
        assert partition_of(stack.database_url, response.json()["event_ids"][0]) == "audit_events_2031_06"
