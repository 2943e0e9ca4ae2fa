"""The event builders: the fields every event shares, each type's event_data, and the event_id scheme."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from controller.audit_events import (
    AuditEvent,
    AuditSubject,
    BusinessSummary,
    Classification,
    EnrichmentSummary,
    EventType,
    ProcessingSummary,
    business_classified,
    classification_decision,
    enrichment_completed,
    error_occurred,
    event_id_for,
    phase_transition,
    signal_processed,
)

AT = datetime(2025, 12, 24, 10, 30, 0, 123456, tzinfo=UTC)
SUBJECT = AuditSubject(
    namespace="payments",
    name="sp-rr-01",
    uid="0b7c5f36-2f9e-4a57-9a8e-6c3d9d0f1a21",
    correlation_id="rr-01",
    signal_name="HighMemoryUsage",
    severity="critical",
)
POLICY_HASH = "a" * 64
FULL = Classification(
    environment="Production",
    environment_source="namespace-labels",
    priority="P0",
    priority_source="rego-policy",
    criticality="high",
    sla_requirement="gold",
    severity="critical",
    policy_hash=POLICY_HASH,
)
ENRICHMENT = EnrichmentSummary(
    duration_ms=42,
    has_namespace=True,
    has_pod=True,
    has_deployment=False,
    owner_chain_length=2,
    degraded_mode=False,
)

Builder = Callable[[AuditSubject, datetime], AuditEvent]

# One builder call per event type, with everything optional present.
BUILDERS: dict[str, Builder] = {
    "enrichment.completed": lambda s, at: enrichment_completed(s, enrichment=ENRICHMENT, at=at),
    "phase.transition": lambda s, at: phase_transition(
        s, from_phase="Enriching", to_phase="Classifying", at=at
    ),
    "signal.processed": lambda s, at: signal_processed(
        s,
        summary=ProcessingSummary(
            phase="Completed",
            classification=FULL,
            owner_chain_length=2,
            degraded_mode=False,
            has_pdb=True,
            has_hpa=False,
            error="last transient error",
        ),
        at=at,
    ),
    "classification.decision": lambda s, at: classification_decision(s, classification=FULL, at=at),
    "business.classified": lambda s, at: business_classified(
        s,
        business=BusinessSummary(business_unit="payments", criticality="high", sla_requirement="gold"),
        policy_hash=POLICY_HASH,
        at=at,
    ),
    "error.occurred": lambda s, at: error_occurred(
        s, phase="Enriching", error='namespace "gone" not found', at=at
    ),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_event_carries_the_common_fields(name: str) -> None:
    raw = BUILDERS[name](SUBJECT, AT).to_raw()

    assert raw["event_type"] == f"signalprocessing.{name}"
    assert raw["version"] == "1.0"
    assert raw["event_category"] == "signalprocessing"
    assert raw["actor_type"] == "service"
    assert raw["actor_id"] == "signalprocessing-controller"
    assert raw["resource_type"] == "SignalProcessing"
    assert raw["resource_id"] == "sp-rr-01"
    assert raw["correlation_id"] == "rr-01"
    assert raw["namespace"] == "payments"
    assert raw["event_timestamp"] == "2025-12-24T10:30:00.123456Z"
    assert raw["parent_event_id"] is None
    assert raw["cluster_id"] is None
    assert raw["severity"] is None
    assert uuid.UUID(raw["event_id"]).version == 5
    assert json.loads(json.dumps(raw)) == raw


@pytest.mark.parametrize(
    ("name", "action", "outcome", "keys"),
    [
        pytest.param(
            "enrichment.completed",
            "enrichment",
            "success",
            {
                "duration_ms",
                "has_namespace",
                "has_pod",
                "has_deployment",
                "owner_chain_length",
                "degraded_mode",
            },
            id="enrichment.completed",
        ),
        pytest.param(
            "phase.transition",
            "phase_transition",
            "success",
            {"from_phase", "to_phase", "signal"},
            id="phase.transition",
        ),
        pytest.param(
            "signal.processed",
            "processed",
            "success",
            {
                "phase",
                "signal",
                "severity",
                "environment",
                "environment_source",
                "priority",
                "priority_source",
                "criticality",
                "sla_requirement",
                "has_owner_chain",
                "owner_chain_length",
                "degraded_mode",
                "has_pdb",
                "has_hpa",
                "error",
            },
            id="signal.processed",
        ),
        pytest.param(
            "classification.decision",
            "classification",
            "success",
            {
                "signal",
                "severity",
                "external_severity",
                "normalized_severity",
                "determination_source",
                "environment",
                "environment_source",
                "priority",
                "priority_source",
                "criticality",
                "sla_requirement",
                "policy_hash",
            },
            id="classification.decision",
        ),
        pytest.param(
            "business.classified",
            "classification",
            "success",
            {"signal", "severity", "business_unit", "criticality", "sla_requirement", "policy_hash"},
            id="business.classified",
        ),
        pytest.param("error.occurred", "error", "failure", {"phase", "error", "signal"}, id="error.occurred"),
    ],
)
def test_each_event_type_has_its_action_outcome_and_data_keys(
    name: str, action: str, outcome: str, keys: set[str]
) -> None:
    raw = BUILDERS[name](SUBJECT, AT).to_raw()

    assert raw["event_action"] == action
    assert raw["event_outcome"] == outcome
    assert set(raw["event_data"]) == keys


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_event_of_a_member_clusters_sp_carries_its_cluster_id(name: str) -> None:
    subject = AuditSubject(
        namespace="payments",
        name="sp-rr-01",
        uid="0b7c5f36-2f9e-4a57-9a8e-6c3d9d0f1a21",
        correlation_id="rr-01",
        signal_name="HighMemoryUsage",
        severity="critical",
        cluster_id="prod-eu-1",
    )

    assert BUILDERS[name](subject, AT).to_raw()["cluster_id"] == "prod-eu-1"


def test_only_enrichment_sets_the_top_level_duration() -> None:
    for name, build in BUILDERS.items():
        expected = 42 if name == "enrichment.completed" else None
        assert build(SUBJECT, AT).to_raw()["duration_ms"] == expected, name


def test_enrichment_data_values() -> None:
    data = enrichment_completed(SUBJECT, enrichment=ENRICHMENT, at=AT).event_data

    assert data == {
        "duration_ms": 42,
        "has_namespace": True,
        "has_pod": True,
        "has_deployment": False,
        "owner_chain_length": 2,
        "degraded_mode": False,
    }


def test_phase_transition_data_values() -> None:
    data = phase_transition(SUBJECT, from_phase="Categorizing", to_phase="Completed", at=AT).event_data

    assert data == {"from_phase": "Categorizing", "to_phase": "Completed", "signal": "HighMemoryUsage"}


def test_a_phase_rewritten_to_itself_is_not_a_transition() -> None:
    with pytest.raises(ValueError, match="must change the phase"):
        phase_transition(SUBJECT, from_phase="Enriching", to_phase="Enriching", at=AT)


def test_signal_processed_leaves_out_what_the_status_does_not_have() -> None:
    event = signal_processed(SUBJECT, summary=ProcessingSummary(phase="Completed"), at=AT)

    assert event.event_data == {"phase": "Completed", "signal": "HighMemoryUsage", "severity": "critical"}
    assert event.event_outcome == "success"


def test_signal_processed_derives_has_owner_chain() -> None:
    summary = ProcessingSummary(phase="Completed", owner_chain_length=0, degraded_mode=True)

    data = signal_processed(SUBJECT, summary=summary, at=AT).event_data

    assert data["has_owner_chain"] is False
    assert data["owner_chain_length"] == 0
    assert data["degraded_mode"] is True


def test_signal_processed_of_a_failed_sp_is_a_failure() -> None:
    event = signal_processed(SUBJECT, summary=ProcessingSummary(phase="Failed"), at=AT)

    assert event.event_outcome == "failure"


def test_classification_decision_carries_both_severities_and_the_policy_hash() -> None:
    subject = AuditSubject(
        namespace="payments",
        name="sp-rr-01",
        uid="0b7c5f36-2f9e-4a57-9a8e-6c3d9d0f1a21",
        correlation_id="rr-01",
        signal_name="HighMemoryUsage",
        severity="Sev1",
    )
    classified = Classification(
        environment="Staging",
        environment_source="namespace-labels",
        severity="critical",
        policy_hash=POLICY_HASH,
    )

    data = classification_decision(subject, classification=classified, at=AT).event_data

    assert data == {
        "signal": "HighMemoryUsage",
        "severity": "critical",
        "external_severity": "Sev1",
        "normalized_severity": "critical",
        "determination_source": "rego-policy",
        "environment": "Staging",
        "environment_source": "namespace-labels",
        "policy_hash": POLICY_HASH,
    }


def test_business_classified_leaves_out_empty_fields() -> None:
    business = BusinessSummary(business_unit="payments")

    data = business_classified(SUBJECT, business=business, policy_hash=None, at=AT).event_data

    assert data == {"signal": "HighMemoryUsage", "severity": "critical", "business_unit": "payments"}


def test_error_occurred_data_values() -> None:
    event = error_occurred(SUBJECT, phase="Enriching", error='namespace "gone" not found', at=AT)

    assert event.event_data == {
        "phase": "Enriching",
        "error": 'namespace "gone" not found',
        "signal": "HighMemoryUsage",
    }


def test_timestamps_are_sent_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    at = datetime(2025, 12, 24, 11, 30, 0, tzinfo=paris)

    raw = phase_transition(SUBJECT, from_phase="Pending", to_phase="Enriching", at=at).to_raw()

    assert raw["event_timestamp"] == "2025-12-24T10:30:00.000000Z"


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        phase_transition(SUBJECT, from_phase="Pending", to_phase="Enriching", at=datetime(2025, 12, 24))


@pytest.mark.parametrize(
    ("uid", "correlation_id", "message"),
    [
        pytest.param("", "rr-01", "uid", id="no-uid"),
        pytest.param("u", "", "correlation_id", id="no-correlation-id"),
        pytest.param("u", "r" * 256, "correlation_id", id="correlation-id-too-long"),
    ],
)
def test_a_subject_that_could_not_be_audited_is_refused(uid: str, correlation_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AuditSubject(
            namespace="ns",
            name="sp",
            uid=uid,
            correlation_id=correlation_id,
            signal_name="s",
            severity="info",
        )


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_same_logical_event_gets_the_same_id_at_another_time(name: str) -> None:
    first = BUILDERS[name](SUBJECT, AT)
    again = BUILDERS[name](SUBJECT, AT + timedelta(hours=3))

    assert first.event_id == again.event_id


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_another_sp_gets_another_id(name: str) -> None:
    other = AuditSubject(
        namespace=SUBJECT.namespace,
        name=SUBJECT.name,  # same name, re-created: only the uid differs
        uid="9d1e2f3a-0000-4000-8000-000000000000",
        correlation_id=SUBJECT.correlation_id,
        signal_name=SUBJECT.signal_name,
        severity=SUBJECT.severity,
    )

    assert BUILDERS[name](SUBJECT, AT).event_id != BUILDERS[name](other, AT).event_id


def test_every_event_of_one_sp_has_its_own_id() -> None:
    # BUILDERS already holds Enriching->Classifying and an error in Enriching.
    transitions = [
        ("Pending", "Enriching"),
        ("Classifying", "Categorizing"),
        ("Categorizing", "Completed"),
        ("Enriching", "Failed"),
        ("Classifying", "Failed"),
    ]
    events = [build(SUBJECT, AT) for build in BUILDERS.values()]
    events += [phase_transition(SUBJECT, from_phase=f, to_phase=t, at=AT) for f, t in transitions]
    events += [error_occurred(SUBJECT, phase=p, error="x", at=AT) for p in ("Classifying", "Categorizing")]

    assert len({event.event_id for event in events}) == len(events)


def test_the_id_scheme_is_pinned() -> None:
    # Changing the scheme would make re-emitted events look new to DataStorage after an upgrade.
    event_id = event_id_for(SUBJECT.uid, EventType.PHASE_TRANSITION, "Pending->Enriching")

    assert event_id == uuid.UUID("87a30316-83ee-5b4d-9a79-f633e80b7f46")
    assert phase_transition(SUBJECT, from_phase="Pending", to_phase="Enriching", at=AT).event_id == event_id
