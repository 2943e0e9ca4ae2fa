"""Contract of the write endpoints: single and batch POST, their answers, and what gets stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx

from datastorage.timestamps import parse_rfc3339
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    assert_problem,
    make_event,
    query,
    total_for,
)

STORED_EVENT_KEYS = {
    "event_id",
    "event_timestamp",
    "event_date",
    "version",
    "event_type",
    "event_category",
    "event_action",
    "event_outcome",
    "correlation_id",
    "parent_event_id",
    "parent_event_date",
    "actor_type",
    "actor_id",
    "actor_ip",
    "resource_type",
    "resource_id",
    "namespace",
    "cluster_id",
    "severity",
    "duration_ms",
    "error_code",
    "error_message",
    "retention_days",
    "is_sensitive",
    "event_data",
}


def test_a_single_event_is_stored_and_answered_with_201(ds_client: httpx.Client, correlation_id: str) -> None:
    event = make_event(correlation_id, event_data={"phase": "Completed", "labels": {"team": "a"}})

    response = ds_client.post(EVENTS_PATH, json=event)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() == {"event_id", "event_timestamp", "message"}
    assert body["message"] == "Audit event created successfully"
    assert parse_rfc3339(body["event_timestamp"]) == parse_rfc3339(event["event_timestamp"])
    [stored] = query(ds_client, correlation_id=correlation_id)["data"]
    assert stored["event_id"] == str(uuid.UUID(body["event_id"]))
    assert stored["event_data"] == {"phase": "Completed", "labels": {"team": "a"}}


def test_a_stored_event_has_every_key_with_kubernauts_defaults(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    at = datetime.now(UTC).replace(microsecond=250000)
    ds_client.post(EVENTS_PATH, json=make_event(correlation_id, at=at)).raise_for_status()

    [stored] = query(ds_client, correlation_id=correlation_id)["data"]

    assert stored.keys() == STORED_EVENT_KEYS
    assert stored["event_timestamp"] == at.isoformat().replace("+00:00", "Z")
    assert stored["event_date"] == at.date().isoformat()
    assert stored["version"] == "1.0"
    assert (stored["actor_type"], stored["actor_id"]) == ("service", "signalprocessing-service")
    assert (stored["resource_type"], stored["resource_id"]) == ("signalprocessing", correlation_id)
    assert (stored["namespace"], stored["cluster_id"]) == ("default", "")
    assert stored["severity"] == "info"
    assert stored["duration_ms"] == 0
    assert (stored["error_code"], stored["error_message"]) == ("", "")
    assert (stored["retention_days"], stored["is_sensitive"]) == (2555, False)
    assert stored["parent_event_id"] is None and stored["parent_event_date"] is None


def test_supplied_optional_fields_are_stored_as_given(ds_client: httpx.Client, correlation_id: str) -> None:
    event = make_event(
        correlation_id,
        actor_type="controller",
        actor_id="sp-controller",
        resource_type="SignalProcessing",
        resource_id="sp-1",
        cluster_id="east",
        severity="warning",
        duration_ms=42,
        event_outcome="failure",
    )
    ds_client.post(EVENTS_PATH, json=event).raise_for_status()

    [stored] = query(ds_client, correlation_id=correlation_id)["data"]

    for key in ("actor_type", "actor_id", "resource_type", "resource_id", "cluster_id", "severity"):
        assert stored[key] == event[key]
    assert (stored["duration_ms"], stored["event_outcome"]) == (42, "failure")


def test_a_client_chosen_event_id_becomes_the_stored_id(ds_client: httpx.Client, correlation_id: str) -> None:
    chosen = str(uuid.uuid4())

    response = ds_client.post(EVENTS_PATH, json=make_event(correlation_id, event_id=chosen))

    assert response.json()["event_id"] == chosen
    assert [e["event_id"] for e in query(ds_client, correlation_id=correlation_id)["data"]] == [chosen]


def test_a_batch_is_stored_whole_with_ids_in_request_order(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    chosen = str(uuid.uuid4())
    events = [make_event(correlation_id, event_action=f"step-{i}") for i in range(3)]
    events[1]["event_id"] = chosen

    response = ds_client.post(BATCH_PATH, json=events)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["message"] == "3 audit events created successfully"
    assert len(body["event_ids"]) == 3 and body["event_ids"][1] == chosen
    stored = {
        e["event_id"]: e["event_action"] for e in query(ds_client, correlation_id=correlation_id)["data"]
    }
    assert stored == {event_id: f"step-{i}" for i, event_id in enumerate(body["event_ids"])}


def test_a_batch_with_one_invalid_element_is_refused_whole_naming_its_index(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    events = [make_event(correlation_id) for _ in range(4)]
    events[2]["event_outcome"] = "maybe"

    response = ds_client.post(BATCH_PATH, json=events)

    body = assert_problem(response, 400, "validation-error", "event at index 2: event_outcome")
    assert body["index"] == 2
    assert total_for(ds_client, correlation_id) == 0


def test_a_batch_with_one_event_out_of_the_time_window_is_refused_whole(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    events = [make_event(correlation_id) for _ in range(3)]
    events[1]["event_timestamp"] = "2020-01-01T00:00:00Z"

    response = ds_client.post(BATCH_PATH, json=events)

    body = assert_problem(
        response, 400, "validation-error", "event at index 1: invalid timestamp: timestamp is too old"
    )
    assert body["index"] == 1
    assert total_for(ds_client, correlation_id) == 0


def test_an_empty_batch_is_refused(ds_client: httpx.Client) -> None:
    assert_problem(ds_client.post(BATCH_PATH, json=[]), 400, "validation-error", "batch cannot be empty")


def test_an_event_may_name_an_existing_parent(ds_client: httpx.Client, correlation_id: str) -> None:
    parent = ds_client.post(EVENTS_PATH, json=make_event(correlation_id)).json()["event_id"]

    response = ds_client.post(EVENTS_PATH, json=make_event(correlation_id, parent_event_id=parent))

    assert response.status_code == 201
    children = query(ds_client, correlation_id=correlation_id, limit=1)["data"]
    assert children[0]["parent_event_id"] == parent


def test_a_single_event_naming_an_unknown_parent_is_refused(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    response = ds_client.post(EVENTS_PATH, json=make_event(correlation_id, parent_event_id=str(uuid.uuid4())))

    assert_problem(response, 400, "validation-error", "parent event does not exist")
    assert total_for(ds_client, correlation_id) == 0


def test_timestamps_up_to_five_minutes_ahead_are_accepted(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=4)
    later = datetime.now(UTC) + timedelta(minutes=6)

    assert ds_client.post(EVENTS_PATH, json=make_event(correlation_id, at=soon)).status_code == 201
    assert_problem(
        ds_client.post(EVENTS_PATH, json=make_event(correlation_id, at=later)),
        400,
        "validation-error",
        "timestamp is in the future",
    )


def test_the_event_date_is_the_utc_day_even_when_the_local_day_differs(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Twelve hours off UTC, on the side that makes the local calendar day differ.
    offset = timedelta(hours=-12) if now.hour < 12 else timedelta(hours=12)
    local = now.astimezone(timezone(offset))
    assert local.date() != now.date()
    ds_client.post(
        EVENTS_PATH, json=make_event(correlation_id, event_timestamp=local.isoformat())
    ).raise_for_status()

    [stored] = query(ds_client, correlation_id=correlation_id)["data"]

    assert stored["event_date"] == now.date().isoformat()
