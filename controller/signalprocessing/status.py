"""`status`: what the controller found and decided, written one phase step at a time.

`status_patch` is how a step's result reaches the API: the fields that changed, as a merge patch
(None deletes a field), so a step computes a whole `Status` and never a patch by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict, cast

from controller.rawjson import (
    int_or_zero,
    optional_int,
    section,
    str_or_empty,
)
from controller.signalprocessing.context import KubernetesContext, RawKubernetesContext
from controller.signalprocessing.times import go_duration, optional_time, parse_go_duration, timestamp
from controller.signalprocessing.vocabulary import ConditionType, Phase, SignalMode


class RawCondition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


class RawFailureInfo(TypedDict, total=False):
    error: str
    consecutiveFailures: int
    lastFailureTime: str


class RawRecoveryContext(TypedDict, total=False):
    previousRemediationId: str
    attemptCount: int
    lastFailureReason: str
    timeSinceFirstFailure: str


class RawEnvironmentClassification(TypedDict, total=False):
    environment: str
    source: str
    classifiedAt: str


class RawPriorityAssignment(TypedDict, total=False):
    priority: str
    source: str
    policyName: str
    assignedAt: str


class RawBusinessClassification(TypedDict, total=False):
    businessUnit: str
    serviceOwner: str
    criticality: str
    slaRequirement: str


class RawSignalClassification(TypedDict, total=False):
    signalMode: str
    signalName: str
    sourceSignalName: str
    severity: str
    policyHash: str
    clusterClassification: str


class RawStatus(TypedDict, total=False):
    phase: str
    observedGeneration: int
    failedPhase: str
    startTime: str
    completionTime: str
    failureInfo: RawFailureInfo
    kubernetesContext: RawKubernetesContext
    recoveryContext: RawRecoveryContext
    environmentClassification: RawEnvironmentClassification
    priorityAssignment: RawPriorityAssignment
    businessClassification: RawBusinessClassification
    signalClassification: RawSignalClassification
    conditions: list[RawCondition]


# A condition without a transition time (never written by this controller) sorts as oldest.
_EPOCH: Final = datetime.fromtimestamp(0, UTC)


# --- Status --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    last_transition_time: datetime
    observed_generation: int | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Condition:
        return cls(
            type=str_or_empty(raw.get("type")),
            status=str_or_empty(raw.get("status")),
            reason=str_or_empty(raw.get("reason")),
            message=str_or_empty(raw.get("message")),
            last_transition_time=optional_time(raw.get("lastTransitionTime"))
            or datetime.fromtimestamp(0, UTC),
            observed_generation=optional_int(raw.get("observedGeneration")),
        )

    def to_raw(self) -> RawCondition:
        raw = RawCondition(
            type=self.type,
            status=self.status,
            reason=self.reason,
            message=self.message,
            lastTransitionTime=timestamp(self.last_transition_time),
        )
        if self.observed_generation is not None:
            raw["observedGeneration"] = self.observed_generation
        return raw


@dataclass(frozen=True)
class FailureInfo:
    """`status.failureInfo`, absent until the first failure.

    `error` and `consecutive_failures` describe the failure in force: a transient one being retried
    (BR-SP-111), or the permanent one that sent the SP to Failed. The next successful step clears
    both; `last_failure_time` stays, as history.
    """

    error: str = ""
    consecutive_failures: int = 0  # transient failures since the last successful step
    last_failure_time: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> FailureInfo:
        return cls(
            error=str_or_empty(raw.get("error")),
            consecutive_failures=int_or_zero(raw.get("consecutiveFailures")),
            last_failure_time=optional_time(raw.get("lastFailureTime")),
        )

    def to_raw(self) -> RawFailureInfo:
        raw = RawFailureInfo()
        if self.error:
            raw["error"] = self.error
        if self.consecutive_failures:
            raw["consecutiveFailures"] = self.consecutive_failures
        if self.last_failure_time is not None:
            raw["lastFailureTime"] = timestamp(self.last_failure_time)
        return raw


@dataclass(frozen=True)
class RecoveryContext:
    """`status.recoveryContext`: what earlier remediation attempts of the parent RR left (BR-SP-003)."""

    previous_remediation_id: str
    attempt_count: int
    last_failure_reason: str = ""
    time_since_first_failure: timedelta | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> RecoveryContext:
        return cls(
            previous_remediation_id=str_or_empty(raw.get("previousRemediationId")),
            attempt_count=int_or_zero(raw.get("attemptCount")),
            last_failure_reason=str_or_empty(raw.get("lastFailureReason")),
            time_since_first_failure=parse_go_duration(str_or_empty(raw.get("timeSinceFirstFailure"))),
        )

    def to_raw(self) -> RawRecoveryContext:
        raw = RawRecoveryContext(
            previousRemediationId=self.previous_remediation_id, attemptCount=self.attempt_count
        )
        if self.last_failure_reason:
            raw["lastFailureReason"] = self.last_failure_reason
        if self.time_since_first_failure is not None:
            raw["timeSinceFirstFailure"] = go_duration(self.time_since_first_failure)
        return raw


@dataclass(frozen=True)
class EnvironmentClassification:
    """`status.environmentClassification`; `classified_at` is stamped by the step that writes it."""

    environment: str
    source: str
    classified_at: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> EnvironmentClassification:
        return cls(
            environment=str_or_empty(raw.get("environment")),
            source=str_or_empty(raw.get("source")),
            classified_at=optional_time(raw.get("classifiedAt")),
        )

    def to_raw(self) -> RawEnvironmentClassification:
        raw = RawEnvironmentClassification(environment=self.environment, source=self.source)
        if self.classified_at is not None:
            raw["classifiedAt"] = timestamp(self.classified_at)
        return raw


PRIORITY_SOURCE: Final = "rego-policy"


@dataclass(frozen=True)
class PriorityAssignment:
    """`status.priorityAssignment`; `assigned_at` is stamped by the step that writes it."""

    priority: str
    policy_name: str = ""
    source: str = PRIORITY_SOURCE
    assigned_at: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> PriorityAssignment:
        return cls(
            priority=str_or_empty(raw.get("priority")),
            policy_name=str_or_empty(raw.get("policyName")),
            source=str_or_empty(raw.get("source")),
            assigned_at=optional_time(raw.get("assignedAt")),
        )

    def to_raw(self) -> RawPriorityAssignment:
        raw = RawPriorityAssignment(priority=self.priority, source=self.source, policyName=self.policy_name)
        if self.assigned_at is not None:
            raw["assignedAt"] = timestamp(self.assigned_at)
        return raw


@dataclass(frozen=True)
class BusinessClassification:
    """`status.businessClassification`."""

    business_unit: str = ""
    service_owner: str = ""
    criticality: str = ""
    sla_requirement: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> BusinessClassification:
        return cls(
            business_unit=str_or_empty(raw.get("businessUnit")),
            service_owner=str_or_empty(raw.get("serviceOwner")),
            criticality=str_or_empty(raw.get("criticality")),
            sla_requirement=str_or_empty(raw.get("slaRequirement")),
        )

    def to_raw(self) -> RawBusinessClassification:
        fields = {
            "businessUnit": self.business_unit,
            "serviceOwner": self.service_owner,
            "criticality": self.criticality,
            "slaRequirement": self.sla_requirement,
        }
        return cast(RawBusinessClassification, {key: value for key, value in fields.items() if value})


@dataclass(frozen=True)
class SignalClassification:
    """`status.signalClassification`: the signal's mode and the name it is handled under (from the
    mappings file), its normalised severity and cluster classification (from the policy), and the hash
    of the policy text that classified it."""

    signal_mode: SignalMode
    signal_name: str  # the base name of a proactive signal; a reactive one's own name
    source_signal_name: str = ""  # the proactive signal's own name; empty for a reactive one
    severity: str = ""  # the policy's `severity`: critical, high, warning, info or unknown
    policy_hash: str = ""  # SHA-256 of the policy.rego that classified the signal
    cluster_classification: str = ""  # the policy's `cluster`; empty when it gave none

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> SignalClassification:
        mode = str_or_empty(raw.get("signalMode"))
        return cls(
            signal_mode=SignalMode(mode) if mode else SignalMode.REACTIVE,
            signal_name=str_or_empty(raw.get("signalName")),
            source_signal_name=str_or_empty(raw.get("sourceSignalName")),
            severity=str_or_empty(raw.get("severity")),
            policy_hash=str_or_empty(raw.get("policyHash")),
            cluster_classification=str_or_empty(raw.get("clusterClassification")),
        )

    def to_raw(self) -> RawSignalClassification:
        raw = RawSignalClassification(signalMode=self.signal_mode.value, signalName=self.signal_name)
        optional = {
            "sourceSignalName": self.source_signal_name,
            "severity": self.severity,
            "policyHash": self.policy_hash,
            "clusterClassification": self.cluster_classification,
        }
        raw.update(cast(RawSignalClassification, {key: value for key, value in optional.items() if value}))
        return raw


@dataclass(frozen=True)
class Status:
    """`status`: written by the controller only, one phase step at a time."""

    phase: Phase = Phase.NEW
    observed_generation: int | None = None
    failed_phase: Phase | None = None  # the phase that failed, when phase is Failed
    start_time: datetime | None = None
    completion_time: datetime | None = None
    failure_info: FailureInfo | None = None  # None until the first failure
    kubernetes_context: KubernetesContext | None = None
    recovery_context: RecoveryContext | None = None
    environment_classification: EnvironmentClassification | None = None
    priority_assignment: PriorityAssignment | None = None
    business_classification: BusinessClassification | None = None
    signal_classification: SignalClassification | None = None
    conditions: tuple[Condition, ...] = ()

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((condition for condition in self.conditions if condition.type == kind), None)

    @property
    def error(self) -> str:
        """The failure in force (`failureInfo.error`); empty when there is none."""
        return self.failure_info.error if self.failure_info is not None else ""

    @property
    def consecutive_failures(self) -> int:
        """Transient failures since the last successful step (`failureInfo.consecutiveFailures`)."""
        return self.failure_info.consecutive_failures if self.failure_info is not None else 0

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Status:
        failure = section(raw, "failureInfo")
        context = section(raw, "kubernetesContext")
        recovery = section(raw, "recoveryContext")
        environment = section(raw, "environmentClassification")
        priority = section(raw, "priorityAssignment")
        business = section(raw, "businessClassification")
        signal = section(raw, "signalClassification")
        failed_phase = str_or_empty(raw.get("failedPhase"))
        return cls(
            phase=Phase(str_or_empty(raw.get("phase"))),
            observed_generation=optional_int(raw.get("observedGeneration")),
            failed_phase=Phase(failed_phase) if failed_phase else None,
            start_time=optional_time(raw.get("startTime")),
            completion_time=optional_time(raw.get("completionTime")),
            failure_info=FailureInfo.from_raw(failure) if failure is not None else None,
            kubernetes_context=(
                KubernetesContext.from_raw(cast(RawKubernetesContext, context))
                if context is not None
                else None
            ),
            recovery_context=RecoveryContext.from_raw(recovery) if recovery is not None else None,
            environment_classification=(
                EnvironmentClassification.from_raw(environment) if environment is not None else None
            ),
            priority_assignment=PriorityAssignment.from_raw(priority) if priority is not None else None,
            business_classification=BusinessClassification.from_raw(business)
            if business is not None
            else None,
            signal_classification=SignalClassification.from_raw(signal) if signal is not None else None,
            conditions=tuple(
                Condition.from_raw(c) for c in raw.get("conditions") or [] if isinstance(c, Mapping)
            ),
        )

    def to_raw(self) -> RawStatus:
        """The CRD's shape; what says nothing (a zero, an empty text, an absent section) is left out."""
        raw = RawStatus()
        if self.phase is not Phase.NEW:
            raw["phase"] = self.phase.value
        if self.observed_generation is not None:
            raw["observedGeneration"] = self.observed_generation
        if self.failed_phase is not None:
            raw["failedPhase"] = self.failed_phase.value
        if self.start_time is not None:
            raw["startTime"] = timestamp(self.start_time)
        if self.completion_time is not None:
            raw["completionTime"] = timestamp(self.completion_time)
        if self.failure_info is not None:
            raw["failureInfo"] = self.failure_info.to_raw()
        if self.kubernetes_context is not None:
            raw["kubernetesContext"] = self.kubernetes_context.to_raw()
        if self.recovery_context is not None:
            raw["recoveryContext"] = self.recovery_context.to_raw()
        if self.environment_classification is not None:
            raw["environmentClassification"] = self.environment_classification.to_raw()
        if self.priority_assignment is not None:
            raw["priorityAssignment"] = self.priority_assignment.to_raw()
        if self.business_classification is not None:
            raw["businessClassification"] = self.business_classification.to_raw()
        if self.signal_classification is not None:
            raw["signalClassification"] = self.signal_classification.to_raw()
        if self.conditions:
            raw["conditions"] = [condition.to_raw() for condition in self.conditions]
        return raw


def status_patch(before: Status, after: Status) -> dict[str, Any]:
    """The merge patch (RFC 7386) that turns `before` into `after`: the fields that changed, None for
    removed ones, at every depth. The API server merges objects key by key, so a key left out of a
    nested object (`failureInfo.error`, cleared) would stay: it must be sent as None."""
    patch = _merge_patch(cast(dict[str, Any], before.to_raw()), cast(dict[str, Any], after.to_raw()))
    return cast(dict[str, Any], patch)


def _merge_patch(old: object, new: object) -> object:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new  # a value, a list or a new object replaces whatever was there
    patch = {key: _merge_patch(old.get(key), value) for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch
