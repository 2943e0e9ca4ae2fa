"""The event fields of 2026 (actor, cluster_id, parent date, error, retention, sensitivity) and the
query filters on cluster_id and on event_data keys, through the API and down to PostgreSQL."""

from __future__ import annotations

import ipaddress
import random

import httpx
import pytest

from datastorage.api.audit import MAX_DETAIL_VALUE_LENGTH
from datastorage.schemas import AuditEventRequest
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    Stack,
    make_event,
    query,
    seconds_ago,
    sql,
)


def test_the_2026_fields_are_stored_and_returned_as_given(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    parent = ds_client.post(EVENTS_PATH, json=make_event(correlation_id, at=seconds_ago(5))).json()
    [stored_parent] = query(ds_client, correlation_id=correlation_id)["data"]
    given = {
        "actor_type": "user",
        "actor_id": "alice@example.com",
        "actor_ip": "2001:db8::7",
        "cluster_id": "east-1",
        "parent_event_id": parent["event_id"],
        "parent_event_date": stored_parent["event_date"],
        "error_code": "ERR_TIMEOUT",
        "error_message": "enrichment timed out after 30s",
        "retention_days": 90,
        "is_sensitive": True,
    }

    response = ds_client.post(EVENTS_PATH, json=make_event(correlation_id, event_action="child", **given))

    assert response.status_code == 201, response.text
    [child] = query(ds_client, correlation_id=correlation_id, limit=1)["data"]
    assert {key: child[key] for key in given} == given


def test_an_old_client_sending_cluster_name_has_it_stored_as_cluster_id(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    old_client_event = make_event(correlation_id, cluster_id=..., cluster_name="west")

    assert ds_client.post(EVENTS_PATH, json=old_client_event).status_code == 201

    [stored] = query(ds_client, correlation_id=correlation_id)["data"]
    assert stored["cluster_id"] == "west"
    assert "cluster_name" not in stored


def test_actor_ips_are_kept_as_postgresql_writes_them(ds_stack: Stack) -> None:
    """The record's text of an address is the row's, so a record read back (the DLQ, the hash chain)
    equals the one accepted. Random addresses of every form PostgreSQL writes its own way."""
    rng = random.Random(13)
    addresses = [
        *(str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(100)),
        *(str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(100)),
        # Runs of zero groups at random places and of random lengths, IPv4-compatible among them.
        *(str(ipaddress.IPv6Address(rng.getrandbits(128) & _zero_run(rng))) for _ in range(300)),
        *(f"::ffff:{ipaddress.IPv4Address(rng.getrandbits(32))}" for _ in range(50)),
        *(f"::{rng.getrandbits(16):x}" for _ in range(50)),
    ]
    accepted = [
        AuditEventRequest.model_validate(make_event("ds-it-ip", actor_ip=address)).to_record().actor_ip
        for address in addresses
    ]

    rows = sql(
        ds_stack.database_url,
        "SELECT host(address::inet) AS text"
        " FROM unnest($1::text[]) WITH ORDINALITY AS given(address, n) ORDER BY n",
        addresses,
    )

    assert accepted == [row["text"] for row in rows]


def _zero_run(rng: random.Random) -> int:
    """A 128-bit mask that clears a run of 16-bit groups."""
    first = rng.randrange(8)
    length = rng.randrange(1, 9 - first)
    run = ((1 << (16 * length)) - 1) << (16 * (8 - first - length))
    return ((1 << 128) - 1) ^ run


@pytest.fixture
def details(ds_client: httpx.Client, correlation_id: str) -> str:
    """Events of one correlation id whose event_data and cluster_id differ, newest first: a to e."""
    events = [
        ("a", None, {"phase": "Completed", "n": 42}),
        ("b", None, {"phase": "Failed", "n": 42.0}),
        ("c", "east", {"phase": "42", "ok": True}),
        ("d", "west", {"n": None, "ok": False, "labels": {"team": "a"}, "tags": ["x"]}),
        ("e", "east", {"n": -0.5, "note": ""}),
    ]
    response = ds_client.post(
        BATCH_PATH,
        json=[
            make_event(
                correlation_id,
                at=seconds_ago(10 * age),
                event_action=action,
                cluster_id=cluster,
                event_data=data,
            )
            for age, (action, cluster, data) in enumerate(events, 1)
        ],
    )
    assert response.status_code == 201, response.text
    return correlation_id


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"cluster_id": "east"}, ["c", "e"], id="cluster_id"),
        pytest.param({"cluster_id": "north"}, [], id="cluster_id-no-match"),
        pytest.param({"detail_key": "phase"}, ["a", "b", "c"], id="key-present"),
        pytest.param({"detail_key": "n"}, ["a", "b", "d", "e"], id="key-present-even-with-null"),
        pytest.param({"detail_key": "missing"}, [], id="key-absent"),
        pytest.param({"detail_key": "phase", "detail_value": "Completed"}, ["a"], id="string"),
        pytest.param({"detail_key": "phase", "detail_value": "completed"}, [], id="string-case-matters"),
        pytest.param({"detail_key": "phase", "detail_value": "42"}, ["c"], id="string-of-digits"),
        pytest.param({"detail_key": "n", "detail_value": "42"}, ["a"], id="integer"),
        pytest.param({"detail_key": "n", "detail_value": "42.0"}, ["b"], id="number-as-written"),
        pytest.param({"detail_key": "n", "detail_value": "-0.5"}, ["e"], id="negative-decimal"),
        pytest.param({"detail_key": "ok", "detail_value": "true"}, ["c"], id="true"),
        pytest.param({"detail_key": "ok", "detail_value": "false"}, ["d"], id="false"),
        pytest.param({"detail_key": "note", "detail_value": ""}, ["e"], id="empty-string"),
        pytest.param({"detail_key": "n", "detail_value": "null"}, [], id="null-never-matches"),
        pytest.param(
            {"detail_key": "labels", "detail_value": '{"team": "a"}'}, [], id="object-never-matches"
        ),
        pytest.param({"detail_key": "tags", "detail_value": '["x"]'}, [], id="array-never-matches"),
        pytest.param({"detail_key": "team", "detail_value": "a"}, [], id="top-level-keys-only"),
        pytest.param(
            {"detail_key": "phase", "detail_value": "42", "cluster_id": "east"}, ["c"], id="filters-combine"
        ),
    ],
)
def test_cluster_id_and_event_data_filters(
    ds_client: httpx.Client, details: str, params: dict[str, str], expected: list[str]
) -> None:
    body = query(ds_client, correlation_id=details, **params)

    assert [event["event_action"] for event in body["data"]] == expected
    assert body["pagination"]["total"] == len(expected)


def test_the_longest_number_a_detail_value_may_be_is_just_a_filter(
    ds_client: httpx.Client, details: str
) -> None:
    number = "9" * MAX_DETAIL_VALUE_LENGTH

    assert query(ds_client, correlation_id=details, detail_key="n", detail_value=number)["data"] == []
