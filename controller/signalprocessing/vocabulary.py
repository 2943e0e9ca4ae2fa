"""The words of the SignalProcessing API: its kind, phases, condition types and failure reasons."""

from __future__ import annotations

import enum
from typing import Final

API_VERSION: Final = "kubernaut.ai/v1alpha1"
KIND: Final = "SignalProcessing"


# --- Vocabulary ----------------------------------------------------------------------------------


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
        """The position along the pipeline; Failed ranks with Completed (both are the end)."""
        return _ORDER[self]

    @property
    def is_terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED)


_ORDER: Final = {phase: index for index, phase in enumerate(Phase)}
_ORDER[Phase.FAILED] = _ORDER[Phase.COMPLETED]


class SignalMode(enum.StrEnum):
    """Whether a signal reports an incident (reactive) or predicts one (proactive, BR-SP-106)."""

    REACTIVE = "reactive"
    PROACTIVE = "proactive"


class ConditionType(enum.StrEnum):
    ENRICHMENT = "EnrichmentComplete"
    CLASSIFICATION = "ClassificationComplete"
    CATEGORIZATION = "CategorizationComplete"
    PROCESSING = "ProcessingComplete"
    READY = "Ready"  # the one condition a client needs: True once Completed, False on any failure


class ConditionReason(enum.StrEnum):
    """Why a condition is True (a step succeeded), or that Ready is False; failures use `FailureReason`."""

    ENRICHMENT_SUCCEEDED = "EnrichmentSucceeded"
    DEGRADED_MODE = "DegradedMode"  # enriched without the target, which was not found
    CLASSIFICATION_SUCCEEDED = "ClassificationSucceeded"
    CATEGORIZATION_SUCCEEDED = "CategorizationSucceeded"
    PROCESSING_SUCCEEDED = "ProcessingSucceeded"
    READY = "Ready"
    NOT_READY = "NotReady"


class FailureReason(enum.StrEnum):
    """Why an SP went to Failed: the reason of its False conditions."""

    TIMED_OUT = "TimedOut"
    ENRICHMENT_FAILED = "EnrichmentFailed"
    REGO_EVALUATION_ERROR = "RegoEvaluationError"

    @property
    def event_reason(self) -> str:
        """The reason of the Warning Event that reports the failure to `kubectl describe`."""
        return _EVENT_REASONS[self]


_EVENT_REASONS: Final = {
    FailureReason.TIMED_OUT: "ProcessingTimedOut",
    FailureReason.ENRICHMENT_FAILED: "EnrichmentFailed",
    FailureReason.REGO_EVALUATION_ERROR: "PolicyEvaluationFailed",
}
