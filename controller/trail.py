"""The audit trail a SignalProcessing's status implies, derived from the status alone.

Each event's timestamp and content come from the status fields written by the
step it records, so the trail built right after a write and the trail built
again after a controller restart are identical: same event ids, same
timestamps. That is what lets the controller re-send a trail after a restart
without DataStorage storing anything twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.audit_events import (
    AuditEvent,
    AuditSubject,
    BusinessClassification,
    Classification,
    EnrichmentSummary,
    ProcessingSummary,
    business_classified,
    classification_decision,
    enrichment_completed,
    error_occurred,
    phase_transition,
    signal_processed,
)
from controller.status import ConditionType, Phase, condition_time, parse_timestamp, phase_of


def subject_of(sp: Mapping[str, Any]) -> AuditSubject:
    metadata, signal = sp["metadata"], sp["spec"]["signal"]
    return AuditSubject(
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata["uid"],
        correlation_id=sp["spec"]["remediationRequestRef"]["name"],
        signal_name=signal["name"],
        severity=signal["severity"],
    )


def _classification(status: Mapping[str, Any]) -> Classification:
    environment = status.get("environmentClassification") or {}
    priority = status.get("priorityAssignment") or {}
    business = status.get("businessClassification") or {}
    return Classification(
        environment=environment.get("environment"),
        environment_source=environment.get("source"),
        priority=priority.get("priority"),
        priority_source=priority.get("source"),
        criticality=business.get("criticality"),
        sla_requirement=business.get("slaRequirement"),
    )


def _summary(status: Mapping[str, Any], phase: Phase) -> ProcessingSummary:
    context = status.get("kubernetesContext")
    detected = (context or {}).get("detectedLabels")
    return ProcessingSummary(
        phase=phase.value,
        classification=_classification(status),
        owner_chain_length=len(context.get("ownerChain") or []) if context is not None else None,
        degraded_mode=bool(context.get("degradedMode")) if context is not None else None,
        has_pdb=bool(detected.get("hasPDB")) if detected is not None else None,
        has_hpa=bool(detected.get("hasHPA")) if detected is not None else None,
        error=status.get("error") or "",
    )


def _enrichment_summary(
    status: Mapping[str, Any], started: datetime, enriched: datetime
) -> EnrichmentSummary:
    context = status.get("kubernetesContext") or {}
    return EnrichmentSummary(
        duration_ms=max(0, int((enriched - started).total_seconds() * 1000)),
        has_namespace="namespace" in context,
        has_pod="pod" in context,
        has_deployment="deployment" in context,
        owner_chain_length=len(context.get("ownerChain") or []),
        degraded_mode=bool(context.get("degradedMode")),
    )


def audit_trail(sp: Mapping[str, Any]) -> list[AuditEvent]:
    """Every audit event that the steps recorded in `sp.status` stand for, in order."""
    status = sp.get("status") or {}
    phase = phase_of(status)
    if phase in (Phase.NEW, Phase.PENDING) or not status.get("startTime"):
        return []
    subject = subject_of(sp)
    hashes = dict(status.get("policyHashes") or {})
    reached = Phase(status.get("failedPhase", "")) if phase is Phase.FAILED else phase
    started = parse_timestamp(status["startTime"])
    events = []
    if reached.order >= Phase.ENRICHING.order:
        events.append(phase_transition(subject, from_phase="Pending", to_phase="Enriching", at=started))
    enriched = condition_time(status, ConditionType.ENRICHMENT)
    if reached.order >= Phase.CLASSIFYING.order and enriched is not None:
        events.append(
            enrichment_completed(
                subject, enrichment=_enrichment_summary(status, started, enriched), at=enriched
            )
        )
        events.append(phase_transition(subject, from_phase="Enriching", to_phase="Classifying", at=enriched))
    classified_at = (status.get("environmentClassification") or {}).get("classifiedAt")
    if reached.order >= Phase.CATEGORIZING.order and classified_at:
        events.append(
            phase_transition(
                subject, from_phase="Classifying", to_phase="Categorizing", at=parse_timestamp(classified_at)
            )
        )
    if phase in (Phase.COMPLETED, Phase.FAILED) and status.get("completionTime"):
        finished = parse_timestamp(status["completionTime"])
        if phase is Phase.COMPLETED:
            business = status.get("businessClassification") or {}
            events += [
                phase_transition(subject, from_phase="Categorizing", to_phase="Completed", at=finished),
                signal_processed(subject, summary=_summary(status, phase), at=finished),
                classification_decision(
                    subject, classification=_classification(status), policy_hashes=hashes, at=finished
                ),
                business_classified(
                    subject,
                    business=BusinessClassification(
                        business_unit=business.get("businessUnit", ""),
                        criticality=business.get("criticality", ""),
                        sla_requirement=business.get("slaRequirement", ""),
                    ),
                    policy_hashes=hashes,
                    at=finished,
                ),
            ]
        else:
            events += [
                error_occurred(subject, phase=reached.value, error=status.get("error") or "", at=finished),
                phase_transition(subject, from_phase=reached.value, to_phase="Failed", at=finished),
            ]
    return events


def new_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[AuditEvent]:
    """The events a write added to the trail: what `after` implies that `before` did not."""
    known = {event.event_id for event in audit_trail(before)}
    return [event for event in audit_trail(after) if event.event_id not in known]
