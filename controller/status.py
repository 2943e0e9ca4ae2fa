"""The SignalProcessing status as a state machine: phases, conditions and the patch of each step.

Pure functions only: each returns the status fields one phase step writes.
The pipeline sends them as conditional patches; nothing here touches the API.
Timestamps are whole seconds in UTC, as Kubernetes stores them, so an audit
event rebuilt from the status after a restart carries the same timestamp.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final


class Phase(enum.StrEnum):
    NEW = ""
    PENDING = "Pending"
    ENRICHING = "Enriching"
    CLASSIFYING = "Classifying"
    CATEGORIZING = "Categorizing"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def order(self) -> int:
        return _ORDER[self]


_ORDER: Final = {phase: index for index, phase in enumerate(Phase)}
_ORDER[Phase.FAILED] = _ORDER[Phase.COMPLETED]


def is_terminal(phase: Phase) -> bool:
    return phase in (Phase.COMPLETED, Phase.FAILED)


def phase_of(status: Mapping[str, Any] | None) -> Phase:
    return Phase((status or {}).get("phase", ""))


class ConditionType(enum.StrEnum):
    ENRICHMENT = "EnrichmentComplete"
    CLASSIFICATION = "ClassificationComplete"
    CATEGORIZATION = "CategorizationComplete"
    PROCESSING = "ProcessingComplete"


# The condition that a failure in each phase marks False.
FAILING_CONDITION: Final = {
    Phase.PENDING: ConditionType.ENRICHMENT,
    Phase.ENRICHING: ConditionType.ENRICHMENT,
    Phase.CLASSIFYING: ConditionType.CLASSIFICATION,
    Phase.CATEGORIZING: ConditionType.CATEGORIZATION,
}


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def condition_time(status: Mapping[str, Any], kind: ConditionType) -> datetime | None:
    """When the condition of type `kind` last changed status; None while the status has no such condition."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind and condition.get("lastTransitionTime"):
            return parse_timestamp(condition["lastTransitionTime"])
    return None


def phase_entered_at(status: Mapping[str, Any], phase: Phase) -> datetime | None:
    """When the SP entered `phase`, as its status records it (whole seconds); None where it does not.

    Each step's write dates what it did, and that date is when the next phase began. The Pending
    step writes the phase alone, so Enriching is dated at `startTime` too, as the audit trail does.
    """
    match phase:
        case Phase.PENDING | Phase.ENRICHING:
            started = status.get("startTime")
            return parse_timestamp(started) if started else None
        case Phase.CLASSIFYING:
            return condition_time(status, ConditionType.ENRICHMENT)
        case Phase.CATEGORIZING:
            return condition_time(status, ConditionType.CLASSIFICATION)
        case _:  # New is the SP's creation, in its metadata; the terminal phases are never left
            return None


def seconds_in_phase(
    status: Mapping[str, Any], phase: Phase, *, left: datetime, entered: datetime | None = None
) -> float | None:
    """How long the SP spent in `phase`, which it left at `left`; None when its start is unknown.

    `entered` is when the controller's own write put the SP in `phase`, when it still knows (the
    same pass): exact. Otherwise the status's record is used, whole seconds cut down, so up to a
    second too long; such a phase was entered before a retry or a restart and lasted longer anyway.
    """
    since = entered or phase_entered_at(status, phase)
    return max(0.0, (left - since).total_seconds()) if since is not None else None


def with_condition(
    conditions: Sequence[Mapping[str, Any]],
    kind: ConditionType,
    *,
    succeeded: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[dict[str, Any]]:
    """Upserts one condition by type; its transition time moves only when its status changes."""
    status = "True" if succeeded else "False"
    updated: list[dict[str, Any]] = []
    replaced = False
    for condition in conditions:
        if condition.get("type") != kind:
            updated.append(dict(condition))
            continue
        replaced = True
        moved = condition.get("status") != status
        updated.append(
            {
                "type": kind.value,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": timestamp(now) if moved else condition.get("lastTransitionTime"),
            }
        )
    if not replaced:
        updated.append(
            {
                "type": kind.value,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": timestamp(now),
            }
        )
    return updated


def failed_patch(
    status: Mapping[str, Any],
    failing_phase: Phase,
    *,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> dict[str, Any]:
    """The terminal patch of a permanent failure: phase Failed, the phase's condition False."""
    conditions = with_condition(
        status.get("conditions") or [],
        FAILING_CONDITION[failing_phase],
        succeeded=False,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    conditions = with_condition(
        conditions,
        ConditionType.PROCESSING,
        succeeded=False,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    return {
        "phase": Phase.FAILED.value,
        "failedPhase": failing_phase.value,
        "error": message,
        "completionTime": timestamp(now),
        "conditions": conditions,
    }
