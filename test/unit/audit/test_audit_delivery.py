"""Delivery to a real HTTP DataStorage double: batching, retries, poison events, flush/close, never a loss."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.audit import AuditClient, DeliveryBackoff
from test.unit.polling import wait_until

from .conftest import MakeClient
from .fakes import FakeDataStorage, ids, make_events


def metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    return 0.0 if value is None else value


@dataclasses.dataclass(frozen=True)
class RecordingDeliveryBackoff(DeliveryBackoff):
    """A fast backoff that remembers which retry attempts it was asked about."""

    attempts: list[int] = dataclasses.field(default_factory=list)

    def delay(self, attempt: int, rng: random.Random) -> float:
        self.attempts.append(attempt)
        return 0.001


# --- backoff ---------------------------------------------------------------------------------------


def test_backoff_doubles_from_half_a_second_up_to_the_cap() -> None:
    backoff = DeliveryBackoff(jitter=0.0)

    delays = [backoff.delay(attempt, random.Random(0)) for attempt in range(8)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_backoff_jitter_stays_within_its_fraction_and_the_cap() -> None:
    backoff = DeliveryBackoff()
    rng = random.Random(7)

    early = [backoff.delay(2, rng) for _ in range(200)]
    late = [backoff.delay(20, rng) for _ in range(200)]

    assert all(1.6 <= d <= 2.4 for d in early)
    assert len(set(early)) > 1
    assert all(24.0 <= d <= 30.0 for d in late)


def test_retrying_forever_does_not_overflow_the_backoff() -> None:
    assert DeliveryBackoff(jitter=0.0).delay(100_000, random.Random(0)) == 30.0


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"batch_size": 0}, "batch_size", id="batch_size"),
        pytest.param({"flush_interval": 0}, "flush_interval", id="flush_interval"),
        pytest.param({"batch_size": 10, "max_pending": 5}, "max_pending", id="max_pending"),
        pytest.param({"request_timeout": -1}, "request_timeout", id="request_timeout"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AuditClient("http://127.0.0.1:1", registry=CollectorRegistry(), **options)


# --- the happy path and batching -------------------------------------------------------------------


async def test_events_reach_datastorage_as_a_json_array(
    datastorage: FakeDataStorage, make_client: MakeClient, registry: CollectorRegistry
) -> None:
    events = make_events(3)
    client = make_client()
    await client.start()

    for event in events:
        client.emit(event)
    await client.flush()

    assert datastorage.stored_ids() == ids(events)
    assert datastorage.content_types == ["application/json"]
    assert datastorage.stored[ids(events)[0]] == events[0].to_raw()
    assert metric(registry, "audit_events_buffered_total") == 3
    assert metric(registry, "audit_events_delivered_total") == 3
    assert metric(registry, "audit_events_pending") == 0
    assert metric(registry, "audit_events_pending_limit") == 100_000
    assert metric(registry, "audit_delivery_latency_seconds_count") == 3
    assert client.pending == 0


async def test_a_full_batch_is_sent_at_once_and_the_rest_waits_for_the_interval(
    datastorage: FakeDataStorage, make_client: MakeClient, registry: CollectorRegistry
) -> None:
    events = make_events(25)
    client = make_client(batch_size=10, flush_interval=3600)
    await client.start()

    for event in events:
        client.emit(event)
    # Pending drops when DataStorage's answer is read, which can be a while after the fake has the
    # request on a loaded machine: wait for the client's side of it.
    await wait_until(lambda: client.pending == 5, what="two full batches acknowledged")

    assert [len(batch) for batch in datastorage.requests] == [10, 10]
    assert metric(registry, "audit_events_pending") == 5

    await client.flush()

    assert [len(batch) for batch in datastorage.requests] == [10, 10, 5]
    assert datastorage.stored_ids() == ids(events)


async def test_a_partial_batch_is_sent_after_the_flush_interval(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    events = make_events(3)
    client = make_client(batch_size=100, flush_interval=0.05)
    await client.start()

    for event in events:
        client.emit(event)
    await wait_until(lambda: len(datastorage.stored) == 3, what="the interval flush")

    assert [len(batch) for batch in datastorage.requests] == [3]


async def test_events_emitted_before_start_are_kept(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    events = make_events(4)
    client = make_client()

    for event in events:
        client.emit(event)
    await client.start()
    await client.flush()

    assert datastorage.stored_ids() == ids(events)


# --- transient failures: retried forever, never dropped ----------------------------------------------


@pytest.mark.parametrize("status", [503, 500, 429, 404, 401, 200])
async def test_other_answers_are_retried_with_backoff(
    datastorage: FakeDataStorage, make_client: MakeClient, registry: CollectorRegistry, status: int
) -> None:
    events = make_events(4)
    backoff = RecordingDeliveryBackoff()
    datastorage.answers.extend([status] * 3)
    client = make_client(backoff=backoff)
    await client.start()

    for event in events:
        client.emit(event)
    await client.flush()

    assert datastorage.stored_ids() == ids(events)
    assert len(datastorage.requests) == 4
    assert backoff.attempts == [0, 1, 2]
    assert metric(registry, "audit_events_retried_total") == 3 * 4
    assert metric(registry, "audit_events_delivered_total") == 4
    assert metric(registry, "audit_events_quarantined_total") == 0


async def test_the_backoff_restarts_after_a_success(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    backoff = RecordingDeliveryBackoff()
    client = make_client(backoff=backoff)
    await client.start()

    for event in make_events(2, prefix="first"):
        datastorage.answers.extend([503, 503])
        client.emit(event)
        await client.flush()

    assert backoff.attempts == [0, 1, 0, 1]


async def test_a_datastorage_that_is_down_gets_everything_once_it_is_up(
    down_datastorage: FakeDataStorage, make_client: MakeClient, registry: CollectorRegistry
) -> None:
    events = make_events(30)
    client = make_client()
    await client.start()

    for event in events:
        client.emit(event)
    await wait_until(
        lambda: metric(registry, "audit_events_retried_total") >= 20, what="a few refused attempts"
    )

    assert client.pending == 30
    assert metric(registry, "audit_events_pending") == 30
    assert metric(registry, "audit_events_delivered_total") == 0

    await down_datastorage.start()
    await client.flush()

    assert down_datastorage.stored_ids() == ids(events)
    assert metric(registry, "audit_events_pending") == 0


async def test_a_request_that_times_out_is_retried(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    events = make_events(2)
    datastorage.hang_next = 1
    client = make_client(request_timeout=0.2)
    await client.start()

    for event in events:
        client.emit(event)
    await client.flush()

    assert len(datastorage.requests) == 2
    assert datastorage.stored_ids() == ids(events)


async def test_a_long_outage_loses_nothing_and_duplicates_nothing(
    datastorage: FakeDataStorage, make_client: MakeClient, registry: CollectorRegistry
) -> None:
    events = make_events(500)
    datastorage.answers.extend([503, 429, 500] * 7)
    client = make_client(batch_size=50)
    await client.start()

    for event in events:
        client.emit(event)
    await client.flush()

    assert datastorage.stored_ids() == ids(events)
    assert sum(len(batch) for batch in datastorage.requests) == 500 + 21 * 50
    assert metric(registry, "audit_events_delivered_total") == 500


# --- poison events -------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["detail", "field", "none"])
async def test_a_poison_event_is_quarantined_and_the_rest_delivered(
    datastorage: FakeDataStorage,
    make_client: MakeClient,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    style: Any,
) -> None:
    events = make_events(8)
    poison = {ids(events)[2], ids(events)[5]}
    datastorage.poison = poison
    datastorage.index_style = style
    client = make_client()
    await client.start()

    for event in events:
        client.emit(event)
    await client.flush()

    assert datastorage.stored_ids() == [i for i in ids(events) if i not in poison]
    assert {q.event_id for q in client.quarantined} == poison
    assert all("HTTP 400" in q.reason for q in client.quarantined)
    assert metric(registry, "audit_events_quarantined_total") == 2
    assert metric(registry, "audit_events_delivered_total") == 6
    assert metric(registry, "audit_events_pending") == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert all(any(event_id in message for message in errors) for event_id in poison)


async def test_a_batch_too_large_is_split_not_quarantined(
    datastorage: FakeDataStorage, make_client: MakeClient, registry: CollectorRegistry
) -> None:
    events = make_events(10)
    datastorage.max_batch = 3
    client = make_client()
    await client.start()

    for event in events:
        client.emit(event)
    await client.flush()

    assert sorted(datastorage.stored_ids()) == sorted(ids(events))
    assert client.quarantined == ()
    assert metric(registry, "audit_events_delivered_total") == 10


async def test_an_event_that_is_not_json_is_quarantined_without_raising(
    datastorage: FakeDataStorage, make_client: MakeClient, registry: CollectorRegistry
) -> None:
    good, bad = make_events(2)
    bad = dataclasses.replace(bad, event_data={"when": datetime.now(UTC)})  # type: ignore[dict-item]
    client = make_client()
    await client.start()

    client.emit(bad)
    client.emit(good)
    await client.flush()

    assert datastorage.stored_ids() == [str(good.event_id)]
    assert [q.event_id for q in client.quarantined] == [str(bad.event_id)]
    assert "not serialisable" in client.quarantined[0].reason
    assert metric(registry, "audit_events_quarantined_total") == 1
    assert metric(registry, "audit_events_buffered_total") == 1


# --- emit never blocks, a full queue ---------------------------------------------------------------


def test_emit_is_a_plain_function() -> None:
    # A coroutine could be forgotten or awaited behind a slow DataStorage; emit cannot be either.
    assert not inspect.iscoroutinefunction(AuditClient.emit)


async def test_emit_returns_while_datastorage_hangs(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    datastorage.hang_next = 1
    client = make_client(request_timeout=60)
    await client.start()
    first, *rest = make_events(1000)

    client.emit(first)
    await wait_until(lambda: len(datastorage.requests) == 1, what="the hanging request")
    for event in rest:
        client.emit(event)

    assert client.pending == 1000
    datastorage.release()
    await client.flush()
    assert len(datastorage.stored) == 1000


async def test_above_max_pending_emit_still_queues_and_reports_saturation(
    down_datastorage: FakeDataStorage,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = make_events(50)
    client = make_client(batch_size=5, max_pending=20)
    await client.start()

    for event in events:
        client.emit(event)

    assert client.pending == 50
    assert client.saturated
    warnings = [r for r in caplog.records if "max_pending" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warnings) == 1

    await down_datastorage.start()
    await client.flush()

    assert not client.saturated
    assert down_datastorage.stored_ids() == ids(events)


# --- flush and close -------------------------------------------------------------------------------


async def test_flush_with_nothing_pending_returns_even_before_start(make_client: MakeClient) -> None:
    await make_client().flush()


async def test_flush_with_events_but_no_sender_is_an_error(make_client: MakeClient) -> None:
    client = make_client()
    client.emit(make_events(1)[0])

    with pytest.raises(RuntimeError, match="not running"):
        await client.flush()


async def test_a_flush_cut_short_leaves_the_events_queued(
    down_datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    events = make_events(3)
    client = make_client()
    await client.start()
    for event in events:
        client.emit(event)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await client.flush()

    assert client.pending == 3
    await down_datastorage.start()
    await client.flush()
    assert down_datastorage.stored_ids() == ids(events)


async def test_close_delivers_everything_then_stops(
    datastorage: FakeDataStorage, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    events = make_events(7)
    client = make_client(flush_interval=3600)
    await client.start()
    for event in events:
        client.emit(event)

    assert await client.close() == 0
    assert datastorage.stored_ids() == ids(events)

    late = make_events(1, prefix="late")[0]
    client.emit(late)  # must not raise
    assert any("after close" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert await client.close() == 1
    assert str(late.event_id) not in datastorage.stored


async def test_close_gives_up_after_its_timeout_and_reports_what_is_left(
    down_datastorage: FakeDataStorage,
    make_client: MakeClient,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    await client.start()
    for event in make_events(4):
        client.emit(event)
    await wait_until(lambda: metric(registry, "audit_events_retried_total") > 0, what="a refused attempt")

    assert await client.close(timeout=0.05) == 4
    assert any("4 events not delivered" in r.getMessage() for r in caplog.records)
    retried = metric(registry, "audit_events_retried_total")
    await down_datastorage.start()
    assert metric(registry, "audit_events_retried_total") == retried  # the sender is gone
    assert down_datastorage.requests == []


async def test_the_context_manager_starts_and_closes(datastorage: FakeDataStorage) -> None:
    events = make_events(3)

    async with AuditClient(datastorage.url, registry=CollectorRegistry(), flush_interval=3600) as client:
        for event in events:
            client.emit(event)

    assert datastorage.stored_ids() == ids(events)


# --- restart safety ----------------------------------------------------------------------------------


async def test_events_rebuilt_after_a_restart_are_stored_once(
    down_datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    before = make_events(6, at=datetime.now(UTC))
    crashed = make_client()
    await crashed.start()
    await down_datastorage.start()
    for event in before[:3]:
        crashed.emit(event)
    await crashed.flush()
    await down_datastorage.stop()
    for event in before[3:]:
        crashed.emit(event)
    assert await crashed.close(timeout=0.05) == 3  # the process "dies" with 3 events undelivered

    # The restarted controller rebuilds every event of these SPs, later, with the same ids.
    after = make_events(6, at=datetime.now(UTC) + timedelta(minutes=1))
    restarted = make_client(registry=CollectorRegistry())
    await down_datastorage.start()
    await restarted.start()
    for event in after:
        restarted.emit(event)
    await restarted.flush()

    assert ids(after) == ids(before)
    assert down_datastorage.stored_ids() == ids(before)
    first_stored = down_datastorage.stored[ids(before)[0]]
    assert first_stored == before[0].to_raw()  # the first write wins on the DataStorage side


async def test_a_restart_re_sends_only_the_events_datastorage_lacks(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    trail = make_events(6)
    first = make_client()
    await first.start()
    for event in trail[:4]:
        first.emit(event)
    await first.flush()
    await first.close()
    sent_before = len(datastorage.requests)

    registry = CollectorRegistry()
    restarted = make_client(registry=registry)
    await restarted.start()
    restarted.resend(trail)
    await restarted.flush()

    asked = [key for query in datastorage.known_queries for key in query]
    assert asked == [
        {"event_id": str(event.event_id), "event_timestamp": event.to_raw()["event_timestamp"]}
        for event in trail
    ]
    assert [event["event_id"] for batch in datastorage.requests[sent_before:] for event in batch] == ids(
        trail[4:]
    )
    assert datastorage.stored_ids() == ids(trail)
    assert metric(registry, "audit_events_already_stored_total") == 4
    assert metric(registry, "audit_events_delivered_total") == 2
    assert restarted.pending == 0


async def test_re_sent_events_wait_for_an_answer_and_are_asked_about_again_after_a_failure(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    trail = make_events(3)
    for event in trail[:2]:
        datastorage.stored[str(event.event_id)] = dict(event.to_raw())
    datastorage.known_answers.extend([503, 503])
    datastorage.answers.extend([503, 503])  # the sends in between fail too: DataStorage is sick
    registry = CollectorRegistry()
    client = make_client(registry=registry)
    await client.start()

    client.resend(trail)
    await client.flush()

    assert len(datastorage.known_queries) == 3
    assert [event["event_id"] for event in datastorage.requests[-1]] == ids(trail[2:])
    assert metric(registry, "audit_events_already_stored_total") == 2


async def test_a_datastorage_that_cannot_say_gets_the_trail_whole_and_is_not_asked_again(
    datastorage: FakeDataStorage, make_client: MakeClient
) -> None:
    trail = make_events(3)
    datastorage.stored[str(trail[0].event_id)] = dict(trail[0].to_raw())
    datastorage.known_answers.append(404)
    registry = CollectorRegistry()
    client = make_client(registry=registry)
    await client.start()

    client.resend(trail[:2])
    await client.flush()
    client.resend(trail[2:])
    await client.flush()

    assert len(datastorage.known_queries) == 1
    assert [event["event_id"] for batch in datastorage.requests for event in batch] == ids(trail)
    assert metric(registry, "audit_events_already_stored_total") == 0
    assert datastorage.stored_ids() == ids(trail)
