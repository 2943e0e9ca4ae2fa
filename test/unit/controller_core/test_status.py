"""The status state machine: phases, conditions, the failure patch and when each phase began."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from controller.signalprocessing import (
    Condition,
    ConditionReason,
    ConditionType,
    FailureInfo,
    FailureReason,
    Phase,
    Status,
    parse_timestamp,
    status_patch,
    timestamp,
)
from controller.transitions import (
    condition_time,
    failed,
    phase_entered_at,
    seconds_in_phase,
    succeeded,
    with_condition,
)

EARLIER = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 1, 10, 5, 30, 750000, tzinfo=UTC)


def condition(
    kind: ConditionType, status: str, *, at: str = "2026-01-01T10:00:00Z", **fields: Any
) -> dict[str, Any]:
    return {
        "type": kind.value,
        "status": status,
        "reason": "Before",
        "message": "before",
        "observedGeneration": 1,
        "lastTransitionTime": at,
    } | fields


ENRICHED = condition(ConditionType.ENRICHMENT, "True")


@pytest.mark.parametrize(
    ("phase", "terminal"),
    [
        pytest.param(phase, phase in (Phase.COMPLETED, Phase.FAILED), id=phase.value or "New")
        for phase in Phase
    ],
)
def test_only_completed_and_failed_are_terminal(phase: Phase, terminal: bool) -> None:
    assert phase.is_terminal is terminal


def test_phases_are_ordered_along_the_pipeline_and_failed_ranks_with_completed() -> None:
    ladder = [
        Phase.NEW,
        Phase.PENDING,
        Phase.ENRICHING,
        Phase.CLASSIFYING,
        Phase.CATEGORIZING,
        Phase.COMPLETED,
    ]
    assert [phase.order for phase in ladder] == list(range(len(ladder)))
    assert Phase.FAILED.order == Phase.COMPLETED.order


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        pytest.param(None, Phase.NEW, id="no-status"),
        pytest.param({}, Phase.NEW, id="empty-status"),
        pytest.param({"phase": ""}, Phase.NEW, id="empty-phase"),
        pytest.param({"phase": "Classifying", "startTime": "x"}, Phase.CLASSIFYING, id="classifying"),
        pytest.param({"phase": "Failed"}, Phase.FAILED, id="failed"),
    ],
)
def test_phase_of_a_status(status: dict[str, Any] | None, phase: Phase) -> None:
    assert Status.from_raw(status or {}).phase is phase


def test_a_phase_the_crd_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="'Done'"):
        Status.from_raw({"phase": "Done"})


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(NOW, "2026-01-01T10:05:30Z", id="fraction-cut-off"),
        pytest.param(
            datetime(2026, 1, 1, 12, 5, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-01T10:05:30Z",
            id="to-utc",
        ),
    ],
)
def test_timestamps_are_whole_seconds_in_utc(moment: datetime, text: str) -> None:
    assert timestamp(moment) == text
    assert parse_timestamp(text) == moment.replace(microsecond=0)


@pytest.mark.parametrize(
    ("conditions", "succeeded", "expected"),
    [
        pytest.param(
            [],
            True,
            [
                condition(
                    ConditionType.CLASSIFICATION,
                    "True",
                    at="2026-01-01T10:05:30Z",
                    reason="ClassificationSucceeded",
                    message="now",
                    observedGeneration=2,
                )
            ],
            id="added-when-absent",
        ),
        pytest.param(
            [ENRICHED],
            True,
            [
                ENRICHED,
                condition(
                    ConditionType.CLASSIFICATION,
                    "True",
                    at="2026-01-01T10:05:30Z",
                    reason="ClassificationSucceeded",
                    message="now",
                    observedGeneration=2,
                ),
            ],
            id="appended-after-the-others",
        ),
        pytest.param(
            [condition(ConditionType.CLASSIFICATION, "True"), ENRICHED],
            True,
            [
                condition(
                    ConditionType.CLASSIFICATION,
                    "True",
                    reason="ClassificationSucceeded",
                    message="now",
                    observedGeneration=2,
                ),
                ENRICHED,
            ],
            id="same-status-keeps-its-transition-time-and-place",
        ),
        pytest.param(
            [ENRICHED, condition(ConditionType.CLASSIFICATION, "True")],
            False,
            [
                ENRICHED,
                condition(
                    ConditionType.CLASSIFICATION,
                    "False",
                    at="2026-01-01T10:05:30Z",
                    reason="ClassificationSucceeded",
                    message="now",
                    observedGeneration=2,
                ),
            ],
            id="changed-status-moves-its-transition-time",
        ),
    ],
)
def test_with_condition_upserts_one_condition_by_type(
    conditions: list[dict[str, Any]], succeeded: bool, expected: list[dict[str, Any]]
) -> None:
    given = copy.deepcopy(conditions)

    updated = with_condition(
        tuple(Condition.from_raw(c) for c in conditions),
        ConditionType.CLASSIFICATION,
        succeeded=succeeded,
        reason=ConditionReason.CLASSIFICATION_SUCCEEDED,
        message="now",
        now=NOW,
        generation=2,
    )

    assert [c.to_raw() for c in updated] == expected
    assert conditions == given  # the status read is left as it was


@pytest.mark.parametrize(
    ("failing", "failed_condition"),
    [
        pytest.param(Phase.PENDING, ConditionType.ENRICHMENT, id="pending"),
        pytest.param(Phase.ENRICHING, ConditionType.ENRICHMENT, id="enriching"),
        pytest.param(Phase.CLASSIFYING, ConditionType.CLASSIFICATION, id="classifying"),
        pytest.param(Phase.CATEGORIZING, ConditionType.CATEGORIZATION, id="categorizing"),
    ],
)
def test_a_failure_marks_its_phase_condition_processing_and_ready_false(
    failing: Phase, failed_condition: ConditionType
) -> None:
    status = {"phase": failing.value, "startTime": "2026-01-01T10:00:00Z", "conditions": [ENRICHED]}

    before = Status.from_raw(status)
    after = failed(
        before, failing, reason=FailureReason.REGO_EVALUATION_ERROR, message="boom", now=NOW, generation=3
    )
    patch = status_patch(before, after)

    marked = condition(
        failed_condition,
        "False",
        at="2026-01-01T10:05:30Z",
        reason="RegoEvaluationError",
        message="boom",
        observedGeneration=3,
    )
    processing = marked | {"type": ConditionType.PROCESSING.value}
    not_ready = marked | {"type": ConditionType.READY.value, "reason": "NotReady"}
    kept = [] if failed_condition is ConditionType.ENRICHMENT else [ENRICHED]
    assert patch == {
        "phase": "Failed",
        "failedPhase": failing.value,
        "failureInfo": {"error": "boom", "lastFailureTime": "2026-01-01T10:05:30Z"},
        "completionTime": "2026-01-01T10:05:30Z",
        "conditions": [*kept, marked, processing, not_ready],
    }


STARTED = {"startTime": "2026-01-01T10:00:00Z"}
ALL_RECORDED = STARTED | {
    "conditions": [
        condition(ConditionType.ENRICHMENT, "True", at="2026-01-01T10:00:02Z"),
        condition(ConditionType.CLASSIFICATION, "True", at="2026-01-01T10:00:05Z"),
    ]
}


@pytest.mark.parametrize(
    ("status", "phase", "entered"),
    [
        pytest.param(ALL_RECORDED, Phase.NEW, None, id="new-is-not-in-the-status"),
        pytest.param(ALL_RECORDED, Phase.PENDING, "2026-01-01T10:00:00Z", id="pending-at-start"),
        pytest.param(ALL_RECORDED, Phase.ENRICHING, "2026-01-01T10:00:00Z", id="enriching-at-start-too"),
        pytest.param(ALL_RECORDED, Phase.CLASSIFYING, "2026-01-01T10:00:02Z", id="classifying-when-enriched"),
        pytest.param(
            ALL_RECORDED, Phase.CATEGORIZING, "2026-01-01T10:00:05Z", id="categorizing-when-classified"
        ),
        pytest.param({}, Phase.PENDING, None, id="pending-without-start-time"),
        pytest.param(STARTED, Phase.CLASSIFYING, None, id="classifying-without-its-condition"),
    ],
)
def test_when_the_status_says_a_phase_began(
    status: dict[str, Any], phase: Phase, entered: str | None
) -> None:
    assert phase_entered_at(Status.from_raw(status), phase) == (parse_timestamp(entered) if entered else None)


def test_condition_time_of_an_absent_condition_is_none() -> None:
    recorded = Status.from_raw(ALL_RECORDED)
    assert condition_time(recorded, ConditionType.CATEGORIZATION) is None
    assert condition_time(recorded, ConditionType.ENRICHMENT) == parse_timestamp("2026-01-01T10:00:02Z")


LEFT = datetime(2026, 1, 1, 10, 0, 5, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phase", "entered", "seconds"),
    [
        pytest.param(
            Phase.ENRICHING, LEFT - timedelta(milliseconds=40), 0.04, id="entered-this-pass-is-exact"
        ),
        pytest.param(Phase.CLASSIFYING, None, 3.25, id="entered-earlier-from-the-status"),
        pytest.param(Phase.CATEGORIZING, None, 0.25, id="status-second-cut-down"),
        pytest.param(Phase.NEW, None, None, id="new-has-no-start"),
        pytest.param(Phase.ENRICHING, LEFT + timedelta(seconds=1), 0.0, id="clock-went-back-is-zero"),
    ],
)
def test_seconds_in_phase(phase: Phase, entered: datetime | None, seconds: float | None) -> None:
    assert seconds_in_phase(
        Status.from_raw(ALL_RECORDED), phase, left=LEFT, entered=entered
    ) == pytest.approx(seconds)


def test_a_success_clears_the_failure_in_force_with_nulls_the_api_server_merges() -> None:
    failure = {"error": "etcd timeout", "consecutiveFailures": 2, "lastFailureTime": "2026-01-01T10:00:01Z"}
    before = Status.from_raw({"phase": "Enriching", "failureInfo": failure})

    after = succeeded(before)

    assert after.failure_info == FailureInfo(last_failure_time=datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC))
    # A merge patch keeps the nested keys it leaves out: the cleared ones must be sent as None.
    assert status_patch(before, after) == {"failureInfo": {"error": None, "consecutiveFailures": None}}
    assert status_patch(after, after) == {}
