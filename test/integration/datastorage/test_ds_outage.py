"""PostgreSQL and Redis outages: writes go to the dead-letter queue and are stored exactly once later.

Each test runs its own PostgreSQL, Redis and DataStorage, because it stops
servers that other tests would otherwise be using.
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
    assert_problem,
    dlq_length,
    make_event,
    metric,
    open_stack,
    redis_client,
    stored_count_by_id,
)
from test.integration.polling import eventually


def test_writes_during_a_postgres_outage_are_queued_then_stored_exactly_once(correlation_id: str) -> None:
    with open_stack() as stack, stack.client() as client:
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
        assert dlq_length(stack.redis.url) == 1 + 1 + 4 + 1
        assert client.get("/health").status_code == 503
        assert client.get("/health/ready").json()["reason"] == "database_unreachable"
        assert_problem(
            client.get(EVENTS_PATH, params={"correlation_id": correlation_id}), 503, "service-unavailable"
        )

        stack.postgres.start()

        eventually(lambda: dlq_length(stack.redis.url) == 0, timeout=30, message="the DLQ drains")
        accepted = (
            {e["event_id"] for e in before} | {single["event_id"]} | set(answers[2].json()["event_ids"])
        )
        assert stored_count_by_id(stack.postgres.url, correlation_id) == dict.fromkeys(accepted, 1)
        assert metric(client, "datastorage_dlq_drained_total") == 7
        assert (
            metric(
                client, "datastorage_audit_traces_total", service="signalprocessing", status="dlq_fallback"
            )
            == 7
        )
        assert client.get("/health/ready").status_code == 200


def test_with_postgres_and_redis_both_down_writes_are_refused_with_500(correlation_id: str) -> None:
    with open_stack() as stack, stack.client() as client:
        stack.postgres.stop(keep_data=True)
        stack.redis.stop(keep_data=True)

        single = client.post(EVENTS_PATH, json=make_event(correlation_id))
        batch = client.post(BATCH_PATH, json=[make_event(correlation_id)])

        assert_problem(single, 500, "database-error", "Failed to write audit events to database and DLQ")
        assert_problem(batch, 500, "database-error", "Failed to write audit events to database and DLQ")
        assert client.get("/health/ready").status_code == 503

        stack.redis.start()
        stack.postgres.start()
        eventually(
            lambda: client.post(EVENTS_PATH, json=make_event(correlation_id)).status_code == 201,
            timeout=30,
            message="writes succeed once both servers are back",
        )


def test_a_full_dead_letter_queue_refuses_rather_than_dropping_events(correlation_id: str) -> None:
    with open_stack(dlq=dataclasses.replace(FAST_DLQ, max_len=3)) as stack, stack.client() as client:
        stack.postgres.stop(keep_data=True)

        first = client.post(BATCH_PATH, json=[make_event(correlation_id) for _ in range(2)])
        too_many = client.post(BATCH_PATH, json=[make_event(correlation_id) for _ in range(2)])
        last = client.post(EVENTS_PATH, json=make_event(correlation_id))

        assert first.status_code == 202
        assert_problem(too_many, 500, "database-error", "dead-letter queue is full")
        assert last.status_code == 202
        stack.postgres.start()
        eventually(
            lambda: len(stored_count_by_id(stack.postgres.url, correlation_id)) == 3,
            timeout=30,
            message="the three queued events are stored",
        )


def test_an_entry_postgres_keeps_refusing_moves_to_the_dead_letter_stream_and_is_counted(
    correlation_id: str,
) -> None:
    with open_stack() as stack, stack.client() as client:
        good = AuditEventRequest.model_validate(make_event(correlation_id)).to_record()
        poison = AuditEventRequest.model_validate(make_event(correlation_id)).to_record().to_payload()
        poison["event_type"] = "x" * 300  # longer than the column: PostgreSQL refuses it every time
        with redis_client(stack.redis.url) as queue:
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
        assert stored_count_by_id(stack.postgres.url, correlation_id) == {str(good.event_id): 1}
        assert metric(client, "datastorage_dlq_dead_lettered_total") == 2
        assert metric(client, "datastorage_dlq_retry_total") == FAST_DLQ.max_attempts - 1


def _envelope(payload: dict[str, object]) -> str:
    return json.dumps({"type": "audit_event", "payload": payload, "retry_count": 0, "last_error": "test"})
