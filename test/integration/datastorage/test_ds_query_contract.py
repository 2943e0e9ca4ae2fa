"""Contract of GET /api/v1/audit/events: every filter, newest-first order, and pagination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from datastorage.timestamps import format_timestamp
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    assert_problem,
    make_event,
    query,
    seconds_ago,
)


def store(client: httpx.Client, events: list[dict[str, Any]]) -> list[str]:
    response = client.post(BATCH_PATH, json=events)
    assert response.status_code == 201, response.text
    ids: list[str] = response.json()["event_ids"]
    return ids


def actions(body: dict[str, Any]) -> list[str]:
    return [event["event_action"] for event in body["data"]]


@pytest.fixture
def varied(ds_client: httpx.Client, correlation_id: str) -> str:
    """Five events of one correlation id that differ in every filterable field, oldest first."""
    store(
        ds_client,
        [
            make_event(
                correlation_id, at=seconds_ago(50), event_action="a", event_type="sp.signal.processed"
            ),
            make_event(correlation_id, at=seconds_ago(40), event_action="b", event_outcome="failure"),
            make_event(correlation_id, at=seconds_ago(30), event_action="c", severity="critical"),
            make_event(correlation_id, at=seconds_ago(20), event_action="d", event_category="gateway"),
            make_event(
                correlation_id,
                at=seconds_ago(10),
                event_action="e",
                event_outcome="pending",
                severity="critical",
            ),
        ],
    )
    return correlation_id


def test_the_answer_has_data_and_pagination(ds_client: httpx.Client, varied: str) -> None:
    response = ds_client.get(EVENTS_PATH, params={"correlation_id": varied})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() == {"data", "pagination"}
    assert body["pagination"] == {"limit": 100, "offset": 0, "total": 5, "has_more": False}


def test_events_come_newest_first(ds_client: httpx.Client, varied: str) -> None:
    assert actions(query(ds_client, correlation_id=varied)) == ["e", "d", "c", "b", "a"]


def test_events_at_the_same_instant_are_ordered_by_id_descending(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    at = seconds_ago(5)
    ids = store(ds_client, [make_event(correlation_id, at=at) for _ in range(4)])

    body = query(ds_client, correlation_id=correlation_id)

    assert [e["event_id"] for e in body["data"]] == sorted(ids, key=uuid.UUID, reverse=True)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"event_type": "sp.signal.processed"}, ["a"], id="event_type"),
        pytest.param({"event_category": "gateway"}, ["d"], id="event_category"),
        pytest.param({"event_outcome": "failure"}, ["b"], id="event_outcome"),
        pytest.param({"severity": "critical"}, ["e", "c"], id="severity"),
        pytest.param(
            {"severity": "critical", "event_outcome": "pending"}, ["e"], id="filters-combine-with-and"
        ),
        pytest.param({"event_category": "workflow"}, [], id="no-match"),
    ],
)
def test_exact_match_filters(
    ds_client: httpx.Client, varied: str, params: dict[str, str], expected: list[str]
) -> None:
    body = query(ds_client, correlation_id=varied, **params)

    assert actions(body) == expected
    assert body["pagination"]["total"] == len(expected)


def test_the_correlation_id_filter_keeps_other_events_out(ds_client: httpx.Client, varied: str) -> None:
    other = f"ds-it-{uuid.uuid4()}"
    store(ds_client, [make_event(other)])

    assert query(ds_client, correlation_id=other)["pagination"]["total"] == 1
    assert query(ds_client, correlation_id=varied)["pagination"]["total"] == 5


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        pytest.param(lambda: format_timestamp(seconds_ago(35)), None, ["e", "d", "c"], id="since-rfc3339"),
        pytest.param(None, lambda: format_timestamp(seconds_ago(35)), ["b", "a"], id="until-rfc3339"),
        pytest.param(
            lambda: format_timestamp(seconds_ago(45)),
            lambda: format_timestamp(seconds_ago(15)),
            ["d", "c", "b"],
            id="since-and-until",
        ),
        pytest.param(lambda: "25s", None, ["e", "d"], id="since-relative-seconds"),
        pytest.param(lambda: "1h", None, ["e", "d", "c", "b", "a"], id="since-relative-hours"),
        pytest.param(None, lambda: "35s", ["b", "a"], id="until-relative"),
        pytest.param(lambda: "7d", None, ["e", "d", "c", "b", "a"], id="since-days"),
        pytest.param(
            lambda: (datetime.now(UTC) - timedelta(days=2)).date().isoformat(),
            None,
            ["e", "d", "c", "b", "a"],
            id="since-date",
        ),
        pytest.param(
            None, lambda: (datetime.now(UTC) - timedelta(days=2)).date().isoformat(), [], id="until-date"
        ),
    ],
)
def test_time_range_filters(
    ds_client: httpx.Client, varied: str, since: Any, until: Any, expected: list[str]
) -> None:
    params = {"correlation_id": varied}
    if since:
        params["since"] = since()
    if until:
        params["until"] = until()

    assert actions(query(ds_client, **params)) == expected


@pytest.mark.parametrize(
    ("offset", "expected", "has_more"),
    [
        pytest.param(0, ["e", "d"], True, id="first-page"),
        pytest.param(2, ["c", "b"], True, id="middle-page"),
        pytest.param(4, ["a"], False, id="last-page"),
        pytest.param(9, [], False, id="past-the-end"),
    ],
)
def test_pages_of_two(
    ds_client: httpx.Client, varied: str, offset: int, expected: list[str], has_more: bool
) -> None:
    body = query(ds_client, correlation_id=varied, limit=2, offset=offset)

    assert actions(body) == expected
    assert body["pagination"] == {"limit": 2, "offset": offset, "total": 5, "has_more": has_more}


def test_the_default_limit_is_100(ds_client: httpx.Client, correlation_id: str) -> None:
    store(ds_client, [make_event(correlation_id, at=seconds_ago(i)) for i in range(101)])

    body = query(ds_client, correlation_id=correlation_id)

    assert len(body["data"]) == 100
    assert body["pagination"] == {"limit": 100, "offset": 0, "total": 101, "has_more": True}


def test_the_largest_limit_is_1000(ds_client: httpx.Client, correlation_id: str) -> None:
    store(ds_client, [make_event(correlation_id, at=seconds_ago(i)) for i in range(3)])

    assert query(ds_client, correlation_id=correlation_id, limit=1000)["pagination"]["limit"] == 1000
    assert_problem(
        ds_client.get(EVENTS_PATH, params={"correlation_id": correlation_id, "limit": 1001}),
        400,
        "validation-error",
        "limit",
    )
