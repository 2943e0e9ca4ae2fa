"""Takes one SignalProcessing from wherever it is to Completed or Failed, in one pass.

Each phase step computes its results, then writes them with a conditional
status patch (resourceVersion), and only after the write is accepted records
what it did: audit events, metrics, Kubernetes Events. No step waits for a
requeue, so an SP costs its reads plus one write per phase. A write that
loses a race re-reads the object and carries on from what it finds, so no
phase is ever written twice. Errors are sorted at this edge:

- transient (API timeouts, 429/5xx, policy engine unreachable): the failure is
  recorded in the status and `RetryLater` says when to try again;
- permanent (namespace missing, policy error, bad policy output) and the
  deadline: the SP goes to Failed with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar, cast

from controller import kube
from controller.audit import AuditClient
from controller.classify import (
    DeploymentFacts,
    KubernetesFacts,
    NamespaceFacts,
    PodFacts,
    SignalFacts,
    assign_priority,
    classify_business,
    classify_environment,
    extract_custom_labels,
)
from controller.detect import read_detected_labels
from controller.enrich import (
    EnrichmentCaches,
    KubernetesContext,
    NamespaceMissing,
    RawKubernetesContext,
    TargetResource,
    read_kubernetes_context,
)
from controller.events import EventRecorder
from controller.metrics import ControllerMetrics
from controller.policies import ActivePolicies, Policy
from controller.policy_engine import PolicyEngineUnavailable, PolicyError
from controller.recovery import RemediationRequestRef, read_recovery_context
from controller.status import (
    ConditionType,
    Phase,
    failed_patch,
    is_terminal,
    parse_timestamp,
    phase_of,
    seconds_in_phase,
    timestamp,
    with_condition,
)
from controller.trail import new_events

SIGNALPROCESSINGS: Final = kube.Resource("kubernaut.ai", "v1alpha1", "signalprocessings")
_CONFLICT_RETRIES: Final = 5

logger = logging.getLogger(__name__)

Patch = dict[str, Any]
T = TypeVar("T")


class RetryLater(Exception):
    """A transient failure was recorded; process the SP again after `delay` seconds."""

    def __init__(self, delay: float, cause: str) -> None:
        super().__init__(f"retrying in {delay:.1f}s: {cause}")
        self.delay = delay


class PermanentFailure(Exception):
    """The SP cannot succeed; it goes to Failed with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# Past this many doublings every delay is the cap anyway; a larger exponent would overflow a float.
_MAX_DOUBLINGS: Final = 64


@dataclass(frozen=True)
class Backoff:
    """The shared backoff of transient errors: base * 2^(n-1), capped, ±10 % jitter.

    The jitter spreads each delay evenly around its nominal value, so SPs that failed together
    do not all retry together, at the cap too, and the cap is a hard ceiling: the first retry
    comes 0.9 to 1.1 times `base` after the failure, and no retry ever waits longer than `cap`.
    """

    base: float = 30.0
    cap: float = 300.0
    jitter: float = 0.1

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        nominal = min(self.cap, self.base * 2.0 ** min(max(0, failures - 1), _MAX_DOUBLINGS))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return min(self.cap, max(0.0, nominal * (1 + spread)))


@dataclass
class Pipeline:
    api: kube.ClusterReader
    caches: EnrichmentCaches
    policies: ActivePolicies
    audit: AuditClient
    events: EventRecorder
    metrics: ControllerMetrics
    deadline: timedelta
    backoff: Backoff
    clock: Callable[[], datetime]

    async def advance(self, sp: Mapping[str, Any]) -> Mapping[str, Any]:
        """Runs every remaining step; returns the SP as last written. Raises `RetryLater`."""
        current: Mapping[str, Any] = sp
        # When this pass's own write put the SP in its current phase; None when it found it there.
        entered: datetime | None = None
        while not is_terminal(phase := phase_of(current.get("status"))):
            now = self.clock()
            step = _STEPS[phase]
            try:
                if self._is_past_deadline(current, now):
                    raise PermanentFailure(
                        "TimedOut", f"not completed within {self.deadline.total_seconds():.0f}s"
                    )
                patch = await step(self, current, now)
            except PermanentFailure as failure:
                current, entered = await self._fail(current, phase, failure, now, entered)
                continue
            except (kube.TransientApiError, PolicyEngineUnavailable) as error:
                self.metrics.processing_total.labels(phase=phase.value.lower(), result="failure").inc()
                delay = await self._record_transient(current, phase, str(error), now)
                raise RetryLater(delay, str(error)) from error
            current, entered = await self._write(current, phase, patch, now, entered)
        return current

    def _is_past_deadline(self, sp: Mapping[str, Any], now: datetime) -> bool:
        started = (sp.get("status") or {}).get("startTime") or sp["metadata"].get("creationTimestamp")
        return bool(started) and now - parse_timestamp(started) > self.deadline

    # --- writing -------------------------------------------------------------------------------

    async def _write(
        self, sp: Mapping[str, Any], phase: Phase, patch: Patch, now: datetime, entered: datetime | None
    ) -> tuple[Mapping[str, Any], datetime | None]:
        """Writes a step's patch; returns the SP as it now is and when this write moved it into its
        new phase (None when another writer had moved it on). `entered`: when `phase` began, if known."""
        written = await self._patch_conditionally(sp, phase, patch)
        if written is None:  # someone else moved it on; carry on from what is there now
            return await self._reread(sp), None
        accepted = self.clock()
        self._record(sp, written, phase, now, entered=entered, accepted=accepted)
        return written, accepted

    async def _patch_conditionally(
        self, sp: Mapping[str, Any], phase: Phase, patch: Patch
    ) -> Mapping[str, Any] | None:
        """Writes `patch` if the SP is still in `phase`; None when another writer moved it on."""
        current = sp
        for _ in range(_CONFLICT_RETRIES):
            metadata = current["metadata"]
            body = {"metadata": {"resourceVersion": metadata["resourceVersion"]}, "status": patch}
            try:
                return await self.api.patch_status(
                    SIGNALPROCESSINGS, metadata["name"], namespace=metadata["namespace"], patch=body
                )
            except kube.Conflict:
                current = await self._reread(current)
                if phase_of(current.get("status")) is not phase:
                    return None
        raise kube.TransientApiError(f"status of {sp['metadata']['name']} kept changing under the controller")

    async def _reread(self, sp: Mapping[str, Any]) -> Mapping[str, Any]:
        metadata = sp["metadata"]
        fresh = await self.api.get(SIGNALPROCESSINGS, metadata["name"], namespace=metadata["namespace"])
        if fresh is None:
            raise kube.TransientApiError(f"{metadata['namespace']}/{metadata['name']} was deleted")
        return fresh

    def _record(
        self,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        phase: Phase,
        now: datetime,
        *,
        entered: datetime | None,
        accepted: datetime,
    ) -> None:
        for event in new_events(before, after):
            self.audit.emit(event)
        reached = phase_of(after.get("status"))
        if reached is not Phase.FAILED:  # a failed step was already counted as a failure by _fail
            self.metrics.processing_total.labels(phase=phase.value.lower() or "new", result="success").inc()
        if reached is not Phase.PENDING:
            self.events.record(
                after,
                kind="Warning" if reached is Phase.FAILED else "Normal",
                reason="PhaseTransition",
                message=f"{phase.value or 'New'} -> {reached.value}",
                now=now,
            )
        spent = seconds_in_phase(before.get("status") or {}, phase, left=accepted, entered=entered)
        if spent is not None:  # New has no duration of its own: it is the wait for the first write
            self.metrics.processing_duration.labels(phase=phase.value.lower()).observe(spent)
        if is_terminal(reached):  # the total, start to end, of Completed and Failed SPs alike, as always
            started = parse_timestamp(after["status"]["startTime"])
            self.metrics.processing_duration.labels(phase="completed").observe(
                (accepted - started).total_seconds()
            )
        if reached is Phase.COMPLETED:
            self.events.record(
                after,
                kind="Normal",
                reason="SignalProcessed",
                message=after["status"]["conditions"][-1]["message"],
                now=now,
            )

    async def _fail(
        self,
        sp: Mapping[str, Any],
        phase: Phase,
        failure: PermanentFailure,
        now: datetime,
        entered: datetime | None,
    ) -> tuple[Mapping[str, Any], datetime | None]:
        status = sp.get("status") or {}
        failing = phase if phase is not Phase.NEW else Phase.PENDING
        patch = failed_patch(
            status,
            failing,
            reason=failure.reason,
            message=str(failure),
            now=now,
            generation=sp["metadata"].get("generation", 1),
        )
        patch.setdefault("startTime", status.get("startTime") or timestamp(now))
        logger.warning(
            "%s/%s failed in %s: %s: %s",
            sp["metadata"]["namespace"],
            sp["metadata"]["name"],
            failing.value,
            failure.reason,
            failure,
        )
        self.metrics.processing_total.labels(phase=failing.value.lower(), result="failure").inc()
        event_reason = {"TimedOut": "ProcessingTimedOut", "EnrichmentFailed": "EnrichmentFailed"}.get(
            failure.reason, "PolicyEvaluationFailed"
        )
        self.events.record(sp, kind="Warning", reason=event_reason, message=str(failure), now=now)
        return await self._write(sp, phase, patch, now, entered)

    async def _record_transient(
        self, sp: Mapping[str, Any], phase: Phase, error: str, now: datetime
    ) -> float:
        """Records the failure (BR-SP-111) and returns how long to wait before the next attempt."""
        status = sp.get("status") or {}
        failures = int(status.get("consecutiveFailures") or 0) + 1
        patch = {"consecutiveFailures": failures, "lastFailureTime": timestamp(now), "error": error[:1024]}
        delay = self.backoff.delay(failures)
        started = status.get("startTime")
        if started:  # never sleep past the deadline: the next attempt must be able to time out
            remaining = (parse_timestamp(started) + self.deadline - now).total_seconds()
            delay = max(0.0, min(delay, remaining + 1))
        try:
            await self._patch_conditionally(sp, phase, patch)
        except kube.ApiError as write_error:
            logger.warning("could not record a transient failure: %s", write_error)
        return delay

    # --- the steps -----------------------------------------------------------------------------

    async def _start(self, sp: Mapping[str, Any], now: datetime) -> Patch:
        return {
            "phase": Phase.PENDING.value,
            "startTime": timestamp(now),
            "observedGeneration": sp["metadata"].get("generation", 1),
        }

    async def _begin_enriching(self, sp: Mapping[str, Any], now: datetime) -> Patch:
        return {"phase": Phase.ENRICHING.value}

    async def _enrich(self, sp: Mapping[str, Any], now: datetime) -> Patch:
        spec, status = sp["spec"], sp.get("status") or {}
        target = TargetResource.from_raw(spec["signal"]["targetResource"])
        began = self.clock()
        # The reads that do not depend on each other go out together: each one is a round trip.
        context_read, recovery_read = await asyncio.gather(
            read_kubernetes_context(self.api, target, self.caches),
            read_recovery_context(
                self.api,
                RemediationRequestRef.from_raw(spec["remediationRequestRef"]),
                sp_namespace=sp["metadata"]["namespace"],
                now=now,
            ),
            return_exceptions=True,
        )
        if isinstance(context_read, NamespaceMissing):
            self.metrics.enrichment_total.labels(result="failure").inc()
            self.metrics.enrichment_errors.labels(error_type="not_found").inc()
            raise PermanentFailure(
                "EnrichmentFailed", f"target namespace {context_read.namespace!r} does not exist"
            ) from context_read
        if isinstance(context_read, BaseException):
            self._count_read_error(context_read)
            raise context_read
        if isinstance(recovery_read, BaseException):
            self._count_read_error(recovery_read)
            raise recovery_read
        context, recovery = context_read, recovery_read
        detected, custom = await asyncio.gather(
            read_detected_labels(self.api, target, context, self.caches),
            self._evaluate(
                extract_custom_labels(self.policies, kubernetes_facts(context, target), _signal(spec))
            ),
        )
        context = replace(context, detected_labels=detected, custom_labels=custom.labels)
        self.metrics.enrichment_duration.labels(resource_kind=target.kind.lower()).observe(
            (self.clock() - began).total_seconds()
        )
        self.metrics.enrichment_total.labels(result="degraded" if context.degraded_mode else "success").inc()
        where = f"{target.kind} {target.namespace}/{target.name}"
        if context.degraded_mode:
            reason, message = (
                "DegradedMode",
                f"Enrichment completed in degraded mode: {where} (target not found)",
            )
            self.events.record(sp, kind="Warning", reason="EnrichmentDegraded", message=message, now=now)
        else:
            reason, message = "EnrichmentSucceeded", f"K8s context enriched: {where}"
        patch: Patch = {
            "phase": Phase.CLASSIFYING.value,
            "kubernetesContext": context.to_raw(),
            "conditions": with_condition(
                status.get("conditions") or [],
                ConditionType.ENRICHMENT,
                succeeded=True,
                reason=reason,
                message=message,
                now=now,
                generation=sp["metadata"].get("generation", 1),
            ),
            "policyHashes": {Policy.CUSTOMLABELS.value: custom.policy_hash},
            **_cleared_failures(status),
        }
        if recovery is not None:
            patch["recoveryContext"] = recovery.to_raw()
        return patch

    def _count_read_error(self, error: BaseException) -> None:
        if isinstance(error, kube.TransientApiError):
            self.metrics.enrichment_errors.labels(error_type="api_error").inc()

    async def _classify(self, sp: Mapping[str, Any], now: datetime) -> Patch:
        spec, status = sp["spec"], sp.get("status") or {}
        facts, signal = _recorded_facts(sp), _signal(spec)
        environment = await self._evaluate(classify_environment(self.policies, facts.namespace, signal))
        priority = await self._evaluate(
            assign_priority(self.policies, signal, environment.environment, facts.namespace, facts.deployment)
        )
        message = (
            f"Classified: environment={environment.environment} (source={environment.source}), "
            f"priority={priority.priority} (source={priority.source})"
        )
        return {
            "phase": Phase.CATEGORIZING.value,
            "environmentClassification": {
                "environment": environment.environment,
                "source": environment.source,
                "classifiedAt": timestamp(now),
                "policyHash": environment.policy_hash,
            },
            "priorityAssignment": {
                "priority": priority.priority,
                "source": priority.source,
                "policyName": priority.policy_name,
                "assignedAt": timestamp(now),
                "policyHash": priority.policy_hash,
            },
            "conditions": with_condition(
                status.get("conditions") or [],
                ConditionType.CLASSIFICATION,
                succeeded=True,
                reason="ClassificationSucceeded",
                message=message,
                now=now,
                generation=sp["metadata"].get("generation", 1),
            ),
            "policyHashes": {
                Policy.ENVIRONMENT.value: environment.policy_hash,
                Policy.PRIORITY.value: priority.policy_hash,
            },
            **_cleared_failures(status),
        }

    async def _categorize(self, sp: Mapping[str, Any], now: datetime) -> Patch:
        status = sp.get("status") or {}
        facts = _recorded_facts(sp)
        environment = status["environmentClassification"]["environment"]
        priority = status["priorityAssignment"]["priority"]
        business = await self._evaluate(
            classify_business(self.policies, environment, facts.namespace, facts.deployment)
        )
        generation = sp["metadata"].get("generation", 1)
        elapsed = (now - parse_timestamp(status["startTime"])).total_seconds()
        conditions = with_condition(
            status.get("conditions") or [],
            ConditionType.CATEGORIZATION,
            succeeded=True,
            reason="CategorizationSucceeded",
            message=(
                f"Categorized: businessUnit={business.business_unit}, criticality={business.criticality}, "
                f"sla={business.sla_requirement}"
            ),
            now=now,
            generation=generation,
        )
        conditions = with_condition(
            conditions,
            ConditionType.PROCESSING,
            succeeded=True,
            reason="ProcessingSucceeded",
            message=(
                f"Signal processed successfully in {elapsed:.2f}s: {priority} {environment} "
                "alert ready for remediation"
            ),
            now=now,
            generation=generation,
        )
        return {
            "phase": Phase.COMPLETED.value,
            "businessClassification": {
                "businessUnit": business.business_unit,
                "serviceOwner": business.service_owner,
                "criticality": business.criticality,
                "slaRequirement": business.sla_requirement,
                "policyHash": business.policy_hash,
            },
            "completionTime": timestamp(now),
            "conditions": conditions,
            "policyHashes": {Policy.BUSINESS.value: business.policy_hash},
            **_cleared_failures(status),
        }

    async def _evaluate(self, evaluation: Awaitable[T]) -> T:
        try:
            return await evaluation
        except PolicyEngineUnavailable:
            raise
        except PolicyError as error:
            raise PermanentFailure("RegoEvaluationError", f"policy evaluation failed: {error}") from error


_STEPS: Final[dict[Phase, Callable[[Pipeline, Mapping[str, Any], datetime], Awaitable[Patch]]]] = {
    Phase.NEW: Pipeline._start,
    Phase.PENDING: Pipeline._begin_enriching,
    Phase.ENRICHING: Pipeline._enrich,
    Phase.CLASSIFYING: Pipeline._classify,
    Phase.CATEGORIZING: Pipeline._categorize,
}


def _cleared_failures(status: Mapping[str, Any]) -> Patch:
    """A successful step resets the transient-failure record (BR-SP-111); None deletes a field."""
    return {"consecutiveFailures": None, "error": None} if status.get("consecutiveFailures") else {}


def _recorded_facts(sp: Mapping[str, Any]) -> KubernetesFacts:
    """The facts of the context the Enriching step wrote into the status."""
    context = (sp.get("status") or {}).get("kubernetesContext") or {}
    target = TargetResource.from_raw(sp["spec"]["signal"]["targetResource"])
    return kubernetes_facts(KubernetesContext.from_raw(cast(RawKubernetesContext, context)), target)


def _signal(spec: Mapping[str, Any]) -> SignalFacts:
    signal = spec["signal"]
    return SignalFacts(
        severity=signal["severity"],
        source=signal.get("source", ""),
        type=signal.get("type", ""),
        labels=signal.get("labels") or {},
    )


def kubernetes_facts(context: KubernetesContext, target: TargetResource) -> KubernetesFacts:
    """What the policies see of the `target` whose `context` enrichment read.

    The context has a pod or deployment section only when the target is that pod or deployment,
    so the target names it.
    """
    namespace = (
        NamespaceFacts(context.namespace.name, context.namespace.labels, context.namespace.annotations)
        if context.namespace is not None
        else None
    )
    pod = (
        PodFacts(
            name=target.name,
            phase=context.pod.phase,
            labels=context.pod.labels,
            annotations=context.pod.annotations,
            restart_count=context.pod.restart_count,
            creation_timestamp=context.pod.creation_timestamp,
        )
        if context.pod is not None
        else None
    )
    deployment = (
        DeploymentFacts(
            name=target.name,
            replicas=context.deployment.replicas,
            ready_replicas=context.deployment.ready_replicas,
            available_replicas=context.deployment.available_replicas,
            strategy=context.deployment.strategy,
            labels=context.deployment.labels,
            annotations=context.deployment.annotations,
        )
        if context.deployment is not None
        else None
    )
    return KubernetesFacts(namespace=namespace, pod=pod, deployment=deployment)
