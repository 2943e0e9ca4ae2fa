"""The SignalProcessing resource as one typed value: metadata, spec and status.

Everything in the controller reads a SignalProcessing through this model and never through string
keys: the handler turns the watched object into a `SignalProcessing` once (`from_raw`), the
pipeline's steps return a new `Status`, and the write sends the top-level status fields that
changed (`status_patch`). `to_raw` gives the CRD's camelCase back, field for field, so a status
read back after a restart is the same value the controller wrote (`crds/signalprocessing.yaml` is
held against this model by a test, both ways).

Reading is lenient the way `controller.rawjson` is: the API server validated the object against
the CRD, so an absent field means its zero value, never an error. Times in the status are
`datetime`s in UTC, written as whole seconds, as Kubernetes stores them; times in the spec are
kept as the strings the creator gave, because the controller only carries them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict, cast

from controller.kubernetes_context import KubernetesContext, RawKubernetesContext
from controller.rawjson import int_or_zero, str_or_empty, string_map

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


class ConditionType(enum.StrEnum):
    ENRICHMENT = "EnrichmentComplete"
    CLASSIFICATION = "ClassificationComplete"
    CATEGORIZATION = "CategorizationComplete"
    PROCESSING = "ProcessingComplete"


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


# --- Times ---------------------------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, whole seconds: what Kubernetes stores, so a re-read gives the same time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 time; one without a zone is taken as UTC. Raises ValueError for anything else."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def optional_time(value: object) -> datetime | None:
    """An RFC 3339 time from untrusted JSON; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


_GO_DURATION: Final = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def go_duration(delta: timedelta) -> str:
    """Whole seconds in Go's `Duration.String()` form: "0s", "42s", "5m0s", "26h3m4s"; negatives are 0s."""
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def parse_go_duration(text: str) -> timedelta | None:
    """The inverse of `go_duration` (fractional seconds accepted); None for anything else."""
    match = _GO_DURATION.match(text)
    if match is None or not text:
        return None
    hours, minutes, seconds = match.groups()
    return timedelta(hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0))


# --- Raw shapes ----------------------------------------------------------------------------------


class RawTargetResource(TypedDict, total=False):
    kind: str
    name: str
    namespace: str


class RawObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    namespace: str
    uid: str


class RawSignal(TypedDict, total=False):
    fingerprint: str
    name: str
    severity: str
    type: str
    source: str
    targetType: str
    targetResource: RawTargetResource
    labels: dict[str, str]
    annotations: dict[str, str]
    firingTime: str
    receivedTime: str
    providerData: str


class RawEnrichmentConfig(TypedDict, total=False):
    enableClusterState: bool
    enableMetrics: bool
    enableHistorical: bool
    timeout: str


class RawSpec(TypedDict, total=False):
    remediationRequestRef: RawObjectReference
    signal: RawSignal
    enrichmentConfig: RawEnrichmentConfig


class RawCondition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


class RawRecoveryContext(TypedDict, total=False):
    previousRemediationId: str
    attemptCount: int
    lastFailureReason: str
    timeSinceFirstFailure: str


class RawEnvironmentClassification(TypedDict, total=False):
    environment: str
    source: str
    classifiedAt: str
    policyHash: str


class RawPriorityAssignment(TypedDict, total=False):
    priority: str
    source: str
    policyName: str
    assignedAt: str
    policyHash: str


class RawBusinessClassification(TypedDict, total=False):
    businessUnit: str
    serviceOwner: str
    criticality: str
    slaRequirement: str
    policyHash: str


class RawStatus(TypedDict, total=False):
    phase: str
    observedGeneration: int
    failedPhase: str
    startTime: str
    completionTime: str
    error: str
    consecutiveFailures: int
    lastFailureTime: str
    policyHashes: dict[str, str]
    kubernetesContext: RawKubernetesContext
    recoveryContext: RawRecoveryContext
    environmentClassification: RawEnvironmentClassification
    priorityAssignment: RawPriorityAssignment
    businessClassification: RawBusinessClassification
    conditions: list[RawCondition]


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else None


def _optional_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# A condition without a transition time (never written by this controller) sorts as oldest.
_EPOCH: Final = datetime.fromtimestamp(0, UTC)


# --- Spec ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetResource:
    """The object a signal is about (`spec.signal.targetResource`). Kinds are case-sensitive."""

    kind: str
    name: str
    namespace: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> TargetResource:
        return cls(
            kind=str_or_empty(raw.get("kind")),
            name=str_or_empty(raw.get("name")),
            namespace=str_or_empty(raw.get("namespace")),
        )

    def to_raw(self) -> RawTargetResource:
        return RawTargetResource(kind=self.kind, name=self.name, namespace=self.namespace)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class RemediationRequestRef:
    """`spec.remediationRequestRef`: the parent RemediationRequest; its name is the audit correlation id."""

    name: str
    namespace: str = ""  # empty: the RR is in the SignalProcessing's own namespace
    api_version: str = ""
    kind: str = ""
    uid: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> RemediationRequestRef:
        return cls(
            name=str_or_empty(raw.get("name")),
            namespace=str_or_empty(raw.get("namespace")),
            api_version=str_or_empty(raw.get("apiVersion")),
            kind=str_or_empty(raw.get("kind")),
            uid=str_or_empty(raw.get("uid")),
        )

    def to_raw(self) -> RawObjectReference:
        raw = RawObjectReference(name=self.name)
        for key, value in (
            ("namespace", self.namespace),
            ("apiVersion", self.api_version),
            ("kind", self.kind),
            ("uid", self.uid),
        ):
            if value:
                raw[key] = value  # type: ignore[literal-required]
        return raw

    def namespace_or(self, sp_namespace: str) -> str:
        return self.namespace or sp_namespace


@dataclass(frozen=True)
class Signal:
    """`spec.signal`. The first four fields are what the policies see; the rest is carried along."""

    severity: str
    source: str = ""
    type: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    fingerprint: str = ""
    target_type: str = ""
    target_resource: TargetResource = field(default_factory=lambda: TargetResource("", ""))
    annotations: Mapping[str, str] = field(default_factory=dict)
    firing_time: str = ""
    received_time: str = ""
    provider_data: str = ""  # base64, as the API carries `format: byte`

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Signal:
        return cls(
            severity=str_or_empty(raw.get("severity")),
            source=str_or_empty(raw.get("source")),
            type=str_or_empty(raw.get("type")),
            labels=string_map(raw.get("labels")),
            name=str_or_empty(raw.get("name")),
            fingerprint=str_or_empty(raw.get("fingerprint")),
            target_type=str_or_empty(raw.get("targetType")),
            target_resource=TargetResource.from_raw(_section(raw, "targetResource") or {}),
            annotations=string_map(raw.get("annotations")),
            firing_time=str_or_empty(raw.get("firingTime")),
            received_time=str_or_empty(raw.get("receivedTime")),
            provider_data=str_or_empty(raw.get("providerData")),
        )

    def to_raw(self) -> RawSignal:
        raw = RawSignal(
            fingerprint=self.fingerprint,
            name=self.name,
            severity=self.severity,
            type=self.type,
            targetType=self.target_type,
            targetResource=self.target_resource.to_raw(),
            receivedTime=self.received_time,
        )
        optional: dict[str, object] = {
            "source": self.source,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "firingTime": self.firing_time,
            "providerData": self.provider_data,
        }
        raw.update(cast(RawSignal, {key: value for key, value in optional.items() if value}))
        return raw


@dataclass(frozen=True)
class EnrichmentConfig:
    """`spec.enrichmentConfig`; None where the creator did not say."""

    enable_cluster_state: bool | None = None
    enable_metrics: bool | None = None
    enable_historical: bool | None = None
    timeout: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> EnrichmentConfig:
        return cls(
            enable_cluster_state=_optional_bool(raw.get("enableClusterState")),
            enable_metrics=_optional_bool(raw.get("enableMetrics")),
            enable_historical=_optional_bool(raw.get("enableHistorical")),
            timeout=str_or_empty(raw.get("timeout")),
        )

    def to_raw(self) -> RawEnrichmentConfig:
        fields: dict[str, object] = {
            "enableClusterState": self.enable_cluster_state,
            "enableMetrics": self.enable_metrics,
            "enableHistorical": self.enable_historical,
            "timeout": self.timeout or None,
        }
        return cast(RawEnrichmentConfig, {key: value for key, value in fields.items() if value is not None})


@dataclass(frozen=True)
class Spec:
    remediation_request_ref: RemediationRequestRef
    signal: Signal
    enrichment_config: EnrichmentConfig | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Spec:
        config = _section(raw, "enrichmentConfig")
        return cls(
            remediation_request_ref=RemediationRequestRef.from_raw(
                _section(raw, "remediationRequestRef") or {}
            ),
            signal=Signal.from_raw(_section(raw, "signal") or {}),
            enrichment_config=EnrichmentConfig.from_raw(config) if config is not None else None,
        )

    def to_raw(self) -> RawSpec:
        raw = RawSpec(
            remediationRequestRef=self.remediation_request_ref.to_raw(), signal=self.signal.to_raw()
        )
        if self.enrichment_config is not None:
            raw["enrichmentConfig"] = self.enrichment_config.to_raw()
        return raw


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
            observed_generation=int_or_zero(raw["observedGeneration"])
            if "observedGeneration" in raw
            else None,
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
    policy_hash: str = ""
    classified_at: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> EnvironmentClassification:
        return cls(
            environment=str_or_empty(raw.get("environment")),
            source=str_or_empty(raw.get("source")),
            policy_hash=str_or_empty(raw.get("policyHash")),
            classified_at=optional_time(raw.get("classifiedAt")),
        )

    def to_raw(self) -> RawEnvironmentClassification:
        raw = RawEnvironmentClassification(environment=self.environment, source=self.source)
        if self.classified_at is not None:
            raw["classifiedAt"] = timestamp(self.classified_at)
        if self.policy_hash:
            raw["policyHash"] = self.policy_hash
        return raw


PRIORITY_SOURCE: Final = "rego-policy"


@dataclass(frozen=True)
class PriorityAssignment:
    """`status.priorityAssignment`; `assigned_at` is stamped by the step that writes it."""

    priority: str
    policy_name: str = ""
    policy_hash: str = ""
    source: str = PRIORITY_SOURCE
    assigned_at: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> PriorityAssignment:
        return cls(
            priority=str_or_empty(raw.get("priority")),
            policy_name=str_or_empty(raw.get("policyName")),
            policy_hash=str_or_empty(raw.get("policyHash")),
            source=str_or_empty(raw.get("source")),
            assigned_at=optional_time(raw.get("assignedAt")),
        )

    def to_raw(self) -> RawPriorityAssignment:
        raw = RawPriorityAssignment(priority=self.priority, source=self.source, policyName=self.policy_name)
        if self.assigned_at is not None:
            raw["assignedAt"] = timestamp(self.assigned_at)
        if self.policy_hash:
            raw["policyHash"] = self.policy_hash
        return raw


@dataclass(frozen=True)
class BusinessClassification:
    """`status.businessClassification`."""

    business_unit: str = ""
    service_owner: str = ""
    criticality: str = ""
    sla_requirement: str = ""
    policy_hash: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> BusinessClassification:
        return cls(
            business_unit=str_or_empty(raw.get("businessUnit")),
            service_owner=str_or_empty(raw.get("serviceOwner")),
            criticality=str_or_empty(raw.get("criticality")),
            sla_requirement=str_or_empty(raw.get("slaRequirement")),
            policy_hash=str_or_empty(raw.get("policyHash")),
        )

    def to_raw(self) -> RawBusinessClassification:
        fields = {
            "businessUnit": self.business_unit,
            "serviceOwner": self.service_owner,
            "criticality": self.criticality,
            "slaRequirement": self.sla_requirement,
            "policyHash": self.policy_hash,
        }
        return cast(RawBusinessClassification, {key: value for key, value in fields.items() if value})


@dataclass(frozen=True)
class Status:
    """`status`: written by the controller only, one phase step at a time."""

    phase: Phase = Phase.NEW
    observed_generation: int | None = None
    failed_phase: Phase | None = None  # the phase that failed, when phase is Failed
    start_time: datetime | None = None
    completion_time: datetime | None = None
    error: str = ""
    consecutive_failures: int = 0  # transient failures since the last successful step
    last_failure_time: datetime | None = None
    policy_hashes: Mapping[str, str] = field(default_factory=dict)
    kubernetes_context: KubernetesContext | None = None
    recovery_context: RecoveryContext | None = None
    environment_classification: EnvironmentClassification | None = None
    priority_assignment: PriorityAssignment | None = None
    business_classification: BusinessClassification | None = None
    conditions: tuple[Condition, ...] = ()

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((condition for condition in self.conditions if condition.type == kind), None)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Status:
        context = _section(raw, "kubernetesContext")
        recovery = _section(raw, "recoveryContext")
        environment = _section(raw, "environmentClassification")
        priority = _section(raw, "priorityAssignment")
        business = _section(raw, "businessClassification")
        failed_phase = str_or_empty(raw.get("failedPhase"))
        return cls(
            phase=Phase(str_or_empty(raw.get("phase"))),
            observed_generation=int_or_zero(raw["observedGeneration"])
            if "observedGeneration" in raw
            else None,
            failed_phase=Phase(failed_phase) if failed_phase else None,
            start_time=optional_time(raw.get("startTime")),
            completion_time=optional_time(raw.get("completionTime")),
            error=str_or_empty(raw.get("error")),
            consecutive_failures=int_or_zero(raw.get("consecutiveFailures")),
            last_failure_time=optional_time(raw.get("lastFailureTime")),
            policy_hashes=string_map(raw.get("policyHashes")),
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
        if self.error:
            raw["error"] = self.error
        if self.consecutive_failures:
            raw["consecutiveFailures"] = self.consecutive_failures
        if self.last_failure_time is not None:
            raw["lastFailureTime"] = timestamp(self.last_failure_time)
        if self.policy_hashes:
            raw["policyHashes"] = dict(self.policy_hashes)
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
        if self.conditions:
            raw["conditions"] = [condition.to_raw() for condition in self.conditions]
        return raw


def status_patch(before: Status, after: Status) -> dict[str, Any]:
    """The merge patch that turns `before` into `after`: changed top-level fields, None for removed ones."""
    old, new = cast(dict[str, Any], before.to_raw()), cast(dict[str, Any], after.to_raw())
    patch = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch


# --- The resource --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectMeta:
    """The metadata the controller uses: identity, concurrency, generation, age."""

    name: str
    namespace: str
    uid: str = ""
    resource_version: str = ""
    generation: int = 1
    creation_timestamp: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> ObjectMeta:
        generation = int_or_zero(raw.get("generation"))
        return cls(
            name=str_or_empty(raw.get("name")),
            namespace=str_or_empty(raw.get("namespace")),
            uid=str_or_empty(raw.get("uid")),
            resource_version=str_or_empty(raw.get("resourceVersion")),
            generation=generation or 1,
            creation_timestamp=optional_time(raw.get("creationTimestamp")),
        )

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "generation": self.generation}
        if self.uid:
            raw["uid"] = self.uid
        if self.resource_version:
            raw["resourceVersion"] = self.resource_version
        if self.creation_timestamp is not None:
            raw["creationTimestamp"] = timestamp(self.creation_timestamp)
        return raw


@dataclass(frozen=True)
class SignalProcessing:
    metadata: ObjectMeta
    spec: Spec
    status: Status = field(default_factory=Status)

    @property
    def key(self) -> str:
        """`namespace/name`, for logs."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @property
    def phase(self) -> Phase:
        return self.status.phase

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> SignalProcessing:
        return cls(
            metadata=ObjectMeta.from_raw(_section(raw, "metadata") or {}),
            spec=Spec.from_raw(_section(raw, "spec") or {}),
            status=Status.from_raw(_section(raw, "status") or {}),
        )

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": self.metadata.to_raw(),
            "spec": self.spec.to_raw(),
        }
        if status := self.status.to_raw():
            raw["status"] = status
        return raw
