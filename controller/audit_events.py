"""The audit events a SignalProcessing produces, built as values.

DataStorage keeps the audit trail of every SignalProcessing (BR-SP-090). This module decides what each
event says: its type, action, outcome, actor, resource, correlation and ``event_data`` keys. It only
builds values: no clock, no I/O, no Kubernetes. The caller passes the time (``at``) and small frozen
inputs filled from the SP it is working on; delivering the result is ``controller.audit``'s job.

Every event carries a deterministic ``event_id`` (see ``event_id_for``): building the same logical event
twice, for instance after a controller restart, yields the same id, and DataStorage stores an id only
once. At-least-once delivery plus idempotent storage is how the trail stays exactly-once.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias, TypedDict

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
EventOutcome: TypeAlias = Literal["success", "failure", "pending"]

EVENT_VERSION: Final = "1.0"
EVENT_CATEGORY: Final = "signalprocessing"
ACTOR_TYPE: Final = "service"
ACTOR_ID: Final = "signalprocessing-controller"
RESOURCE_TYPE: Final = "SignalProcessing"
# How the severity of a classification decision was determined: always by the policy's severity rule.
SEVERITY_SOURCE: Final = "rego-policy"

# DataStorage's AuditEventRequest limits (reference 2.3); an event outside them could never be stored.
_MAX_CORRELATION_ID: Final = 255
_MAX_EVENT_ACTION: Final = 50

# Fixed for all time: changing it would give every re-emitted event a new id, and DataStorage would
# then store events it already has a second time.
AUDIT_ID_NAMESPACE: Final = uuid.uuid5(
    uuid.NAMESPACE_URL, "https://kubernaut.ai/signalprocessing/audit-events"
)


class EventType(enum.StrEnum):
    """The ``event_type`` of each event the controller emits."""

    ENRICHMENT_COMPLETED = "signalprocessing.enrichment.completed"
    PHASE_TRANSITION = "signalprocessing.phase.transition"
    SIGNAL_PROCESSED = "signalprocessing.signal.processed"
    CLASSIFICATION_DECISION = "signalprocessing.classification.decision"
    BUSINESS_CLASSIFIED = "signalprocessing.business.classified"
    ERROR_OCCURRED = "signalprocessing.error.occurred"


class RawAuditEventRequest(TypedDict):
    """One element of the JSON array sent to ``POST /api/v1/audit/events/batch``.

    Nullable fields are sent as explicit ``null``, as the Go client does, so the wire format is the one
    DataStorage is tested against.
    """

    version: str
    event_id: str
    event_type: str
    event_timestamp: str
    event_category: str
    event_action: str
    event_outcome: str
    actor_type: str
    actor_id: str
    resource_type: str
    resource_id: str
    correlation_id: str
    parent_event_id: str | None
    namespace: str | None
    cluster_id: str | None
    severity: str | None
    duration_ms: int | None
    event_data: dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class AuditSubject:
    """The SignalProcessing an event is about, as read from its metadata and spec."""

    namespace: str
    name: str
    uid: str
    correlation_id: str  # spec.remediationRequestRef.name
    signal_name: str  # spec.signal.name
    severity: str  # spec.signal.severity
    cluster_id: str = ""  # spec.signal.clusterID: "" for the hub's own cluster

    def __post_init__(self) -> None:
        # Without a uid, the ids of two different SPs would collide and DataStorage would keep one.
        if not self.uid:
            raise ValueError(f"AuditSubject.uid must not be empty (SP {self.namespace}/{self.name})")
        if not 1 <= len(self.correlation_id) <= _MAX_CORRELATION_ID:
            raise ValueError(
                f"AuditSubject.correlation_id must be 1..{_MAX_CORRELATION_ID} characters,"
                f" got {self.correlation_id!r} (SP {self.namespace}/{self.name})"
            )


@dataclass(frozen=True, slots=True)
class EnrichmentSummary:
    """What the Enriching phase found, for ``enrichment.completed``."""

    duration_ms: int  # since the Enriching step began
    has_namespace: bool
    has_pod: bool
    has_deployment: bool
    owner_chain_length: int
    degraded_mode: bool


@dataclass(frozen=True, slots=True)
class Classification:
    """Classification results present in the status; ``None`` means that part is absent."""

    environment: str | None = None
    environment_source: str | None = None
    priority: str | None = None
    priority_source: str | None = None
    criticality: str | None = None
    sla_requirement: str | None = None
    signal_mode: str | None = None  # reactive or proactive (BR-SP-106)
    source_signal_name: str | None = None  # a proactive signal's name, whose base name the status records
    severity: str | None = None  # the policy's normalised severity (status.signalClassification.severity)
    policy_hash: str | None = None  # SHA-256 of the policy.rego that classified the signal


@dataclass(frozen=True, slots=True)
class BusinessSummary:
    """``status.businessClassification``; empty fields are left out of the event.

    ``serviceOwner`` is deliberately absent: the audit event has never carried it.
    """

    business_unit: str = ""
    criticality: str = ""
    sla_requirement: str = ""


@dataclass(frozen=True, slots=True)
class ProcessingSummary:
    """The state of a finished SP, for ``signal.processed``; ``None`` means absent from the status."""

    phase: str
    classification: Classification = field(default_factory=Classification)
    owner_chain_length: int | None = None  # None when there is no kubernetesContext
    degraded_mode: bool | None = None
    has_pdb: bool | None = None  # None when there are no detectedLabels
    has_hpa: bool | None = None
    error: str = ""  # status.failureInfo.error


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event, ready to be queued; ``to_raw`` gives its wire form."""

    event_id: uuid.UUID
    event_type: EventType
    event_action: str
    event_outcome: EventOutcome
    event_timestamp: datetime
    correlation_id: str
    namespace: str
    resource_id: str
    event_data: dict[str, JsonValue]
    duration_ms: int | None = None
    cluster_id: str = ""  # the fleet member the SP's signal came from; "" (sent as null) for the hub
    # With sharding, the replica that did the work and the SP's shard, sent in event_data.
    replica: str = ""
    shard: int | None = None

    def __post_init__(self) -> None:
        if self.event_timestamp.utcoffset() is None:
            raise ValueError(f"event_timestamp must be timezone-aware, got {self.event_timestamp!r}")
        if not 1 <= len(self.correlation_id) <= _MAX_CORRELATION_ID:
            raise ValueError(f"correlation_id must be 1..{_MAX_CORRELATION_ID} characters")
        if not 1 <= len(self.event_action) <= _MAX_EVENT_ACTION:
            raise ValueError(f"event_action must be 1..{_MAX_EVENT_ACTION} characters")

    def done_by(self, replica: str, shard: int) -> AuditEvent:
        """This event, saying which replica did the work, on which shard."""
        return replace(self, replica=replica, shard=shard)

    def to_raw(self) -> RawAuditEventRequest:
        data = (
            self.event_data
            if not self.replica
            else {**self.event_data, "replica": self.replica, "shard": self.shard}
        )
        return {
            "version": EVENT_VERSION,
            "event_id": str(self.event_id),
            "event_type": self.event_type.value,
            "event_timestamp": _rfc3339(self.event_timestamp),
            "event_category": EVENT_CATEGORY,
            "event_action": self.event_action,
            "event_outcome": self.event_outcome,
            "actor_type": ACTOR_TYPE,
            "actor_id": ACTOR_ID,
            "resource_type": RESOURCE_TYPE,
            "resource_id": self.resource_id,
            "correlation_id": self.correlation_id,
            "parent_event_id": None,
            "namespace": self.namespace or None,
            "cluster_id": self.cluster_id or None,
            "severity": None,
            "duration_ms": self.duration_ms,
            "event_data": data,
        }


def event_id_for(uid: str, event_type: EventType, discriminator: str = "") -> uuid.UUID:
    """The deterministic id of one logical event of one SP.

    ``uid`` is the SP's ``metadata.uid`` (so a deleted and re-created SP of the same name gets new ids);
    ``discriminator`` tells apart the events of one type that an SP can legitimately emit more than once
    (the ``from->to`` pair of a phase transition, the failing phase of an error).
    """
    return uuid.uuid5(AUDIT_ID_NAMESPACE, f"{uid}/{event_type.value}/{discriminator}")


def enrichment_completed(subject: AuditSubject, *, enrichment: EnrichmentSummary, at: datetime) -> AuditEvent:
    """``signalprocessing.enrichment.completed``, after the Enriching status write."""
    data: dict[str, JsonValue] = {
        "duration_ms": enrichment.duration_ms,
        "has_namespace": enrichment.has_namespace,
        "has_pod": enrichment.has_pod,
        "has_deployment": enrichment.has_deployment,
        "owner_chain_length": enrichment.owner_chain_length,
        "degraded_mode": enrichment.degraded_mode,
    }
    return _event(
        subject,
        EventType.ENRICHMENT_COMPLETED,
        action="enrichment",
        outcome="success",
        at=at,
        data=data,
        duration_ms=enrichment.duration_ms,
    )


def phase_transition(subject: AuditSubject, *, from_phase: str, to_phase: str, at: datetime) -> AuditEvent:
    """``signalprocessing.phase.transition``, after the status write that changed the phase.

    Raises ``ValueError`` when ``from_phase == to_phase``: rewriting a phase is not a transition (the
    original emitted such phantom events after a stale read).
    """
    if from_phase == to_phase:
        raise ValueError(f"a phase transition must change the phase, got {from_phase!r} -> {to_phase!r}")
    data: dict[str, JsonValue] = {
        "from_phase": from_phase,
        "to_phase": to_phase,
        "signal": subject.signal_name,
    }
    return _event(
        subject,
        EventType.PHASE_TRANSITION,
        action="phase_transition",
        outcome="success",
        at=at,
        data=data,
        discriminator=f"{from_phase}->{to_phase}",
    )


def signal_processed(subject: AuditSubject, *, summary: ProcessingSummary, at: datetime) -> AuditEvent:
    """``signalprocessing.signal.processed``, once the SP is terminal; outcome ``failure`` if it failed."""
    data: dict[str, JsonValue] = {
        "phase": summary.phase,
        "signal": subject.signal_name,
        "severity": subject.severity,
    }
    data.update(_classification_data(summary.classification))
    if summary.owner_chain_length is not None:
        data["has_owner_chain"] = summary.owner_chain_length > 0
        data["owner_chain_length"] = summary.owner_chain_length
    if summary.degraded_mode is not None:
        data["degraded_mode"] = summary.degraded_mode
    if summary.has_pdb is not None:
        data["has_pdb"] = summary.has_pdb
    if summary.has_hpa is not None:
        data["has_hpa"] = summary.has_hpa
    if summary.error:
        data["error"] = summary.error
    return _event(
        subject,
        EventType.SIGNAL_PROCESSED,
        action="processed",
        outcome="failure" if summary.phase == "Failed" else "success",
        at=at,
        data=data,
    )


def classification_decision(
    subject: AuditSubject, *, classification: Classification, at: datetime
) -> AuditEvent:
    """``signalprocessing.classification.decision``, at completion.

    ``severity`` and ``normalized_severity`` are the policy's answer, ``external_severity`` what the
    signal's source wrote (``spec.signal.severity``); ``policy_hash`` is the SHA-256 of the policy text
    that decided, so an audited decision can be traced to the exact policy.
    """
    data: dict[str, JsonValue] = {
        "signal": subject.signal_name,
        "severity": classification.severity or subject.severity,
        "external_severity": subject.severity,
        "determination_source": SEVERITY_SOURCE,
    }
    if classification.severity is not None:
        data["normalized_severity"] = classification.severity
    data.update(_classification_data(classification))
    if classification.policy_hash is not None:
        data["policy_hash"] = classification.policy_hash
    return _event(
        subject,
        EventType.CLASSIFICATION_DECISION,
        action="classification",
        outcome="success",
        at=at,
        data=data,
    )


def business_classified(
    subject: AuditSubject,
    *,
    business: BusinessSummary,
    policy_hash: str | None,
    at: datetime,
) -> AuditEvent:
    """``signalprocessing.business.classified``, at completion when a business classification exists;
    ``policy_hash`` is the classification's (``status.signalClassification.policyHash``)."""
    data: dict[str, JsonValue] = {"signal": subject.signal_name, "severity": subject.severity}
    if business.business_unit:
        data["business_unit"] = business.business_unit
    if business.criticality:
        data["criticality"] = business.criticality
    if business.sla_requirement:
        data["sla_requirement"] = business.sla_requirement
    if policy_hash is not None:
        data["policy_hash"] = policy_hash
    return _event(
        subject, EventType.BUSINESS_CLASSIFIED, action="classification", outcome="success", at=at, data=data
    )


def error_occurred(subject: AuditSubject, *, phase: str, error: str, at: datetime) -> AuditEvent:
    """``signalprocessing.error.occurred``, when a permanent error sends the SP to ``Failed``.

    ``phase`` is the phase that failed (``Enriching``, ...). An SP fails at most once, so the phase is
    enough to identify the event.
    """
    data: dict[str, JsonValue] = {"phase": phase, "error": error, "signal": subject.signal_name}
    return _event(
        subject,
        EventType.ERROR_OCCURRED,
        action="error",
        outcome="failure",
        at=at,
        data=data,
        discriminator=phase,
    )


def _event(
    subject: AuditSubject,
    event_type: EventType,
    *,
    action: str,
    outcome: EventOutcome,
    at: datetime,
    data: dict[str, JsonValue],
    discriminator: str = "",
    duration_ms: int | None = None,
) -> AuditEvent:
    return AuditEvent(
        event_id=event_id_for(subject.uid, event_type, discriminator),
        event_type=event_type,
        event_action=action,
        event_outcome=outcome,
        event_timestamp=at,
        correlation_id=subject.correlation_id,
        namespace=subject.namespace,
        resource_id=subject.name,
        event_data=data,
        duration_ms=duration_ms,
        cluster_id=subject.cluster_id,
    )


def _classification_data(classification: Classification) -> dict[str, JsonValue]:
    fields: dict[str, str | None] = {
        "environment": classification.environment,
        "environment_source": classification.environment_source,
        "priority": classification.priority,
        "priority_source": classification.priority_source,
        "criticality": classification.criticality,
        "sla_requirement": classification.sla_requirement,
        "signal_mode": classification.signal_mode,
        "source_signal_name": classification.source_signal_name,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
