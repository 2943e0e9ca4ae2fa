"""Status transitions of a SignalProcessing: conditions, failure, and when each phase began.

Pure functions on the typed `Status` only; each returns the status one phase step writes. The
pipeline sends the difference as a conditional patch; nothing here touches the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

from controller.signalprocessing import (
    Condition,
    ConditionReason,
    ConditionType,
    FailureInfo,
    FailureReason,
    Phase,
    Status,
)

# The condition that a failure in each phase marks False.
FAILING_CONDITION: Final = {
    Phase.PENDING: ConditionType.ENRICHMENT,
    Phase.ENRICHING: ConditionType.ENRICHMENT,
    Phase.CLASSIFYING: ConditionType.CLASSIFICATION,
    Phase.CATEGORIZING: ConditionType.CATEGORIZATION,
}


def condition_time(status: Status, kind: ConditionType) -> datetime | None:
    """When the condition of type `kind` last changed status; None while the status has no such condition."""
    condition = status.condition(kind)
    return condition.last_transition_time if condition is not None else None


def phase_entered_at(status: Status, phase: Phase) -> datetime | None:
    """When the SP entered `phase`, as its status records it (whole seconds); None where it does not.

    Each step's write dates what it did, and that date is when the next phase began. The Pending
    step writes the phase alone, so Enriching is dated at `startTime` too, as the audit trail does.
    """
    match phase:
        case Phase.PENDING | Phase.ENRICHING:
            return status.start_time
        case Phase.CLASSIFYING:
            return condition_time(status, ConditionType.ENRICHMENT)
        case Phase.CATEGORIZING:
            return condition_time(status, ConditionType.CLASSIFICATION)
        case _:  # New is the SP's creation, in its metadata; the terminal phases are never left
            return None


def seconds_in_phase(
    status: Status, phase: Phase, *, left: datetime, entered: datetime | None = None
) -> float | None:
    """How long the SP spent in `phase`, which it left at `left`; None when its start is unknown.

    `entered` is when the controller's own write put the SP in `phase`, when it still knows (the
    same pass): exact. Otherwise the status's record is used, whole seconds cut down, so up to a
    second too long; such a phase was entered before a retry or a restart and lasted longer anyway.
    """
    since = entered or phase_entered_at(status, phase)
    return max(0.0, (left - since).total_seconds()) if since is not None else None


def with_condition(
    conditions: Sequence[Condition],
    kind: ConditionType,
    *,
    succeeded: bool,
    reason: ConditionReason | FailureReason,
    message: str,
    now: datetime,
    generation: int,
) -> tuple[Condition, ...]:
    """Upserts one condition by type; its transition time moves only when its status changes."""
    status = "True" if succeeded else "False"
    updated = Condition(
        type=kind.value,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=now,
    )
    result: list[Condition] = []
    for condition in conditions:
        if condition.type != kind:
            result.append(condition)
        elif condition.status == status:
            result.append(replace(updated, last_transition_time=condition.last_transition_time))
        else:
            result.append(updated)
    if all(condition.type != kind for condition in conditions):
        result.append(updated)
    return tuple(result)


def failed_transiently(status: Status, error: str, *, now: datetime) -> Status:
    """One more transient failure (BR-SP-111): counted, dated, its error kept (at most 1024 characters)."""
    return replace(
        status,
        failure_info=FailureInfo(
            error=error[:1024], consecutive_failures=status.consecutive_failures + 1, last_failure_time=now
        ),
    )


def succeeded(status: Status) -> Status:
    """A successful step clears the failure in force (BR-SP-111); `lastFailureTime` stays as history."""
    info = status.failure_info
    if info is None or (not info.error and not info.consecutive_failures):
        return status
    history = info.last_failure_time
    return replace(status, failure_info=FailureInfo(last_failure_time=history) if history else None)


def failed(
    status: Status,
    failing_phase: Phase,
    *,
    reason: FailureReason,
    message: str,
    now: datetime,
    generation: int,
) -> Status:
    """The terminal status of a permanent failure: phase Failed, the phase's condition, Processing and
    Ready False."""
    conditions = with_condition(
        status.conditions,
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
    conditions = with_condition(
        conditions,
        ConditionType.READY,
        succeeded=False,
        reason=ConditionReason.NOT_READY,
        message=message,
        now=now,
        generation=generation,
    )
    return replace(
        status,
        phase=Phase.FAILED,
        failed_phase=failing_phase,
        failure_info=replace(status.failure_info or FailureInfo(), error=message, last_failure_time=now),
        completion_time=now,
        start_time=status.start_time or now,
        conditions=conditions,
    )
