"""The audit trail a SignalProcessing's status implies, derived from the status alone.

Each event's timestamp and content come from the status fields written by the
step it records, so the trail built right after a write and the trail built
again after a controller restart are identical: same event ids, same
timestamps. That is what lets the controller re-send a trail after a restart
without DataStorage storing anything twice.
"""

from __future__ import annotations

from datetime import datetime

from controller.audit_events import (
    AuditEvent,
    AuditSubject,
    BusinessSummary,
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
from controller.signalprocessing import ConditionType, Phase, SignalProcessing, Status
from controller.transitions import condition_time


def subject_of(sp: SignalProcessing) -> AuditSubject:
    signal = sp.spec.signal
    return AuditSubject(
        namespace=sp.metadata.namespace,
        name=sp.metadata.name,
        uid=sp.metadata.uid,
        correlation_id=sp.spec.remediation_request_ref.name,
        signal_name=signal.name,
        severity=signal.severity,
        cluster_id=signal.cluster_id,
    )


def _classification(status: Status) -> Classification:
    environment = status.environment_classification
    priority = status.priority_assignment
    business = status.business_classification
    signal = status.signal_classification
    return Classification(
        environment=environment.environment if environment else None,
        environment_source=environment.source if environment else None,
        priority=priority.priority if priority else None,
        priority_source=priority.source if priority else None,
        criticality=business.criticality or None if business else None,
        sla_requirement=business.sla_requirement or None if business else None,
        signal_mode=signal.signal_mode.value if signal else None,
        source_signal_name=signal.source_signal_name or None if signal else None,
        severity=signal.severity or None if signal else None,
        policy_hash=signal.policy_hash or None if signal else None,
    )


def _summary(status: Status) -> ProcessingSummary:
    context = status.kubernetes_context
    detected = context.detected_labels if context is not None else None
    return ProcessingSummary(
        phase=status.phase.value,
        classification=_classification(status),
        owner_chain_length=len(context.owner_chain) if context is not None else None,
        degraded_mode=context.degraded_mode if context is not None else None,
        has_pdb=detected.has_pdb if detected is not None else None,
        has_hpa=detected.has_hpa if detected is not None else None,
        error=status.error,
    )


def _enrichment_summary(status: Status, started: datetime, enriched: datetime) -> EnrichmentSummary:
    context = status.kubernetes_context
    return EnrichmentSummary(
        duration_ms=max(0, int((enriched - started).total_seconds() * 1000)),
        has_namespace=context is not None and context.namespace is not None,
        has_pod=context is not None and context.pod is not None,
        has_deployment=context is not None and context.deployment is not None,
        owner_chain_length=len(context.owner_chain) if context is not None else 0,
        degraded_mode=context is not None and context.degraded_mode,
    )


def audit_trail(sp: SignalProcessing) -> list[AuditEvent]:
    """Every audit event that the steps recorded in `sp.status` stand for, in order."""
    status = sp.status
    phase = status.phase
    if phase in (Phase.NEW, Phase.PENDING) or status.start_time is None:
        return []
    subject = subject_of(sp)
    reached = (status.failed_phase or Phase.NEW) if phase is Phase.FAILED else phase
    started = status.start_time
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
    environment = status.environment_classification
    classified_at = environment.classified_at if environment is not None else None
    if reached.order >= Phase.CATEGORIZING.order and classified_at is not None:
        events.append(
            phase_transition(subject, from_phase="Classifying", to_phase="Categorizing", at=classified_at)
        )
    if phase.is_terminal and status.completion_time is not None:
        finished = status.completion_time
        if phase is Phase.COMPLETED:
            business = status.business_classification
            classification = _classification(status)
            events += [
                phase_transition(subject, from_phase="Categorizing", to_phase="Completed", at=finished),
                signal_processed(subject, summary=_summary(status), at=finished),
                classification_decision(subject, classification=classification, at=finished),
                business_classified(
                    subject,
                    business=BusinessSummary(
                        business_unit=business.business_unit if business else "",
                        criticality=business.criticality if business else "",
                        sla_requirement=business.sla_requirement if business else "",
                    ),
                    policy_hash=classification.policy_hash,
                    at=finished,
                ),
            ]
        else:
            events += [
                error_occurred(subject, phase=reached.value, error=status.error, at=finished),
                phase_transition(subject, from_phase=reached.value, to_phase="Failed", at=finished),
            ]
    return events


def new_events(before: SignalProcessing, after: SignalProcessing) -> list[AuditEvent]:
    """The events a write added to the trail: what `after` implies that `before` did not."""
    known = {event.event_id for event in audit_trail(before)}
    return [event for event in audit_trail(after) if event.event_id not in known]
