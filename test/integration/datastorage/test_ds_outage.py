"""PostgreSQL and Redis outages: writes go to the dead-letter queue and are stored exactly once later.

A test that stops PostgreSQL or Redis runs servers of its own, which no other
test uses; the others run a DataStorage of their own on the shared servers.
An outage is logged when it begins and when it ends, never at every retry.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

from datastorage.dlq import DEAD_LETTER_STREAM, DLQ_STREAM
from datastorage.schemas import AuditEventRequest
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    FAST_DLQ,
    OpenStack,
    OpenStackWithServers,
    assert_problem,
    dlq_length,
    logged,
    make_event,
    metric,
    redis_client,
    stored_count_by_id,
)
from test.integration.polling import eventually


def test_writes_during_a_postgres_outage_are_queued_then_stored_exactly_once(
    stack_with_own_servers: OpenStackWithServers, correlation_id: str
) -> None:
    with stack_with_own_servers() as stack, stack.client() as client:
        before = [make_event(correlation_id, event_id=str(uuid.uuid4())) for _ in range(3)]
        client.post(BATCH_PATH, json=before).raise_for_status()
        stack.postgres.stop(keep_data=True)

        single = make_event(correlation_id, event_id=str(uuid.uuid4()))
        batch = [make_event(correlation_id) for _ in range(4)]
        answers = [
            client.post(EVENTS_PATH, json=single),
            client.post(EVENTS_PATH, json=single),  # a client retry of the same event
            client.post(BATCH_PATH, json=batch),
            client.post(BATCH_PATH, json=before[:1]),  # already stored before the outage
        ]

        assert [answer.status_code for answer in answers] == [202, 202, 202, 202]
        assert answers[0].json()["status"] == "accepted"
        assert answers[0].json()["event_id"] == single["event_id"]
        assert dlq_length(stack.redis_url) == 1 + 1 + 4 + 1
        # A batch is checked as it is written: one PostgreSQL cannot take is still checked whole, and
        # an invalid one refused, never queued.
        invalid = [make_event(correlation_id), make_event(correlation_id, event_outcome="maybe")]
        assert_problem(client.post(BATCH_PATH, json=invalid), 400, "validation-error", "event at index 1")
        assert dlq_length(stack.redis_url) == 1 + 1 + 4 + 1
        assert client.get("/health").status_code == 503
        assert client.get("/health/ready").json()["reason"] == "database_unreachable"
        assert client.get("/readyz").json()["reason"] == "database_unreachable"
        assert_problem(
            client.get(EVENTS_PATH, params={"correlation_id": correlation_id}), 503, "service-unavailable"
        )

        stack.postgres.start()

        eventually(lambda: dlq_length(stack.redis_url) == 0, timeout=30, message="the DLQ drains")
        accepted = (
            {e["event_id"] for e in before} | {single["event_id"]} | set(answers[2].json()["event_ids"])
        )
        assert stored_count_by_id(stack.database_url, correlation_id) == dict.fromkeys(accepted, 1)
        assert metric(client, "datastorage_dlq_drained_total") == 7
        assert (
            metric(
                client, "datastorage_audit_traces_total", service="signalprocessing", status="dlq_fallback"
            )
            == 7
        )
        assert client.get("/health/ready").status_code == 200


def test_with_postgres_and_redis_both_down_writes_are_refused_with_500(
    stack_with_own_servers: OpenStackWithServers, correlation_id: str
) -> None:
    with stack_with_own_servers() as stack, stack.client() as client:
        stack.postgres.stop(keep_data=True)
        stack.redis.stop(keep_data=True)

        single = client.post(EVENTS_PATH, json=make_event(correlation_id))
        batch = client.post(BATCH_PATH, json=[make_event(correlation_id)])

        assert_problem(single, 500, "database-error", "Failed to write audit events to database and DLQ")
        assert_problem(batch, 500, "database-error", "Failed to write audit events to database and DLQ")
        assert client.get("/health/ready").status_code == 503
        assert client.get("/readyz").json()["reason"] == "database_unreachable"

        stack.redis.start()
        stack.postgres.start()
        eventually(
            lambda: client.post(EVENTS_PATH, json=make_event(correlation_id)).status_code == 201,
            timeout=30,
            message="writes succeed once both servers are back",
        )


def test_an_outage_is_logged_when_it_begins_and_when_it_ends_with_its_count_not_at_every_retry(
    stack_with_own_servers: OpenStackWithServers, correlation_id: str
) -> None:
    with stack_with_own_servers() as stack, stack.client() as client:
        stack.redis.stop(keep_data=True)
        eventually(
            lambda: metric(client, "datastorage_dlq_retry_failures_total", dependency="redis") >= 3,
            message="the DLQ worker fails to reach Redis a few times",
        )
        stack.postgres.stop(keep_data=True)
        refused = [client.post(EVENTS_PATH, json=make_event(correlation_id)).status_code for _ in range(3)]
        stack.redis.start()
        eventually(
            lambda: logged(stack.log_path, "Redis reachable again"), message="the DLQ worker reaches Redis"
        )
        queued = client.post(EVENTS_PATH, json=make_event(correlation_id)).status_code
        stack.postgres.start()
        eventually(
            lambda: client.post(EVENTS_PATH, json=make_event(correlation_id)).status_code == 201,
            timeout=30,
            message="writes are stored again",
        )
        redis_failures = metric(client, "datastorage_dlq_retry_failures_total", dependency="redis")

    assert (refused, queued) == ([500, 500, 500], 202)
    # Everything the instance logged at warning or above (asyncpg's and uvicorn's lines included).
    warnings = [entry for entry in logged(stack.log_path, "") if entry["level"] not in ("debug", "info")]
    assert [entry["message"].split(" after ")[0] for entry in warnings] == [
        "Redis unreachable: DLQ retry paused",
        "PostgreSQL unreachable: events go to the DLQ",
        "events refused: PostgreSQL and the DLQ both failed",
        "Redis reachable again",
        "events accepted again",
        "PostgreSQL takes writes again",
    ]
    redis_back, accepted, postgres_back = warnings[3:]
    assert redis_back["failed_attempts"] == redis_failures
    assert accepted["message"].startswith("events accepted again after 3 failed requests over ")
    assert postgres_back["failed_attempts"] >= 4


def test_a_full_dead_letter_queue_refuses_rather_than_dropping_events(
    stack_with_own_servers: OpenStackWithServers, correlation_id: str
) -> None:
    with (
        stack_with_own_servers(dlq=dataclasses.replace(FAST_DLQ, max_len=3)) as stack,
        stack.client() as client,
    ):
        stack.postgres.stop(keep_data=True)

        first = client.post(BATCH_PATH, json=[make_event(correlation_id) for _ in range(2)])
        too_many = client.post(BATCH_PATH, json=[make_event(correlation_id) for _ in range(2)])
        last = client.post(EVENTS_PATH, json=make_event(correlation_id))

        assert first.status_code == 202
        assert_problem(too_many, 500, "database-error", "dead-letter queue is full")
        assert last.status_code == 202
        stack.postgres.start()
        eventually(
            lambda: len(stored_count_by_id(stack.database_url, correlation_id)) == 3,
            timeout=30,
            message="the three queued events are stored",
        )


def test_an_entry_postgres_keeps_refusing_moves_to_the_dead_letter_stream_and_is_counted(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    with stack_on_shared_servers() as stack, stack.client() as client:
        good = AuditEventRequest.model_validate(make_event(correlation_id)).to_record()
        poison = AuditEventRequest.model_validate(make_event(correlation_id)).to_record().to_payload()
        poison["event_type"] = "x" * 300  # longer than the column: PostgreSQL refuses it every time
        with redis_client(stack.redis_url) as queue:
            for message in (
                _envelope(good.to_payload()),
                _envelope(poison),
                "this is not JSON",
            ):
                queue.xadd(DLQ_STREAM, {"message": message})

            eventually(
                lambda: queue.xlen(DEAD_LETTER_STREAM) == 2, timeout=30, message="two entries are buried"
            )
            buried = {fields["final_retry_count"] for _, fields in queue.xrange(DEAD_LETTER_STREAM)}
            assert queue.xlen(DLQ_STREAM) == 0

        assert buried == {"0", str(FAST_DLQ.max_attempts)}
        assert stored_count_by_id(stack.database_url, correlation_id) == {str(good.event_id): 1}
        assert metric(client, "datastorage_dlq_dead_lettered_total") == 2
        assert metric(client, "datastorage_dlq_retry_total") == FAST_DLQ.max_attempts - 1


def _envelope(payload: dict[str, object]) -> str:
    return json.dumps({"type": "audit_event", "payload": payload, "retry_count": 0, "last_error": "test"})


def test_readiness_on_both_paths_needs_redis_as_well_as_postgres(
    stack_with_own_servers: OpenStackWithServers,
) -> None:
    with stack_with_own_servers() as stack, stack.client() as client:
        stack.redis.stop(keep_data=True)

        answers = [client.get(path) for path in ("/readyz", "/health/ready")]

        assert [(a.status_code, a.json()["reason"]) for a in answers] == [(503, "redis_unreachable")] * 2
        assert client.get("/health").status_code == 200
        stack.redis.start()
        eventually(lambda: client.get("/readyz").status_code == 200, message="ready once Redis is back")
