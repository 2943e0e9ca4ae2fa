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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol, TypeVar

from controller import kube
from controller.audit_events import AuditEvent
from controller.backoff import RetryBackoff
from controller.caches import EnrichmentCaches
from controller.classify import SignalVerdict, classify_business, classify_signal, extract_custom_labels
from controller.clusters import Fleet, hub_only
from controller.detect import read_detected_labels
from controller.enrich import REMOTE_READER_UNAVAILABLE, NamespaceMissing, read_cluster_context
from controller.events import InvolvedObject
from controller.metrics import ControllerMetrics
from controller.policies import ActivePolicies
from controller.policy_engine import PolicyEngineUnavailable, PolicyError
from controller.recovery import read_recovery_context
from controller.sharding import Shards
from controller.signalprocessing import (
    ConditionReason,
    ConditionType,
    FailureReason,
    KubernetesContext,
    Phase,
    SignalClassification,
    SignalProcessing,
    Status,
    status_patch,
    timestamp,
)
from controller.trail import audit_trail, new_events
from controller.transitions import failed, failed_transiently, seconds_in_phase, succeeded, with_condition

SIGNALPROCESSINGS: Final = kube.Resource("kubernaut.ai", "v1alpha1", "signalprocessings")
_CONFLICT_RETRIES: Final = 5

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --- What the pipeline needs from the world ------------------------------------------------------


class StatusWriter(kube.Reader, Protocol):
    """The cluster as the pipeline uses it: reads, and conditional writes of an SP's status."""

    async def patch_status(
        self, resource: kube.Resource, name: str, *, namespace: str, patch: kube.RawObject
    ) -> kube.RawObject:
        """Merge-patches the status; raises `kube.Conflict` when the resourceVersion is stale."""
        ...


class AuditSink(Protocol):
    """Where audit events go (`controller.audit.AuditClient`)."""

    @property
    def saturated(self) -> bool:
        """True while so many events wait for delivery that new work should be deferred."""
        ...

    def emit(self, event: AuditEvent) -> None: ...

    def resend(self, events: Sequence[AuditEvent]) -> None:
        """Events emitted before (a restart's trail): delivered only where DataStorage lacks them."""
        ...


class SignalModes(Protocol):
    """Which signals are proactive (`controller.signalmode.ActiveSignalModes`)."""

    def classify(self, signal_name: str) -> SignalClassification: ...


class EventSink(Protocol):
    """Where Kubernetes Events go (`controller.events.EventRecorder`)."""

    def record(
        self,
        involved: InvolvedObject,
        *,
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        now: datetime,
    ) -> None: ...


# --- Outcomes ------------------------------------------------------------------------------------


class RetryLater(Exception):
    """Process the SP again after `delay` seconds: a transient failure (recorded) or a full audit queue."""

    def __init__(self, delay: float, cause: str) -> None:
        super().__init__(f"retrying in {delay:.1f}s: {cause}")
        self.delay = delay


class PermanentFailure(Exception):
    """The SP cannot succeed; it goes to Failed with this reason."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# A retry scheduled for the deadline runs this much after it, so that it finds the deadline passed.
_PAST_THE_DEADLINE: Final = 0.05

# A step computes the status its phase ends with; the write sends what changed.
Step = Callable[["Pipeline", SignalProcessing, datetime], Awaitable[Status]]


@dataclass
class Pipeline:
    api: StatusWriter
    caches: EnrichmentCaches
    policies: ActivePolicies
    signal_modes: SignalModes
    audit: AuditSink
    events: EventSink
    metrics: ControllerMetrics
    deadline: timedelta
    backoff: RetryBackoff
    clock: Callable[[], datetime]
    fleet: Fleet = field(default_factory=hub_only)  # which cluster a signal is from, and its labels
    shards: Shards | None = None  # with sharding: audit events, Events and metrics name replica and shard

    async def advance(self, sp: SignalProcessing) -> SignalProcessing:
        """Runs every remaining step; returns the SP as last written. Raises `RetryLater`."""
        current = sp
        # When this pass's own write put the SP in its current phase; None when it found it there.
        entered: datetime | None = None
        while not (phase := current.phase).is_terminal:
            now = self.clock()
            deadline = self.deadline_of(current)
            if self.audit.saturated and (deadline is None or now < deadline):
                # Nothing is lost by waiting: the step has not happened, so neither have its events.
                delay = self._until_deadline(self.backoff.delay(1), deadline, now)
                raise RetryLater(delay, "the audit queue is full; DataStorage is behind")
            try:
                current, entered = await self._take_step(current, phase, deadline, now, entered)
            except (kube.ApiError, PolicyEngineUnavailable) as error:
                # A read, an evaluation or the write itself (a timeout under load, an RBAC change):
                # recorded and tried again later, never left to kopf, which would drop the SP.
                self.metrics.processing_total.labels(phase=phase.value.lower(), result="failure").inc()
                delay = await self._record_transient(current, phase, str(error), now)
                raise RetryLater(delay, str(error)) from error
        return current

    async def _take_step(
        self,
        sp: SignalProcessing,
        phase: Phase,
        deadline: datetime | None,
        now: datetime,
        entered: datetime | None,
    ) -> tuple[SignalProcessing, datetime | None]:
        """Runs the phase's step and writes its status, or writes the failure the step ended in."""
        try:
            if deadline is not None and now >= deadline:
                raise PermanentFailure(FailureReason.TIMED_OUT, self._timed_out(sp, deadline))
            status = await _STEPS[phase](self, sp, now)
        except PermanentFailure as failure:
            return await self._fail(sp, phase, failure, now, entered)
        return await self._write(sp, phase, status, now, entered)

    def trail(self, sp: SignalProcessing) -> list[AuditEvent]:
        """The audit trail `sp`'s status implies, as this replica would send it (with sharding: naming
        itself and the SP's shard; a trail re-sent after a take-over names the replica that sent it)."""
        return [self._signed(event, sp) for event in audit_trail(sp)]

    def _signed(self, event: AuditEvent, sp: SignalProcessing) -> AuditEvent:
        if self.shards is None:
            return event
        work = self.shards.work(sp)
        return event.done_by(work.replica, work.shard)

    async def fetch(self, name: str, namespace: str) -> SignalProcessing | None:
        """The SP as the API server has it now; None when it is gone."""
        raw = await self.api.get(SIGNALPROCESSINGS, name, namespace=namespace)
        return SignalProcessing.from_raw(raw) if raw is not None else None

    def deadline_of(self, sp: SignalProcessing) -> datetime | None:
        """When the SP must be finished: `spec.timesOutAt` when its creator set one, otherwise the
        configured time after it started (or, before it started, after it was created)."""
        if sp.spec.times_out_at is not None:
            return sp.spec.times_out_at
        started = sp.status.start_time or sp.metadata.creation_timestamp
        return started + self.deadline if started is not None else None

    def _timed_out(self, sp: SignalProcessing, deadline: datetime) -> str:
        if sp.spec.times_out_at is not None:
            return f"not completed by spec.timesOutAt {timestamp(deadline)}"
        return f"not completed within {self.deadline.total_seconds():.0f}s"

    @staticmethod
    def _until_deadline(delay: float, deadline: datetime | None, now: datetime) -> float:
        """`delay`, cut so that the retry comes at the deadline, not after it: an SP waiting for a retry
        is failed TimedOut when its deadline passes, not when the backoff happens to end."""
        if deadline is None:
            return delay
        return max(0.0, min(delay, (deadline - now).total_seconds() + _PAST_THE_DEADLINE))

    # --- writing -------------------------------------------------------------------------------

    async def _write(
        self, sp: SignalProcessing, phase: Phase, status: Status, now: datetime, entered: datetime | None
    ) -> tuple[SignalProcessing, datetime | None]:
        """Writes a step's status; returns the SP as it now is and when this write moved it into its
        new phase (None when another writer had moved it on). `entered`: when `phase` began, if known."""
        written = await self._patch_conditionally(sp, phase, status)
        if written is None:  # someone else moved it on; carry on from what is there now
            return await self._reread(sp), None
        accepted = self.clock()
        self._record(sp, written, phase, now, entered=entered, accepted=accepted)
        return written, accepted

    async def _patch_conditionally(
        self, sp: SignalProcessing, phase: Phase, status: Status
    ) -> SignalProcessing | None:
        """Writes the change from `sp.status` to `status` if the SP is still in `phase`; None when
        another writer moved it on."""
        patch = status_patch(sp.status, status)
        current = sp
        for _ in range(_CONFLICT_RETRIES):
            metadata = current.metadata
            body = {"metadata": {"resourceVersion": metadata.resource_version}, "status": patch}
            try:
                raw = await self.api.patch_status(
                    SIGNALPROCESSINGS, metadata.name, namespace=metadata.namespace, patch=body
                )
                return SignalProcessing.from_raw(raw)
            except kube.Conflict:
                current = await self._reread(current)
                if current.phase is not phase:
                    return None
        raise kube.TransientApiError(f"status of {sp.key} kept changing under the controller")

    async def _reread(self, sp: SignalProcessing) -> SignalProcessing:
        fresh = await self.fetch(sp.metadata.name, sp.metadata.namespace)
        if fresh is None:
            raise kube.TransientApiError(f"{sp.key} was deleted")
        return fresh

    def _record(
        self,
        before: SignalProcessing,
        after: SignalProcessing,
        phase: Phase,
        now: datetime,
        *,
        entered: datetime | None,
        accepted: datetime,
    ) -> None:
        for event in new_events(before, after):
            self.audit.emit(self._signed(event, after))
        work = self.shards.work(after) if self.shards is not None else None
        by = f" (replica {work.replica}, shard {work.shard})" if work is not None else ""
        reached = after.phase
        if reached is not Phase.FAILED:  # a failed step was already counted as a failure by _fail
            self.metrics.processing_total.labels(phase=phase.value.lower() or "new", result="success").inc()
        if reached is not Phase.PENDING:
            self.events.record(
                InvolvedObject.of(after),
                kind="Warning" if reached is Phase.FAILED else "Normal",
                reason="PhaseTransition",
                message=f"{phase.value or 'New'} -> {reached.value}{by}",
                now=now,
            )
        spent = seconds_in_phase(before.status, phase, left=accepted, entered=entered)
        if spent is not None:  # New has no duration of its own: it is the wait for the first write
            self.metrics.processing_duration.labels(phase=phase.value.lower()).observe(spent)
        started = after.status.start_time
        if reached.is_terminal and started is not None:
            # The total, start to end, of Completed and Failed SPs alike, as always.
            self.metrics.processing_duration.labels(phase="completed").observe(
                (accepted - started).total_seconds()
            )
        if reached.is_terminal and work is not None:
            self.metrics.shard_completed.labels(shard=str(work.shard)).inc()
        processed = after.status.condition(ConditionType.PROCESSING)
        if reached is Phase.COMPLETED and processed is not None:
            self.events.record(
                InvolvedObject.of(after),
                kind="Normal",
                reason="SignalProcessed",
                message=processed.message + by,
                now=now,
            )

    async def _fail(
        self,
        sp: SignalProcessing,
        phase: Phase,
        failure: PermanentFailure,
        now: datetime,
        entered: datetime | None,
    ) -> tuple[SignalProcessing, datetime | None]:
        failing = phase if phase is not Phase.NEW else Phase.PENDING
        status = failed(
            sp.status,
            failing,
            reason=failure.reason,
            message=str(failure),
            now=now,
            generation=sp.metadata.generation,
        )
        logger.warning("%s failed in %s: %s: %s", sp.key, failing.value, failure.reason.value, failure)
        self.metrics.processing_total.labels(phase=failing.value.lower(), result="failure").inc()
        self.events.record(
            InvolvedObject.of(sp),
            kind="Warning",
            reason=failure.reason.event_reason,
            message=str(failure),
            now=now,
        )
        return await self._write(sp, phase, status, now, entered)

    async def _record_transient(self, sp: SignalProcessing, phase: Phase, error: str, now: datetime) -> float:
        """Records the failure (BR-SP-111) and returns how long to wait before the next attempt."""
        status = failed_transiently(sp.status, error, now=now)
        delay = self._until_deadline(
            self.backoff.delay(status.consecutive_failures), self.deadline_of(sp), now
        )
        try:
            await self._patch_conditionally(sp, phase, status)
        except kube.ApiError as write_error:
            logger.warning("could not record a transient failure: %s", write_error)
        return delay

    # --- the steps -----------------------------------------------------------------------------

    async def _start(self, sp: SignalProcessing, now: datetime) -> Status:
        return replace(
            sp.status, phase=Phase.PENDING, start_time=now, observed_generation=sp.metadata.generation
        )

    async def _begin_enriching(self, sp: SignalProcessing, now: datetime) -> Status:
        return replace(sp.status, phase=Phase.ENRICHING)

    async def _enrich(self, sp: SignalProcessing, now: datetime) -> Status:
        signal = sp.spec.signal
        target = signal.target_resource
        began = self.clock()
        member = self.fleet.member(signal.cluster_id)
        # The reads that do not depend on each other go out together: each one is a round trip.
        context_read, recovery_read = await asyncio.gather(
            read_cluster_context(self.api, target, self.caches, member),
            read_recovery_context(
                self.api, sp.spec.remediation_request_ref, sp_namespace=sp.metadata.namespace, now=now
            ),
            return_exceptions=True,
        )
        if isinstance(context_read, NamespaceMissing):
            self.metrics.enrichment_total.labels(result="failure").inc()
            error_type = "not_found" if context_read.namespace else "invalid_target"
            self.metrics.enrichment_errors.labels(error_type=error_type).inc()
            raise PermanentFailure(FailureReason.ENRICHMENT_FAILED, str(context_read)) from context_read
        if isinstance(context_read, BaseException):
            self._count_read_error(context_read)
            raise context_read
        if isinstance(recovery_read, BaseException):
            self._count_read_error(recovery_read)
            raise recovery_read
        # The target as the policies see it, recorded so that no reader needs its kind's section.
        context = replace(context_read, workload=context_read.workload_of(target.kind, target.name))
        recovery = recovery_read
        detected, custom = await asyncio.gather(
            read_detected_labels(self.api, target, context, self.caches),
            self._evaluate(extract_custom_labels(self.policies, context, target, signal)),
        )
        context = replace(context, detected_labels=detected, custom_labels=custom.labels)
        self.metrics.enrichment_duration.labels(resource_kind=target.kind.lower()).observe(
            (self.clock() - began).total_seconds()
        )
        self.metrics.enrichment_total.labels(result="degraded" if context.degraded_mode else "success").inc()
        where = str(target)
        if member.remote:
            where = f"{where} in cluster {member.id}"
            why = f"{REMOTE_READER_UNAVAILABLE}: no reader for remote clusters; nothing of it was read"
            self.metrics.enrichment_errors.labels(error_type=REMOTE_READER_UNAVAILABLE).inc()
        elif target.is_cluster_scoped and target.kind != "Node":
            why = f"a cluster-scoped {target.kind} is not a kind this controller reads"
        else:
            why = "target not found"
        if context.degraded_mode:
            reason, message = (
                ConditionReason.DEGRADED_MODE,
                f"Enrichment completed in degraded mode: {where} ({why})",
            )
            self.events.record(
                InvolvedObject.of(sp), kind="Warning", reason="EnrichmentDegraded", message=message, now=now
            )
        else:
            reason, message = ConditionReason.ENRICHMENT_SUCCEEDED, f"K8s context enriched: {where}"
        return replace(
            succeeded(sp.status),
            phase=Phase.CLASSIFYING,
            kubernetes_context=context,
            conditions=with_condition(
                sp.status.conditions,
                ConditionType.ENRICHMENT,
                succeeded=True,
                reason=reason,
                message=message,
                now=now,
                generation=sp.metadata.generation,
            ),
            recovery_context=recovery if recovery is not None else sp.status.recovery_context,
        )

    def _count_read_error(self, error: BaseException) -> None:
        if isinstance(error, kube.TransientApiError):
            self.metrics.enrichment_errors.labels(error_type="api_error").inc()

    async def _classify(self, sp: SignalProcessing, now: datetime) -> Status:
        context = sp.status.kubernetes_context or KubernetesContext()
        signal = sp.spec.signal
        verdict = await self._evaluate(
            classify_signal(self.policies, context, signal.target_resource, signal)
        )
        if verdict.cluster.error:
            self._report_cluster_error(sp, verdict, now)
        environment, priority = verdict.environment, verdict.priority
        message = (
            f"Classified: severity={verdict.severity} (from {signal.severity!r}), "
            f"environment={environment.environment} (source={environment.source}), "
            f"priority={priority.priority} (source={priority.source})"
        )
        signal_classification = replace(
            self.signal_modes.classify(signal.name),
            severity=verdict.severity,
            policy_hash=verdict.policy_hash,
            cluster_classification=verdict.cluster.classification,
        )
        return replace(
            succeeded(sp.status),
            phase=Phase.CATEGORIZING,
            environment_classification=replace(environment, classified_at=now),
            signal_classification=signal_classification,
            priority_assignment=replace(priority, assigned_at=now),
            conditions=with_condition(
                sp.status.conditions,
                ConditionType.CLASSIFICATION,
                succeeded=True,
                reason=ConditionReason.CLASSIFICATION_SUCCEEDED,
                message=message,
                now=now,
                generation=sp.metadata.generation,
            ),
        )

    def _report_cluster_error(self, sp: SignalProcessing, verdict: SignalVerdict, now: datetime) -> None:
        """kubernaut never fails an SP for its cluster rule: the error is logged, counted and shown."""
        message = f"cluster classification skipped: {verdict.cluster.error}"
        logger.warning("%s: %s", sp.key, message)
        self.metrics.cluster_classification_errors.inc()
        self.events.record(
            InvolvedObject.of(sp),
            kind="Warning",
            reason="ClusterClassificationFailed",
            message=message,
            now=now,
        )

    async def _categorize(self, sp: SignalProcessing, now: datetime) -> Status:
        status = sp.status
        context = status.kubernetes_context or KubernetesContext()
        signal = sp.spec.signal
        environment = (
            status.environment_classification.environment if status.environment_classification else ""
        )
        priority = status.priority_assignment.priority if status.priority_assignment else ""
        business, policy_hash = await self._evaluate(
            classify_business(self.policies, context, signal.target_resource, signal)
        )
        classified_with = status.signal_classification.policy_hash if status.signal_classification else ""
        if classified_with and policy_hash != classified_with:
            # A reload between the two steps: the status records the classification's text.
            logger.warning(
                "%s: categorized with policy %s, classified with %s",
                sp.key,
                policy_hash[:16],
                classified_with[:16],
            )
        generation = sp.metadata.generation
        elapsed = (now - status.start_time).total_seconds() if status.start_time is not None else 0.0
        conditions = with_condition(
            status.conditions,
            ConditionType.CATEGORIZATION,
            succeeded=True,
            reason=ConditionReason.CATEGORIZATION_SUCCEEDED,
            message=(
                f"Categorized: businessUnit={business.business_unit}, criticality={business.criticality}, "
                f"sla={business.sla_requirement}"
            ),
            now=now,
            generation=generation,
        )
        processed = (
            f"Signal processed successfully in {elapsed:.2f}s: {priority} {environment} "
            "alert ready for remediation"
        )
        conditions = with_condition(
            conditions,
            ConditionType.PROCESSING,
            succeeded=True,
            reason=ConditionReason.PROCESSING_SUCCEEDED,
            message=processed,
            now=now,
            generation=generation,
        )
        conditions = with_condition(
            conditions,
            ConditionType.READY,
            succeeded=True,
            reason=ConditionReason.READY,
            message=processed,
            now=now,
            generation=generation,
        )
        return replace(
            succeeded(status),
            phase=Phase.COMPLETED,
            business_classification=business,
            completion_time=now,
            conditions=conditions,
        )

    async def _evaluate(self, evaluation: Awaitable[T]) -> T:
        try:
            return await evaluation
        except PolicyEngineUnavailable:
            raise
        except PolicyError as error:
            raise PermanentFailure(
                FailureReason.REGO_EVALUATION_ERROR, f"policy evaluation failed: {error}"
            ) from error


_STEPS: Final[dict[Phase, Step]] = {
    Phase.NEW: Pipeline._start,
    Phase.PENDING: Pipeline._begin_enriching,
    Phase.ENRICHING: Pipeline._enrich,
    Phase.CLASSIFYING: Pipeline._classify,
    Phase.CATEGORIZING: Pipeline._categorize,
}
