"""Recovery context from the parent RemediationRequest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from controller import kube
from controller.recovery import RawRemediationRequest, read_recovery_context, recovery_context
from controller.signalprocessing import (
    RawObjectReference,
    RecoveryContext,
    RemediationRequestRef,
    go_duration,
)

from .fakes import FakeReader, obj, schema_errors, status_schema

NOW = datetime(2025, 12, 24, 12, 0, 0, tzinfo=UTC)


def rr(status: dict[str, Any] | None, name: str = "rr-1", namespace: str = "ops") -> RawRemediationRequest:
    body: dict[str, Any] = {} if status is None else {"status": status}
    return cast(RawRemediationRequest, obj("RemediationRequest", name, namespace, **body))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(None, None, id="no-status"),
        pytest.param({}, None, id="no-attempts"),
        pytest.param({"recoveryAttempts": 0, "failureReason": "x"}, None, id="zero-attempts"),
        pytest.param({"recoveryAttempts": -1}, None, id="negative-attempts"),
        pytest.param({"recoveryAttempts": "2"}, None, id="attempts-not-a-number"),
        pytest.param({"recoveryAttempts": True}, None, id="attempts-a-bool"),
        pytest.param(
            {"recoveryAttempts": 2, "failureReason": "OOMKilled", "startTime": "2025-12-24T11:30:00Z"},
            RecoveryContext("rr-1", 2, "OOMKilled", timedelta(minutes=30)),
            id="full",
        ),
        pytest.param({"recoveryAttempts": 1}, RecoveryContext("rr-1", 1), id="no-reason-no-start"),
        pytest.param(
            {"recoveryAttempts": 1, "startTime": "not a time"},
            RecoveryContext("rr-1", 1),
            id="bad-start-time",
        ),
        pytest.param(
            {"recoveryAttempts": 1, "startTime": "2025-12-24T12:05:00Z"},
            RecoveryContext("rr-1", 1, time_since_first_failure=timedelta(0)),
            id="start-in-the-future-is-zero",
        ),
        pytest.param(
            {"recoveryAttempts": 3, "startTime": "2025-12-24T10:00:00.5+00:00"},
            RecoveryContext("rr-1", 3, time_since_first_failure=timedelta(hours=1, minutes=59, seconds=59.5)),
            id="fractional-seconds-and-offset",
        ),
        pytest.param(
            {"recoveryAttempts": 1, "startTime": "2025-12-24T11:00:00"},
            RecoveryContext("rr-1", 1, time_since_first_failure=timedelta(hours=1)),
            id="naive-time-is-utc",
        ),
    ],
)
def test_recovery_context(status: dict[str, Any] | None, expected: RecoveryContext | None) -> None:
    assert recovery_context(rr(status), now=NOW) == expected


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(seconds=42.9), "42s", id="seconds-truncated"),
        pytest.param(timedelta(minutes=5), "5m0s", id="minutes"),
        pytest.param(timedelta(days=1, hours=2, minutes=3, seconds=4), "26h3m4s", id="days-as-hours"),
        pytest.param(timedelta(hours=1), "1h0m0s", id="hour"),
        pytest.param(timedelta(seconds=-5), "0s", id="negative"),
    ],
)
def test_go_duration(delta: timedelta, text: str) -> None:
    assert go_duration(delta) == text


@pytest.mark.parametrize(
    ("context", "raw"),
    [
        pytest.param(
            RecoveryContext("rr-1", 2, "OOMKilled", timedelta(minutes=30)),
            {
                "previousRemediationId": "rr-1",
                "attemptCount": 2,
                "lastFailureReason": "OOMKilled",
                "timeSinceFirstFailure": "30m0s",
            },
            id="full",
        ),
        pytest.param(
            RecoveryContext("rr-1", 1),
            {"previousRemediationId": "rr-1", "attemptCount": 1},
            id="optional-fields-out",
        ),
    ],
)
def test_to_raw(context: RecoveryContext, raw: dict[str, Any]) -> None:
    assert context.to_raw() == raw
    assert schema_errors(context.to_raw(), status_schema()["properties"]["recoveryContext"]) == []


@pytest.mark.parametrize(
    ("raw", "sp_namespace", "namespace"),
    [
        pytest.param({"name": "rr-1", "namespace": "ops"}, "sp-ns", "ops", id="ref-namespace"),
        pytest.param({"name": "rr-1"}, "sp-ns", "sp-ns", id="defaults-to-sp-namespace"),
        pytest.param({"name": "rr-1", "namespace": ""}, "sp-ns", "sp-ns", id="empty-namespace"),
    ],
)
async def test_reads_the_rr_in_the_right_namespace(
    raw: dict[str, str], sp_namespace: str, namespace: str
) -> None:
    reader = FakeReader()
    reader.add(
        kube.REMEDIATIONREQUESTS, cast(dict[str, Any], rr({"recoveryAttempts": 1}, namespace=namespace))
    )
    ref = RemediationRequestRef.from_raw(cast(RawObjectReference, raw))

    context = await read_recovery_context(reader, ref, sp_namespace=sp_namespace, now=NOW)

    assert context == RecoveryContext("rr-1", 1)
    assert reader.log == [("get", "remediationrequests", namespace, "rr-1")]


async def test_missing_rr_gives_no_context() -> None:
    reader = FakeReader()
    ref = RemediationRequestRef("rr-gone", "ops")
    assert await read_recovery_context(reader, ref, sp_namespace="ops", now=NOW) is None


async def test_rr_without_attempts_gives_no_context() -> None:
    reader = FakeReader()
    reader.add(kube.REMEDIATIONREQUESTS, cast(dict[str, Any], rr({"recoveryAttempts": 0})))
    assert (
        await read_recovery_context(reader, RemediationRequestRef("rr-1", "ops"), sp_namespace="x", now=NOW)
        is None
    )


async def test_empty_ref_reads_nothing() -> None:
    reader = FakeReader()
    assert await read_recovery_context(reader, RemediationRequestRef(""), sp_namespace="ops", now=NOW) is None
    assert reader.log == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(kube.Forbidden("rbac", status=403), id="forbidden"),
        pytest.param(kube.TransientApiError("HTTP 503", status=503), id="unavailable"),
    ],
)
async def test_other_read_errors_are_transient(error: kube.ApiError) -> None:
    reader = FakeReader()
    reader.fail_get(kube.REMEDIATIONREQUESTS, "rr-1", error, namespace="ops")
    with pytest.raises(kube.TransientApiError) as raised:
        await read_recovery_context(reader, RemediationRequestRef("rr-1", "ops"), sp_namespace="ops", now=NOW)
    assert raised.value is error or raised.value.__cause__ is error
