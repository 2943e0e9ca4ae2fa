"""`POST /api/v1/audit/events/known`: which of the events a client sent before are stored.

A controller that restarts rebuilds the audit trail of every SignalProcessing it meets from its
status; asking first lets it re-send only what never arrived.
"""

from __future__ import annotations

import uuid

import httpx

from test.integration.datastorage.support import BATCH_PATH, KNOWN_EVENTS_PATH, make_event, seconds_ago


def test_only_the_stored_events_are_known_each_looked_up_by_id_and_day(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    stored = [
        make_event(correlation_id, at=seconds_ago(30 - n), event_id=str(uuid.uuid4())) for n in range(3)
    ]
    assert ds_client.post(BATCH_PATH, json=stored).status_code == 201
    never_sent = make_event(correlation_id, at=seconds_ago(10), event_id=str(uuid.uuid4()))
    # The right id on another day names another row: the timestamp decides the partition.
    other_day = {"event_id": stored[0]["event_id"], "event_timestamp": "2026-01-01T00:00:00Z"}
    asked = [
        *({"event_id": event["event_id"], "event_timestamp": event["event_timestamp"]} for event in stored),
        {"event_id": never_sent["event_id"], "event_timestamp": never_sent["event_timestamp"]},
        other_day,
    ]

    response = ds_client.post(KNOWN_EVENTS_PATH, json={"events": asked})

    assert response.status_code == 200, response.text
    assert response.json() == {"known": [event["event_id"] for event in stored]}
    assert ds_client.post(KNOWN_EVENTS_PATH, json={"events": [other_day]}).json() == {"known": []}
