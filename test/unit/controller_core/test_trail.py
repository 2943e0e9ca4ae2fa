"""The audit trail a status implies: which events each status write adds, and ids that survive a restart."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.audit_events import AuditEvent, EventType
from controller.signalprocessing import (
    Condition,
    ConditionReason,
    ConditionType,
    FailureReason,
    Phase,
    SignalProcessing,
    Status,
)
from controller.trail import audit_trail, new_events
from controller.transitions import failed, with_condition

STARTED = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
ENRICHED = datetime(2026, 1, 1, 10, 0, 2, tzinfo=UTC)
CLASSIFIED = datetime(2026, 1, 1, 10, 0, 3, tzinfo=UTC)
FINISHED = datetime(2026, 1, 1, 10, 0, 4, tzinfo=UTC)
POLICY_HASH = "e" * 64
SIGNAL_CLASSIFICATION = {
    "signalMode": "reactive",
    "signalName": "HighMemoryUsage",
    "severity": "critical",
    "policyHash": POLICY_HASH,
}


def _conditions(
    status: dict[str, Any], kind: ConditionType, at: datetime, *, reason: ConditionReason, message: str
) -> list[dict[str, Any]]:
    given = tuple(Condition.from_raw(c) for c in status.get("conditions") or [])
    updated = with_condition(
        given, kind, succeeded=True, now=at, generation=1, reason=reason, message=message
    )
    return [dict(condition.to_raw()) for condition in updated]


# The status after each successful step: the fields the pipeline writes that the trail reads.
NEW: dict[str, Any] = {}
PENDING = {"phase": "Pending", "startTime": "2026-01-01T10:00:00Z", "observedGeneration": 1}
ENRICHING = PENDING | {"phase": "Enriching"}
CLASSIFYING = ENRICHING | {
    "phase": "Classifying",
    "kubernetesContext": {
        "namespace": {"name": "shop"},
        "pod": {"phase": "Running"},
        "ownerChain": [{"namespace": "shop", "kind": "ReplicaSet", "name": "web-5d4f"}],
        "detectedLabels": {"hasPDB": True, "hasHPA": False},
        "degradedMode": False,
    },
    "conditions": _conditions(
        ENRICHING,
        ConditionType.ENRICHMENT,
        ENRICHED,
        reason=ConditionReason.ENRICHMENT_SUCCEEDED,
        message="m",
    ),
}
CATEGORIZING = CLASSIFYING | {
    "phase": "Categorizing",
    "environmentClassification": {
        "environment": "production",
        "source": "namespace-labels",
        "classifiedAt": "2026-01-01T10:00:03Z",
    },
    "priorityAssignment": {"priority": "P0", "source": "rego-policy", "assignedAt": "2026-01-01T10:00:03Z"},
    "signalClassification": SIGNAL_CLASSIFICATION,
    "conditions": _conditions(
        CLASSIFYING,
        ConditionType.CLASSIFICATION,
        CLASSIFIED,
        reason=ConditionReason.CLASSIFICATION_SUCCEEDED,
        message="m",
    ),
}
COMPLETED = CATEGORIZING | {
    "phase": "Completed",
    "businessClassification": {"businessUnit": "payments", "criticality": "high", "slaRequirement": "gold"},
    "completionTime": "2026-01-01T10:00:04Z",
    "conditions": _conditions(
        CATEGORIZING,
        ConditionType.PROCESSING,
        FINISHED,
        reason=ConditionReason.PROCESSING_SUCCEEDED,
        message="m",
    ),
}


def failed_in(status: dict[str, Any], phase: Phase) -> dict[str, Any]:
    """`status` after a permanent failure in `phase`, as the pipeline's `_fail` writes it."""
    after = failed(
        Status.from_raw(status),
        phase,
        reason=FailureReason.REGO_EVALUATION_ERROR,
        message="boom",
        now=FINISHED,
        generation=1,
    )
    return dict(after.to_raw())


def sp(status: dict[str, Any], uid: str = "3f0c3a8e-uid") -> SignalProcessing:
    return SignalProcessing.from_raw(raw_sp(status, uid))


def raw_sp(status: dict[str, Any], uid: str = "3f0c3a8e-uid") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "sp-rr-1", "uid": uid},
        "spec": {
            "remediationRequestRef": {"name": "rr-1"},
            "signal": {"name": "HighMemoryUsage", "severity": "critical"},
        },
        "status": status,
    }


def described(events: list[AuditEvent]) -> list[str]:
    """Each event as its type, and for the types an SP emits more than once, what tells them apart."""
    described = []
    for event in events:
        short = event.event_type.value.removeprefix("signalprocessing.")
        if event.event_type is EventType.PHASE_TRANSITION:
            short += f" {event.event_data['from_phase']}->{event.event_data['to_phase']}"
        elif event.event_type is EventType.ERROR_OCCURRED:
            short += f" {event.event_data['phase']}"
        described.append(short)
    return described


SUCCESS_TRAIL = [
    "phase.transition Pending->Enriching",
    "enrichment.completed",
    "phase.transition Enriching->Classifying",
    "phase.transition Classifying->Categorizing",
    "phase.transition Categorizing->Completed",
    "signal.processed",
    "classification.decision",
    "business.classified",
]


@pytest.mark.parametrize(
    ("before", "after", "added"),
    [
        pytest.param(NEW, PENDING, [], id="new-to-pending"),
        pytest.param(PENDING, ENRICHING, ["phase.transition Pending->Enriching"], id="pending-to-enriching"),
        pytest.param(
            ENRICHING,
            CLASSIFYING,
            ["enrichment.completed", "phase.transition Enriching->Classifying"],
            id="enriching-to-classifying",
        ),
        pytest.param(
            CLASSIFYING,
            CATEGORIZING,
            ["phase.transition Classifying->Categorizing"],
            id="classifying-to-categorizing",
        ),
        pytest.param(
            CATEGORIZING,
            COMPLETED,
            [
                "phase.transition Categorizing->Completed",
                "signal.processed",
                "classification.decision",
                "business.classified",
            ],
            id="categorizing-to-completed",
        ),
        pytest.param(
            NEW,
            failed_in(NEW, Phase.PENDING),
            ["error.occurred Pending", "phase.transition Pending->Failed"],
            id="failed-before-pending",
        ),
        pytest.param(
            PENDING,
            failed_in(PENDING, Phase.PENDING),
            ["error.occurred Pending", "phase.transition Pending->Failed"],
            id="failed-in-pending",
        ),
        pytest.param(
            ENRICHING,
            failed_in(ENRICHING, Phase.ENRICHING),
            ["error.occurred Enriching", "phase.transition Enriching->Failed"],
            id="failed-in-enriching",
        ),
        pytest.param(
            CLASSIFYING,
            failed_in(CLASSIFYING, Phase.CLASSIFYING),
            ["error.occurred Classifying", "phase.transition Classifying->Failed"],
            id="failed-in-classifying",
        ),
        pytest.param(
            CATEGORIZING,
            failed_in(CATEGORIZING, Phase.CATEGORIZING),
            ["error.occurred Categorizing", "phase.transition Categorizing->Failed"],
            id="failed-in-categorizing",
        ),
        pytest.param(
            ENRICHING,
            ENRICHING
            | {
                "failureInfo": {
                    "consecutiveFailures": 2,
                    "lastFailureTime": "2026-01-01T10:00:01Z",
                    "error": "timeout",
                }
            },
            [],
            id="transient-failure-recorded",
        ),
        pytest.param(COMPLETED, COMPLETED, [], id="terminal-status-read-again"),
        pytest.param(NEW, COMPLETED, SUCCESS_TRAIL, id="whole-trail-at-once"),
    ],
)
def test_a_status_write_adds_exactly_the_events_of_its_step(
    before: dict[str, Any], after: dict[str, Any], added: list[str]
) -> None:
    assert described(new_events(sp(before), sp(after))) == added


@pytest.mark.parametrize(
    ("status", "trail"),
    [
        pytest.param(NEW, [], id="new"),
        pytest.param(PENDING, [], id="pending"),
        pytest.param(CATEGORIZING, SUCCESS_TRAIL[:4], id="categorizing"),
        pytest.param(COMPLETED, SUCCESS_TRAIL, id="completed"),
        pytest.param(
            failed_in(PENDING, Phase.PENDING),
            ["error.occurred Pending", "phase.transition Pending->Failed"],
            id="failed-in-pending",
        ),
        pytest.param(
            failed_in(ENRICHING, Phase.ENRICHING),
            [
                "phase.transition Pending->Enriching",
                "error.occurred Enriching",
                "phase.transition Enriching->Failed",
            ],
            id="failed-in-enriching",
        ),
        pytest.param(
            failed_in(CLASSIFYING, Phase.CLASSIFYING),
            [*SUCCESS_TRAIL[:3], "error.occurred Classifying", "phase.transition Classifying->Failed"],
            id="failed-in-classifying",
        ),
        pytest.param(
            failed_in(CATEGORIZING, Phase.CATEGORIZING),
            [*SUCCESS_TRAIL[:4], "error.occurred Categorizing", "phase.transition Categorizing->Failed"],
            id="failed-in-categorizing",
        ),
    ],
)
def test_the_whole_trail_of_a_status(status: dict[str, Any], trail: list[str]) -> None:
    assert described(audit_trail(sp(status))) == trail


STEPS = [NEW, PENDING, ENRICHING, CLASSIFYING, CATEGORIZING, COMPLETED]


@pytest.mark.parametrize(
    "writes",
    [
        pytest.param(STEPS, id="completed"),
        pytest.param(STEPS[:4], id="stopped-in-classifying"),
        pytest.param([*STEPS[:4], failed_in(CLASSIFYING, Phase.CLASSIFYING)], id="failed-in-classifying"),
    ],
)
def test_a_restart_rebuilds_the_very_events_the_writes_emitted(writes: list[dict[str, Any]]) -> None:
    emitted = [
        event for before, after in itertools.pairwise(writes) for event in new_events(sp(before), sp(after))
    ]
    # After a restart the controller has only the SP as the API server returns it: JSON.
    reread = SignalProcessing.from_raw(json.loads(json.dumps(raw_sp(writes[-1]))))

    rebuilt = audit_trail(reread)

    assert [event.to_raw() for event in rebuilt] == [event.to_raw() for event in emitted]
    assert len({event.event_id for event in rebuilt}) == len(rebuilt)


def test_each_event_is_dated_by_the_status_field_its_step_wrote() -> None:
    trail = audit_trail(sp(COMPLETED))

    assert [event.event_timestamp for event in trail] == [
        STARTED,  # Pending->Enriching
        ENRICHED,  # enrichment.completed
        ENRICHED,  # Enriching->Classifying
        CLASSIFIED,  # Classifying->Categorizing
        FINISHED,  # Categorizing->Completed
        FINISHED,  # signal.processed
        FINISHED,  # classification.decision
        FINISHED,  # business.classified
    ]
    assert trail[1].duration_ms == 2000  # enriched - started


def test_another_sp_with_the_same_status_gets_other_ids() -> None:
    ids = {event.event_id for event in audit_trail(sp(COMPLETED))}
    other = {event.event_id for event in audit_trail(sp(COMPLETED, uid="9d2e71b4-other"))}

    assert ids.isdisjoint(other)


def test_the_decision_events_carry_the_classification_s_severity_and_policy_hash() -> None:
    status = COMPLETED | {
        "signalClassification": SIGNAL_CLASSIFICATION | {"severity": "high"},
    }
    events = {event.event_type: event.event_data for event in audit_trail(sp(status))}

    decision = events[EventType.CLASSIFICATION_DECISION]
    assert (decision["severity"], decision["external_severity"], decision["normalized_severity"]) == (
        "high",
        "critical",  # spec.signal.severity
        "high",
    )
    assert (decision["determination_source"], decision["policy_hash"]) == ("rego-policy", POLICY_HASH)
    assert events[EventType.BUSINESS_CLASSIFIED]["policy_hash"] == POLICY_HASH


def test_every_event_of_an_sp_from_a_member_cluster_carries_its_cluster_id() -> None:
    raw = raw_sp(COMPLETED)
    raw["spec"]["signal"]["clusterID"] = "prod-eu-1"

    from_member = {event.to_raw()["cluster_id"] for event in audit_trail(SignalProcessing.from_raw(raw))}
    from_hub = {event.to_raw()["cluster_id"] for event in audit_trail(sp(COMPLETED))}

    assert (from_member, from_hub) == ({"prod-eu-1"}, {None})
