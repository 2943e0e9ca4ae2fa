"""Retention purges what is past retention, a chain's oldest events first, never a case on legal hold.

Events are written through the API at times the test's clock says (it accepts
events up to 7 days old only), then purge runs are made as of a later day by
calling `run_retention` on the stack's database, as the service's background
task does every interval; the last two tests let that task run. Events carry
`retention_days` 30 unless said otherwise, and the default floor is 30 days,
so most events are past retention 30 days after their day.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg
import httpx

from datastorage.config import RetentionSettings
from datastorage.retention import PURGE_LOCK_KEY, RetentionRun, run_retention
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    LEGAL_HOLD_PATH,
    VERIFY_CHAIN_PATH,
    MutableClock,
    OpenStack,
    Stack,
    assert_problem,
    make_event,
    sql,
    stored_count_by_id,
)
from test.integration.polling import eventually

SHORT = RetentionSettings(default_days=30)


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def store(client: httpx.Client, correlation_id: str, at: datetime, count: int = 1, **changes: Any) -> None:
    """Writes `count` events of the case at `at` (the stack's clock must be near it)."""
    events = [make_event(correlation_id, at=at, **{"retention_days": 30, **changes}) for _ in range(count)]
    response = client.post(BATCH_PATH, json=events)
    assert response.status_code == 201, response.text


def purge(stack: Stack, on: date, settings: RetentionSettings = SHORT) -> RetentionRun:
    """One purge run against the stack's database as of noon (UTC) on `on`."""

    async def run() -> RetentionRun:
        async with asyncpg.create_pool(stack.database_url, min_size=1, max_size=2) as pool:
            return await run_retention(pool, clock=lambda: noon(on), settings=settings)

    return asyncio.run(run())


@contextlib.contextmanager
def purge_lock_held(database_url: str) -> Iterator[None]:
    """Another session holds the purge lock for the block: a purge step waits for it meanwhile."""
    loop = asyncio.new_event_loop()
    try:
        connection = loop.run_until_complete(asyncpg.connect(database_url))
        try:
            loop.run_until_complete(connection.execute("SELECT pg_advisory_lock($1)", PURGE_LOCK_KEY))
            yield
        finally:
            loop.run_until_complete(connection.close())
    finally:
        loop.close()


def stored(stack: Stack, correlation_id: str) -> int:
    return sum(stored_count_by_id(stack.database_url, correlation_id).values())


def partitions(stack: Stack) -> set[str]:
    rows = sql(
        stack.database_url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'audit_events'::regclass",
    )
    return {row["relname"] for row in rows}


def verify(client: httpx.Client, correlation_id: str) -> dict[str, Any]:
    response = client.post(VERIFY_CHAIN_PATH, json={"correlation_id": correlation_id})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def chain_state(client: httpx.Client, correlation_id: str) -> tuple[bool, int, int]:
    report = verify(client, correlation_id)
    return report["is_valid"], report["total_events"], report["purged_events"]


def place_hold(client: httpx.Client, correlation_id: str, **changes: Any) -> httpx.Response:
    body = {
        "correlation_id": correlation_id,
        "reason": "litigation, matter 7",
        "placed_by": "legal@example.com",
    }
    return client.post(LEGAL_HOLD_PATH, json={**body, **changes})


def test_a_month_past_retention_is_dropped_and_a_partial_month_purged_in_batches(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    gone, spanning, split = f"{correlation_id}-gone", f"{correlation_id}-span", f"{correlation_id}-split"
    clock = MutableClock(noon(date(2031, 1, 10)))
    with stack_on_shared_servers(clock=clock) as stack, stack.client() as client:
        store(client, gone, clock(), count=3)
        store(client, spanning, clock(), count=2)
        clock.set(noon(date(2031, 3, 5)))
        store(client, split, clock(), count=5)
        clock.set(noon(date(2031, 3, 28)))
        store(client, split, clock(), count=2)
        store(client, spanning, clock())

        # April 20: January and the empty February are wholly past; of March, what is older than March 21.
        run = purge(stack, date(2031, 4, 20), RetentionSettings(default_days=30, batch_size=2))

        assert run.error is None
        assert run.partitions_dropped == ("audit_events_2031_01", "audit_events_2031_02")
        assert run.rows_deleted == 3 + 2 + 5
        assert {"audit_events_2031_01", "audit_events_2031_02"}.isdisjoint(partitions(stack))
        assert (stored(stack, gone), stored(stack, spanning), stored(stack, split)) == (0, 1, 2)
        assert chain_state(client, gone) == (True, 0, 3)
        assert chain_state(client, spanning) == (True, 1, 2)
        assert chain_state(client, split) == (True, 2, 5)


def test_a_run_is_logged_with_what_it_purged(stack_on_shared_servers: OpenStack, correlation_id: str) -> None:
    clock = MutableClock(noon(date(2031, 1, 10)))
    with stack_on_shared_servers(clock=clock) as stack, stack.client() as client:
        store(client, correlation_id, clock(), count=2)

        run = purge(stack, date(2031, 3, 1))

        [logged] = sql(
            stack.database_url,
            "SELECT * FROM retention_operations WHERE operation_id = $1",
            run.operation_id,
        )
        assert logged["run_date"] == date(2031, 3, 1)
        assert logged["started_at"] == logged["finished_at"] == noon(date(2031, 3, 1))
        assert (logged["rows_deleted"], logged["partitions_dropped"], logged["error"]) == (
            2,
            ["audit_events_2031_01"],
            None,
        )


def test_each_event_is_kept_for_the_longer_of_its_own_days_and_its_category_floor(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    plain, analysis, asks_more, asks_nothing, mixed = (
        f"{correlation_id}-{name}" for name in ("plain", "analysis", "asks-more", "asks-nothing", "mixed")
    )
    clock = MutableClock(noon(date(2031, 3, 5)))
    with stack_on_shared_servers(clock=clock) as stack, stack.client() as client:
        sql(stack.database_url, "INSERT INTO audit_retention_policies VALUES ('analysis', 60)")
        store(client, plain, clock())
        store(client, analysis, clock(), event_category="analysis")
        store(client, asks_more, clock(), retention_days=90)
        store(client, asks_nothing, clock(), retention_days=...)
        # The chain's first event is kept 60 days: the second, kept 30, must wait for it.
        store(client, mixed, clock(), event_category="analysis")
        store(client, mixed, clock())

        first = purge(stack, date(2031, 4, 20))
        counts_after_first = [
            stored(stack, case) for case in (plain, analysis, asks_more, asks_nothing, mixed)
        ]
        second = purge(stack, date(2031, 5, 10))
        counts_after_second = [
            stored(stack, case) for case in (plain, analysis, asks_more, asks_nothing, mixed)
        ]

        assert (first.rows_deleted, counts_after_first) == (1, [0, 1, 1, 1, 2])
        assert (second.rows_deleted, counts_after_second) == (3, [0, 0, 1, 1, 0])
        assert chain_state(client, mixed) == (True, 0, 2)


def test_an_event_stored_late_waits_for_the_older_events_of_its_chain(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    clock = MutableClock(datetime(2031, 2, 1, 0, 5, tzinfo=UTC))
    with stack_on_shared_servers(clock=clock) as stack, stack.client() as client:
        store(client, correlation_id, datetime(2031, 2, 1, 0, 1, tzinfo=UTC))
        # Second in the chain but two minutes earlier, so in January's partition: while the first
        # is in February's, January cannot go, and February (with the empty March) goes first.
        store(client, correlation_id, datetime(2031, 1, 31, 23, 59, tzinfo=UTC))

        first = purge(stack, date(2031, 4, 20))
        after_first = chain_state(client, correlation_id)
        second = purge(stack, date(2031, 4, 20))

        assert first.partitions_dropped == ("audit_events_2031_02", "audit_events_2031_03")
        assert after_first == (True, 1, 1)
        assert second.partitions_dropped == ("audit_events_2031_01",)
        assert chain_state(client, correlation_id) == (True, 0, 2)


def test_a_case_on_legal_hold_is_never_purged_and_is_once_released(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    held, free = f"{correlation_id}-held", f"{correlation_id}-free"
    clock = MutableClock(noon(date(2031, 1, 10)))
    with stack_on_shared_servers(clock=clock) as stack, stack.client() as client:
        store(client, held, clock(), count=2)
        store(client, free, clock())
        placed = place_hold(client, held)
        clock.set(noon(date(2031, 1, 12)))
        store(client, held, clock())  # arrives while the case is held

        while_held = purge(stack, date(2032, 1, 1))
        kept = stored(stack, held)
        released = client.delete(f"{LEGAL_HOLD_PATH}/{held}", params={"released_by": "legal@example.com"})
        after_release = purge(stack, date(2032, 1, 1))

        assert placed.status_code == 201, placed.text
        assert placed.json() == {
            "correlation_id": held,
            "reason": "litigation, matter 7",
            "placed_by": "legal@example.com",
            "placed_at": "2031-01-10T12:00:00Z",
            "events_held": 2,
        }
        assert (while_held.rows_deleted, kept, stored(stack, free)) == (1, 3, 0)
        assert "audit_events_2031_01" not in while_held.partitions_dropped
        assert released.status_code == 200, released.text
        assert released.json() == {
            "correlation_id": held,
            "released_by": "legal@example.com",
            "released_at": "2031-01-12T12:00:00Z",
            "events_released": 2,
        }
        assert (after_release.rows_deleted, after_release.partitions_dropped) == (
            3,
            ("audit_events_2031_01",),
        )
        assert chain_state(client, held) == (True, 0, 3)


def test_placing_a_hold_again_keeps_the_first_and_the_record_keeps_every_hold(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    ds_client.post(EVENTS_PATH, json=make_event(correlation_id)).raise_for_status()
    first = place_hold(ds_client, correlation_id)
    again = place_hold(ds_client, correlation_id, reason="another matter", placed_by="someone@example.com")
    ds_client.delete(f"{LEGAL_HOLD_PATH}/{correlation_id}", params={"released_by": "legal@example.com"})
    placed_later = place_hold(ds_client, correlation_id, reason="matter 8")

    assert (first.status_code, again.status_code, placed_later.status_code) == (201, 200, 201)
    assert again.json() == first.json()
    holds = sql(
        ds_stack.database_url,
        "SELECT reason, released_by FROM audit_legal_holds WHERE correlation_id = $1 ORDER BY hold_id",
        correlation_id,
    )
    assert holds == [
        {"reason": "litigation, matter 7", "released_by": "legal@example.com"},
        {"reason": "matter 8", "released_by": None},
    ]
    [row] = sql(
        ds_stack.database_url,
        "SELECT legal_hold, legal_hold_reason, legal_hold_placed_by FROM audit_events "
        "WHERE correlation_id = $1",
        correlation_id,
    )
    assert row == {
        "legal_hold": True,
        "legal_hold_reason": "matter 8",
        "legal_hold_placed_by": "legal@example.com",
    }


def test_a_hold_needs_a_stored_case_and_a_release_a_hold_in_force(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    assert_problem(place_hold(ds_client, correlation_id), 404, "not-found", "no audit events")
    ds_client.post(EVENTS_PATH, json=make_event(correlation_id)).raise_for_status()
    release = ds_client.delete(
        f"{LEGAL_HOLD_PATH}/{correlation_id}", params={"released_by": "legal@example.com"}
    )

    assert_problem(release, 404, "not-found", "no legal hold in force")


def test_the_purge_runs_in_the_background_when_enabled(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    clock = MutableClock(noon(date(2031, 1, 10)))
    settings = RetentionSettings(enabled=True, interval=0.05, default_days=30)
    with stack_on_shared_servers(clock=clock, retention=settings) as stack, stack.client() as client:
        store(client, correlation_id, clock())
        clock.set(noon(date(2031, 3, 1)))

        eventually(lambda: stored(stack, correlation_id) == 0, timeout=10, message="the event is purged")
        logged = sql(
            stack.database_url,
            "SELECT rows_deleted FROM retention_operations WHERE run_date = $1 AND rows_deleted > 0",
            date(2031, 3, 1),
        )
        assert logged == [{"rows_deleted": 1}]


def test_a_run_cut_off_by_shutdown_is_logged_as_stopped_and_purged_nothing(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    clock = MutableClock(noon(date(2031, 1, 10)))
    settings = RetentionSettings(enabled=True, interval=0.05, default_days=30)
    with stack_on_shared_servers(clock=clock, retention=settings) as stack:
        with stack.client() as client:
            store(client, correlation_id, clock())
        with purge_lock_held(stack.database_url):
            clock.set(noon(date(2031, 3, 1)))
            eventually(
                lambda: sql(
                    stack.database_url, "SELECT 1 FROM retention_operations WHERE run_date = '2031-03-01'"
                ),
                timeout=10,
                message="a run has started, and waits for the purge lock",
            )
            stack.datastorage.stop()

        runs = sql(stack.database_url, "SELECT * FROM retention_operations WHERE run_date = '2031-03-01'")
        assert [(run["error"], run["rows_deleted"], run["finished_at"]) for run in runs] == [
            ("stopped: DataStorage shut down", 0, noon(date(2031, 3, 1)))
        ]
        assert stored(stack, correlation_id) == 1
