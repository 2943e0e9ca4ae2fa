"""The pipeline and the reconciler without a cluster, tested the way kubebuilder projects test a reconcile.

An in-memory API server (`Cluster`) keeps resourceVersions and refuses stale writes, policies
answer from a table, and the audit and Event sinks keep what they are given. Each test drives one
SignalProcessing and checks what a user would see: the status written, the Events, the audit trail.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

import pytest

from controller import kube
from controller.audit_events import AuditEvent
from controller.backoff import RetryBackoff
from controller.caches import EnrichmentCaches
from controller.events import InvolvedObject
from controller.metrics import ControllerMetrics
from controller.pipeline import SIGNALPROCESSINGS, Pipeline, RetryLater
from controller.policies import Decisions, Rule
from controller.policy_engine import (
    PolicyEngineUnavailable,
    PolicyError,
    PolicyEvaluationError,
    PolicyTimeLimitExceeded,
)
from controller.reconciler import Reconciler
from controller.sharding import Shards
from controller.signalmode import SignalModeMappings
from controller.signalprocessing import (
    ConditionReason,
    ConditionType,
    FailureInfo,
    FailureReason,
    Phase,
    SignalProcessing,
)
from controller.trail import audit_trail
from test.unit.enrichment.fakes import FakeReader, obj

NOW = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
DEADLINE = timedelta(minutes=5)
POLICY_HASH = "a" * 64
ANSWERS: dict[Rule, object] = {
    Rule.SEVERITY: "critical",
    Rule.ENVIRONMENT: {"environment": "production", "source": "namespace-labels"},
    Rule.PRIORITY: {"priority": "P0", "policy_name": "critical-production"},
    Rule.CLUSTER: None,
    Rule.BUSINESS: {"business_unit": "payments"},
    Rule.LABELS: {"team": ["payments"]},
}


def merged(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` merged into `target`: objects key by key, None deletes, anything else replaces."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class Cluster(FakeReader):
    """The API server's part the pipeline writes to: a status patch checked against resourceVersion."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[dict[str, Any]] = []
        # Run by the next status write before it is checked, as another writer racing the controller.
        self.before_next_write: list[Any] = []

    def add_signal_processing(self, raw: dict[str, Any]) -> SignalProcessing:
        self.add(SIGNALPROCESSINGS, raw)
        return SignalProcessing.from_raw(copy.deepcopy(raw))

    def stored(self, name: str = "sp-1") -> dict[str, Any]:
        return self.objects[("kubernaut.ai/signalprocessings", "shop", name)]

    def change(self, name: str, status: Mapping[str, Any]) -> None:
        """A status merge patch (RFC 7386, as the API server applies it): a new resourceVersion."""
        stored = self.stored(name)
        stored["status"] = merged(stored.get("status", {}), status)
        stored["metadata"]["resourceVersion"] = str(int(stored["metadata"]["resourceVersion"]) + 1)

    async def patch_status(
        self, resource: kube.Resource, name: str, *, namespace: str, patch: kube.RawObject
    ) -> kube.RawObject:
        while self.before_next_write:
            self.before_next_write.pop(0)()
        stored = self.stored(name)
        if patch["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]:
            raise kube.Conflict("the object has been modified", status=409)
        self.writes.append(copy.deepcopy(patch["status"]))
        self.change(name, patch["status"])
        return copy.deepcopy(stored)


class Policies:
    """Answers each rule from a table; an unreachable engine in the table is raised, an evaluation
    error is that rule's error, as `ActivePolicies` reports them."""

    def __init__(self, **overrides: object) -> None:
        self.answers = ANSWERS | {Rule(key): value for key, value in overrides.items()}
        self.inputs: list[Mapping[str, object]] = []

    async def evaluate(self, rules: Sequence[Rule], input: Mapping[str, object]) -> Decisions:
        self.inputs.append(input)
        values: dict[Rule, object] = {}
        errors: dict[Rule, PolicyError] = {}
        for rule in rules:
            answer = self.answers[rule]
            if isinstance(answer, PolicyEngineUnavailable) and not isinstance(
                answer, PolicyTimeLimitExceeded
            ):
                raise answer
            if isinstance(answer, PolicyError):
                errors[rule] = answer
            else:
                values[rule] = answer
        return Decisions(values, POLICY_HASH, errors)


class Audit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.resent: list[AuditEvent] = []
        self.saturated = False

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def resend(self, events: Sequence[AuditEvent]) -> None:
        self.resent.extend(events)


class Events:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str]] = []
        self.messages: list[str] = []

    def record(
        self,
        involved: InvolvedObject,
        *,
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        self.recorded.append((kind, reason))
        self.messages.append(message)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def signal_processing(
    *,
    target_namespace: str = "shop",
    status: dict[str, Any] | None = None,
    created: datetime = NOW,
    times_out_at: datetime | None = None,
) -> dict[str, Any]:
    deadline = {"timesOutAt": times_out_at.strftime("%Y-%m-%dT%H:%M:%SZ")} if times_out_at else {}
    return {
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "SignalProcessing",
        "metadata": {
            "name": "sp-1",
            "namespace": "shop",
            "uid": "uid-1",
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "spec": {
            "remediationRequestRef": {"name": "rr-1"},
            "signal": {
                "name": "HighMemoryUsage",
                "severity": "critical",
                "source": "prometheus",
                "targetResource": {"kind": "Pod", "name": "web-1", "namespace": target_namespace},
            },
            **deadline,
        },
        "status": status or {},
    }


class World:
    def __init__(self, policies: Policies | None = None, shards: Shards | None = None) -> None:
        self.cluster = Cluster()
        self.cluster.add(kube.NAMESPACES, obj("Namespace", "shop", labels={"env": "production"}))
        self.cluster.add(kube.PODS, obj("Pod", "web-1", "shop", status={"phase": "Running"}))
        self.audit, self.events, self.clock = Audit(), Events(), Clock()
        self.metrics = ControllerMetrics.create()
        self.pipeline = Pipeline(
            api=self.cluster,
            caches=EnrichmentCaches.create(),
            policies=policies or Policies(),  # type: ignore[arg-type]  # the evaluator part is all it uses
            signal_modes=SignalModeMappings(MappingProxyType({"PredictedOOMKill": "OOMKilled"})),
            audit=self.audit,
            events=self.events,
            metrics=self.metrics,
            deadline=DEADLINE,
            backoff=RetryBackoff(base=30.0, cap=300.0),
            clock=self.clock,
            shards=shards,
        )

    def add(self, **fields: Any) -> SignalProcessing:
        return self.cluster.add_signal_processing(signal_processing(**fields))

    def stored(self) -> SignalProcessing:
        return SignalProcessing.from_raw(self.cluster.stored())


# --- The pipeline --------------------------------------------------------------------------------


async def test_a_new_signal_is_completed_with_one_write_per_phase_and_its_whole_trail() -> None:
    world = World()

    final = await world.pipeline.advance(world.add())

    assert final.phase is Phase.COMPLETED
    assert [write.get("phase") for write in world.cluster.writes] == [
        "Pending",
        "Enriching",
        "Classifying",
        "Categorizing",
        "Completed",
    ]
    assert [event.event_id for event in world.audit.events] == [e.event_id for e in audit_trail(final)]
    assert len(world.audit.events) == 8
    assert world.events.recorded == [("Normal", "PhaseTransition")] * 4 + [("Normal", "SignalProcessed")]
    assert final.status.priority_assignment is not None
    assert final.status.priority_assignment.priority == "P0"
    assert final.status.signal_classification is not None
    classified = final.status.signal_classification
    assert (classified.severity, classified.policy_hash, classified.cluster_classification) == (
        "critical",
        POLICY_HASH,
        "",
    )


async def test_with_sharding_the_trail_events_and_metrics_name_the_replica_and_the_shard() -> None:
    shards = Shards("r1", 16)
    shards.update({"r1"})
    world = World(shards=shards)

    final = await world.pipeline.advance(world.add())

    shard = shards.shard(final)
    assert [event.event_id for event in world.audit.events] == [e.event_id for e in audit_trail(final)]
    assert {
        (e.to_raw()["event_data"]["replica"], e.to_raw()["event_data"]["shard"]) for e in world.audit.events
    } == {("r1", shard)}
    assert all(message.endswith(f" (replica r1, shard {shard})") for message in world.events.messages)
    resent = world.pipeline.trail(final)  # what meeting the SP after a take-over re-sends
    assert [e.to_raw()["event_data"]["replica"] for e in resent] == ["r1"] * len(audit_trail(final))
    completed = world.metrics.registry.get_sample_value(
        "signalprocessing_shard_completed_total", {"shard": str(shard)}
    )
    assert completed == 1


async def test_without_sharding_the_trail_names_no_replica() -> None:
    world = World()

    await world.pipeline.advance(world.add())

    assert not any("replica" in event.to_raw()["event_data"] for event in world.audit.events)
    assert not any("replica" in message for message in world.events.messages)


async def test_a_write_that_loses_a_race_within_its_phase_re_reads_and_writes_once() -> None:
    world = World()
    sp = world.add()
    # Someone else touches the status (not the phase) just before the first write: a stale version.
    world.cluster.before_next_write.append(
        lambda: world.cluster.change("sp-1", {"failureInfo": {"error": "unrelated"}})
    )

    final = await world.pipeline.advance(sp)

    assert final.phase is Phase.COMPLETED
    assert [write.get("phase") for write in world.cluster.writes][:2] == ["Pending", "Enriching"]
    assert len(world.cluster.writes) == 5


async def test_a_phase_another_writer_already_took_is_not_written_again() -> None:
    world = World()
    sp = world.add()
    # Another replica moved the SP to Pending first; this pass must carry on from there.
    world.cluster.before_next_write.append(
        lambda: world.cluster.change("sp-1", {"phase": "Pending", "startTime": "2026-01-01T09:59:59Z"})
    )

    final = await world.pipeline.advance(sp)

    assert final.phase is Phase.COMPLETED
    assert [write.get("phase") for write in world.cluster.writes] == [
        "Enriching",
        "Classifying",
        "Categorizing",
        "Completed",
    ]
    assert final.status.start_time == datetime(2026, 1, 1, 9, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policies", "target_namespace", "failed_phase", "reason", "event"),
    [
        pytest.param(
            None, "gone", Phase.ENRICHING, "EnrichmentFailed", "EnrichmentFailed", id="namespace-gone"
        ),
        pytest.param(
            None, "", Phase.ENRICHING, "EnrichmentFailed", "EnrichmentFailed", id="pod-without-namespace"
        ),
        pytest.param(
            Policies(environment=PolicyEvaluationError("undefined function")),
            "shop",
            Phase.CLASSIFYING,
            "RegoEvaluationError",
            "PolicyEvaluationFailed",
            id="policy-error",
        ),
        pytest.param(
            Policies(priority={"priority": "P9"}),
            "shop",
            Phase.CLASSIFYING,
            "RegoEvaluationError",
            "PolicyEvaluationFailed",
            id="policy-answer-out-of-contract",
        ),
        pytest.param(
            Policies(severity="urgent"),
            "shop",
            Phase.CLASSIFYING,
            "RegoEvaluationError",
            "PolicyEvaluationFailed",
            id="severity-out-of-the-enum",
        ),
        pytest.param(
            Policies(severity=None),
            "shop",
            Phase.CLASSIFYING,
            "RegoEvaluationError",
            "PolicyEvaluationFailed",
            id="severity-undefined",
        ),
        pytest.param(
            Policies(severity={"severity": "critical"}),
            "shop",
            Phase.CLASSIFYING,
            "RegoEvaluationError",
            "PolicyEvaluationFailed",
            id="severity-not-a-string",
        ),
        pytest.param(
            Policies(business={"criticality": "extreme"}),
            "shop",
            Phase.CATEGORIZING,
            "RegoEvaluationError",
            "PolicyEvaluationFailed",
            id="business-answer-out-of-contract",
        ),
    ],
)
async def test_a_permanent_failure_fails_the_sp_with_its_reason(
    policies: Policies | None, target_namespace: str, failed_phase: Phase, reason: str, event: str
) -> None:
    world = World(policies)

    final = await world.pipeline.advance(world.add(target_namespace=target_namespace))

    assert (final.phase, final.status.failed_phase) == (Phase.FAILED, failed_phase)
    processing = final.status.condition("ProcessingComplete")  # type: ignore[arg-type]
    assert processing is not None
    assert (processing.status, processing.reason) == ("False", reason)
    assert ("Warning", event) in world.events.recorded
    assert [e.event_type.value for e in world.audit.events][-2:] == [
        "signalprocessing.error.occurred",
        "signalprocessing.phase.transition",
    ]


async def test_the_target_workload_is_recorded_as_the_policies_see_it() -> None:
    world = World()
    world.cluster.add(kube.PODS, obj("Pod", "web-2", "shop", labels={"app": "web"}, annotations={"a": "b"}))
    manifest = signal_processing()
    manifest["spec"]["signal"]["targetResource"]["name"] = "web-2"

    final = await world.pipeline.advance(world.cluster.add_signal_processing(manifest))

    workload = {"kind": "Pod", "name": "web-2", "labels": {"app": "web"}, "annotations": {"a": "b"}}
    assert world.cluster.stored()["status"]["kubernetesContext"]["workload"] == workload
    assert final.status.kubernetes_context is not None and final.status.kubernetes_context.pod is not None
    assert all(input["workload"] == workload for input in world.pipeline.policies.inputs)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("target", "degraded", "why"),
    [
        pytest.param({"kind": "Node", "name": "node-a"}, False, "K8s context enriched", id="node"),
        pytest.param({"kind": "Node", "name": "gone"}, True, "(target not found)", id="node-not-found"),
        pytest.param(
            {"kind": "ClusterIssuer", "name": "letsencrypt"},
            True,
            "(a cluster-scoped ClusterIssuer is not a kind this controller reads)",
            id="unknown-kind",
        ),
    ],
)
async def test_a_cluster_scoped_target_is_classified_without_a_namespace(
    target: dict[str, str], degraded: bool, why: str
) -> None:
    world = World()
    world.cluster.add(kube.NODES, obj("Node", "node-a", labels={"kubernaut.ai/sla-tier": "platinum"}))
    manifest = signal_processing()
    manifest["spec"]["signal"]["targetResource"] = target  # no namespace: cluster-scoped

    final = await world.pipeline.advance(world.cluster.add_signal_processing(manifest))

    assert final.phase is Phase.COMPLETED
    context = world.cluster.stored()["status"]["kubernetesContext"]
    assert context["degradedMode"] is degraded
    enriched = final.status.condition(ConditionType.ENRICHMENT)
    assert enriched is not None
    assert why in enriched.message
    assert "namespace" not in context
    assert context["workload"]["kind"] == target["kind"]
    assert all(plural != "namespaces" for _, plural, _, _ in world.cluster.log)
    inputs = world.pipeline.policies.inputs  # type: ignore[attr-defined]
    assert all(input["namespace"] == {"name": "", "labels": {}, "annotations": {}} for input in inputs)
    business = final.status.business_classification
    assert business is not None
    # With no namespace, the business labels come from the workload's: the Node's, when it was read.
    assert business.sla_requirement == ("Bronze" if degraded else "Platinum")


async def test_a_namespaced_target_without_a_namespace_fails_naming_the_field() -> None:
    world = World()

    final = await world.pipeline.advance(world.add(target_namespace=""))

    assert (final.phase, final.status.failed_phase) == (Phase.FAILED, Phase.ENRICHING)
    assert final.status.error.startswith("the target Pod names no namespace, but Pod is a namespaced kind")
    assert "spec.signal.targetResource.namespace" in final.status.error
    assert all(plural != "namespaces" for _, plural, _, _ in world.cluster.log)


async def test_a_bad_severity_fails_classification_with_rego_evaluation_error() -> None:
    world = World(Policies(severity="sev1"))  # a policy that forgot to normalise

    final = await world.pipeline.advance(world.add())

    assert (final.phase, final.status.failed_phase) == (Phase.FAILED, Phase.CLASSIFYING)
    classified = final.status.condition(ConditionType.CLASSIFICATION)
    assert classified is not None
    assert (classified.status, classified.reason) == ("False", "RegoEvaluationError")
    assert "severity rule: 'sev1' is not one of critical, high, warning, info, unknown" in final.status.error
    assert final.status.signal_classification is None
    error = next(e for e in world.audit.events if e.event_type.value == "signalprocessing.error.occurred")
    assert error.event_data["phase"] == "Classifying"


@pytest.mark.parametrize(
    ("answer", "recorded"),
    [
        pytest.param("edge-eu", "edge-eu", id="string"),
        pytest.param(None, "", id="undefined-records-nothing"),
    ],
)
async def test_the_cluster_rule_s_answer_is_recorded(answer: object, recorded: str) -> None:
    world = World(Policies(cluster=answer))

    final = await world.pipeline.advance(world.add())

    assert final.phase is Phase.COMPLETED
    assert final.status.signal_classification is not None
    assert final.status.signal_classification.cluster_classification == recorded
    stored = world.cluster.stored()["status"]["signalClassification"]
    assert ("clusterClassification" in stored) is bool(recorded)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(PolicyEvaluationError("data.signalprocessing.cluster: conflict"), id="evaluation-error"),
        pytest.param({"class": "edge"}, id="not-a-string"),
    ],
)
async def test_a_failing_cluster_rule_never_fails_the_sp(answer: object) -> None:
    world = World(Policies(cluster=answer))

    final = await world.pipeline.advance(world.add())

    assert final.phase is Phase.COMPLETED
    assert final.status.signal_classification is not None
    assert final.status.signal_classification.cluster_classification == ""
    assert ("Warning", "ClusterClassificationFailed") in world.events.recorded
    assert (
        world.metrics.registry.get_sample_value("signalprocessing_cluster_classification_errors_total") == 1
    )


@pytest.mark.parametrize(
    ("breaking", "error"),
    [
        pytest.param(
            lambda world: world.cluster.fail_get(
                kube.PODS, "web-1", kube.TransientApiError("etcd timeout", status=504), namespace="shop"
            ),
            "etcd timeout",
            id="api-timeout",
        ),
        pytest.param(
            lambda world: world.pipeline.policies.answers.update(
                {Rule.LABELS: PolicyEngineUnavailable("OPA refused the connection")}
            ),
            "OPA refused the connection",
            id="policy-engine-down",
        ),
    ],
)
async def test_a_transient_failure_is_recorded_and_retried_after_the_backoff(
    breaking: Any, error: str
) -> None:
    world = World()
    sp = world.add()
    breaking(world)

    with pytest.raises(RetryLater) as retry:
        await world.pipeline.advance(sp)

    assert 27.0 <= retry.value.delay <= 33.0  # the first retry: 30 s ± 10 %
    stored = world.stored()
    assert stored.phase is Phase.ENRICHING  # nothing permanent happened
    assert stored.status.failure_info == FailureInfo(
        error=error, consecutive_failures=1, last_failure_time=NOW
    )
    assert world.cluster.stored("sp-1")["status"]["failureInfo"] == {
        "error": error,
        "consecutiveFailures": 1,
        "lastFailureTime": "2026-01-01T10:00:00Z",
    }


async def test_a_status_write_that_times_out_is_recorded_and_retried_not_raised() -> None:
    world = World()
    sp = world.add()

    def time_out() -> None:
        raise kube.TransientApiError("patch .../status: timed out")

    world.cluster.before_next_write.append(time_out)  # the first write: Pending, under an overloaded API

    with pytest.raises(RetryLater) as retry:
        await world.pipeline.advance(sp)

    assert 27.0 <= retry.value.delay <= 33.0
    stored = world.stored()
    assert stored.status.failure_info is not None
    assert stored.status.failure_info.error == "patch .../status: timed out"


async def test_the_step_after_a_transient_failure_clears_the_failure_record() -> None:
    world = World()
    sp = world.add(status={"phase": "Enriching", "startTime": "2026-01-01T10:00:00Z"})
    failure = {"consecutiveFailures": 2, "error": "etcd timeout", "lastFailureTime": "2026-01-01T10:00:01Z"}
    world.cluster.change("sp-1", {"failureInfo": failure})

    final = await world.pipeline.advance(world.stored())

    assert sp.phase is Phase.ENRICHING
    assert final.phase is Phase.COMPLETED
    assert (final.status.consecutive_failures, final.status.error) == (0, "")
    # The failure in force is cleared by the first step that succeeds (a merge patch keeps a nested
    # key it leaves out, so the cleared ones are sent as None); when it last failed stays.
    assert world.cluster.writes[0]["failureInfo"] == {"error": None, "consecutiveFailures": None}
    assert world.cluster.stored()["status"]["failureInfo"] == {"lastFailureTime": "2026-01-01T10:00:01Z"}


async def test_past_the_deadline_the_sp_times_out_instead_of_taking_its_next_step() -> None:
    world = World()
    started = NOW - DEADLINE - timedelta(seconds=1)
    sp = world.add(status={"phase": "Classifying", "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ")})

    final = await world.pipeline.advance(sp)

    assert (final.phase, final.status.failed_phase) == (Phase.FAILED, Phase.CLASSIFYING)
    assert final.status.error == "not completed within 300s"
    assert ("Warning", "ProcessingTimedOut") in world.events.recorded


async def test_a_retry_never_waits_past_the_deadline() -> None:
    world = World()
    started = NOW - DEADLINE + timedelta(seconds=4)
    sp = world.add(status={"phase": "Enriching", "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ")})
    world.cluster.fail_get(
        kube.PODS, "web-1", kube.TransientApiError("timeout", status=504), namespace="shop"
    )

    with pytest.raises(RetryLater) as retry:
        await world.pipeline.advance(sp)

    assert retry.value.delay == pytest.approx(4.05)  # the 4 s left, and just past the deadline


async def test_a_full_audit_queue_defers_the_next_step_without_writing() -> None:
    world = World()
    world.audit.saturated = True

    with pytest.raises(RetryLater, match="audit queue is full"):
        await world.pipeline.advance(world.add())

    assert world.cluster.writes == []
    assert world.audit.events == []


async def test_spec_times_out_at_is_the_deadline_when_set() -> None:
    world = World()
    sp = world.add(status={"phase": "Enriching", "startTime": "2026-01-01T10:00:00Z"}, times_out_at=NOW)

    final = await world.pipeline.advance(sp)  # the configured 5 minutes would leave it time

    assert (final.phase, final.status.failed_phase) == (Phase.FAILED, Phase.ENRICHING)
    assert final.status.error == "not completed by spec.timesOutAt 2026-01-01T10:00:00Z"
    ready = final.status.condition(ConditionType.READY)
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "NotReady")


async def test_a_retry_is_due_at_spec_times_out_at_not_at_the_end_of_the_backoff() -> None:
    world = World()
    sp = world.add(times_out_at=NOW + timedelta(seconds=2))
    timeout = kube.TransientApiError("timeout", status=504)
    world.cluster.fail_get(kube.PODS, "web-1", timeout, namespace="shop")

    with pytest.raises(RetryLater) as retry:
        await world.pipeline.advance(sp)
    world.clock.now += timedelta(seconds=retry.value.delay)
    final = await world.pipeline.advance(world.stored())

    assert retry.value.delay == pytest.approx(2.05)  # the backoff alone would wait 27 to 33 s
    assert final.phase is Phase.FAILED
    assert final.status.condition(ConditionType.PROCESSING).reason == "TimedOut"  # type: ignore[union-attr]


async def test_a_full_audit_queue_does_not_hold_an_sp_past_its_deadline() -> None:
    world = World()
    world.audit.saturated = True
    sp = world.add(times_out_at=NOW + timedelta(seconds=3))

    with pytest.raises(RetryLater) as retry:
        await world.pipeline.advance(sp)
    world.clock.now += timedelta(seconds=retry.value.delay)
    final = await world.pipeline.advance(world.stored())

    assert retry.value.delay == pytest.approx(3.05)
    assert (final.phase, final.status.error) == (
        Phase.FAILED,
        "not completed by spec.timesOutAt 2026-01-01T10:00:03Z",
    )


async def test_ready_is_true_once_completed() -> None:
    world = World()

    final = await world.pipeline.advance(world.add())

    ready = final.status.condition(ConditionType.READY)
    assert ready is not None
    assert (ready.status, ready.reason) == ("True", "Ready")


async def test_every_declared_condition_reason_is_set_and_every_reason_set_is_declared() -> None:
    set_reasons: set[str] = set()
    scenarios: list[tuple[Policies | None, dict[str, Any]]] = [
        (None, {}),
        (None, {"target_namespace": "gone"}),
        (Policies(environment=PolicyEvaluationError("undefined")), {}),
        (None, {"times_out_at": NOW}),
    ]
    for policies, fields in scenarios:
        world = World(policies)
        final = await world.pipeline.advance(world.add(**fields))
        set_reasons |= {condition.reason for condition in final.status.conditions}
    world = World()
    world.cluster.objects.pop(("/pods", "shop", "web-1"))  # degraded: the target is gone
    final = await world.pipeline.advance(world.add())
    set_reasons |= {condition.reason for condition in final.status.conditions}

    assert set_reasons == {reason.value for reason in ConditionReason} | {r.value for r in FailureReason}


def test_the_backoff_doubles_to_its_cap() -> None:
    backoff = RetryBackoff(base=30.0, cap=300.0, jitter=0.0)

    assert [backoff.delay(n, random.Random(1)) for n in range(1, 7)] == [
        30.0,
        60.0,
        120.0,
        240.0,
        300.0,
        300.0,
    ]


# --- The reconciler ------------------------------------------------------------------------------


class Advancer:
    """Stands for the pipeline: moves an SP to a given phase, asks for a retry, fails with a bug, or
    waits at a gate (counting the SPs inside at once)."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        retry_delay: float | None = None,
        bug: Exception | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.cluster = cluster
        self.retry_delay = retry_delay
        self.bug = bug
        self.gate = gate
        self.advanced: list[Phase] = []
        self.fetched = asyncio.Event()
        self.inside = 0
        self.most_inside = 0

    async def advance(self, sp: SignalProcessing) -> SignalProcessing:
        self.advanced.append(sp.phase)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.inside -= 1
        if self.bug is not None:
            raise self.bug
        if self.retry_delay is not None:
            delay, self.retry_delay = self.retry_delay, None
            raise RetryLater(delay, "etcd timeout")
        completed = signal_processing(status={"phase": "Completed", "startTime": "2026-01-01T10:00:00Z"})
        return SignalProcessing.from_raw(completed)

    async def fetch(self, name: str, namespace: str) -> SignalProcessing | None:
        self.fetched.set()
        return SignalProcessing.from_raw(self.cluster.stored(name))

    def trail(self, sp: SignalProcessing) -> list[AuditEvent]:
        return audit_trail(sp)


def at_phase(phase: str) -> SignalProcessing:
    status = {"phase": phase, "startTime": "2026-01-01T10:00:00Z"} if phase else {}
    return SignalProcessing.from_raw(signal_processing(status=status))


async def test_echoes_of_the_controllers_own_writes_are_skipped() -> None:
    cluster, audit = Cluster(), Audit()
    advancer = Advancer(cluster)
    reconciler = Reconciler(advancer, audit, max_concurrent=4)

    await reconciler.on_event(at_phase(""))
    for echo in ("Pending", "Enriching", "Classifying", "Categorizing", "Completed"):
        await reconciler.on_event(at_phase(echo))

    assert advancer.advanced == [Phase.NEW]


async def test_the_first_event_after_a_restart_re_sends_the_trail_the_status_implies() -> None:
    audit = Audit()
    advancer = Advancer(Cluster())
    reconciler = Reconciler(advancer, audit, max_concurrent=4)
    completed = SignalProcessing.from_raw(
        signal_processing(
            status={
                "phase": "Failed",
                "failedPhase": "Enriching",
                "startTime": "2026-01-01T10:00:00Z",
                "completionTime": "2026-01-01T10:00:01Z",
                "failureInfo": {"error": "boom", "lastFailureTime": "2026-01-01T10:00:01Z"},
            }
        )
    )

    await reconciler.on_event(completed)
    await reconciler.on_event(completed)

    assert advancer.advanced == []  # nothing left to do
    # Handed over as re-sent (DataStorage is asked first), once: not as new events.
    assert audit.events == []
    assert [e.event_id for e in audit.resent] == [e.event_id for e in audit_trail(completed)]
    assert len(audit.resent) == 3


async def test_a_transient_failure_is_retried_on_its_timer_and_not_on_its_own_echo() -> None:
    cluster = Cluster()
    sp = cluster.add_signal_processing(signal_processing(status={"phase": "Enriching"}))
    advancer = Advancer(cluster, retry_delay=0.01)
    reconciler = Reconciler(advancer, Audit(), max_concurrent=4)

    await reconciler.on_event(sp)
    await reconciler.on_event(sp)  # the echo of recording the failure: a retry is already scheduled
    assert advancer.advanced == [Phase.ENRICHING]

    await asyncio.wait_for(advancer.fetched.wait(), timeout=10)
    for _ in range(100):  # the retry task runs on the loop; let it finish
        if len(advancer.advanced) == 2:
            break
        await asyncio.sleep(0)
    assert advancer.advanced == [Phase.ENRICHING, Phase.ENRICHING]
    await reconciler.close()


async def test_a_deleted_sp_has_its_retry_cancelled() -> None:
    cluster = Cluster()
    sp = cluster.add_signal_processing(signal_processing(status={"phase": "Enriching"}))
    advancer = Advancer(cluster, retry_delay=0.05)
    reconciler = Reconciler(advancer, Audit(), max_concurrent=4)

    await reconciler.on_event(sp)
    reconciler.forget(sp.metadata.uid)
    await reconciler.on_event(sp)  # no retry scheduled any more: a new event is processed at once

    assert advancer.advanced == [Phase.ENRICHING, Phase.ENRICHING]
    assert not advancer.fetched.is_set()
    await reconciler.close()


async def test_no_more_than_the_configured_number_of_sps_take_their_steps_at_once() -> None:
    gate = asyncio.Event()
    advancer = Advancer(Cluster(), gate=gate)
    reconciler = Reconciler(advancer, Audit(), max_concurrent=2)
    burst = []
    for n in range(5):
        raw = signal_processing()
        raw["metadata"] |= {"name": f"sp-{n}", "uid": f"uid-{n}"}
        burst.append(SignalProcessing.from_raw(raw))

    handlers = [asyncio.create_task(reconciler.on_event(sp)) for sp in burst]
    for _ in range(100):  # let every handler reach the pipeline or the wait for a slot
        await asyncio.sleep(0)
    assert advancer.inside == 2
    gate.set()
    await asyncio.gather(*handlers)

    assert advancer.most_inside == 2
    assert len(advancer.advanced) == 5


async def test_an_unexpected_error_schedules_a_retry_instead_of_escaping_to_kopf() -> None:
    advancer = Advancer(Cluster(), bug=RuntimeError("a bug"))
    reconciler = Reconciler(advancer, Audit(), max_concurrent=4)
    sp = at_phase("")

    await reconciler.on_event(sp)  # kopf would log it and never hand the SP over again
    await reconciler.on_event(sp)  # its echo finds the retry scheduled

    assert advancer.advanced == [Phase.NEW]
    await reconciler.close()


async def test_an_sp_of_a_shard_another_replica_owns_is_left_alone_retry_included() -> None:
    cluster = Cluster()
    sp = cluster.add_signal_processing(signal_processing(status={"phase": "Enriching"}))
    owned = {"uid-1": True}
    advancer = Advancer(cluster, retry_delay=0.01)
    reconciler = Reconciler(advancer, Audit(), max_concurrent=4, owns=lambda s: owned[s.metadata.uid])

    await reconciler.on_event(sp)  # a transient failure: a retry is scheduled
    owned["uid-1"] = False  # the shard went to another replica meanwhile
    await asyncio.wait_for(advancer.fetched.wait(), timeout=10)
    for _ in range(100):  # the retry task runs on the loop; let it finish
        await asyncio.sleep(0)
    await reconciler.on_event(sp)

    assert advancer.advanced == [Phase.ENRICHING]
    await reconciler.close()


async def test_adopting_a_shard_processes_its_unfinished_sps_and_re_sends_every_trail() -> None:
    advancer, audit = Advancer(Cluster()), Audit()
    reconciler = Reconciler(advancer, audit, max_concurrent=4, owns=lambda s: s.metadata.namespace != "other")
    listed = []
    for n, (phase, namespace) in enumerate(
        [("", "shop"), ("Classifying", "shop"), ("Completed", "shop"), ("Failed", "shop"), ("", "other")]
    ):
        raw = signal_processing(status={"phase": phase, "startTime": "2026-01-01T10:00:00Z"} if phase else {})
        raw["metadata"] |= {"name": f"sp-{n}", "uid": f"uid-{n}", "namespace": namespace}
        listed.append(SignalProcessing.from_raw(raw))

    # A replica killed just after finishing an SP may not have delivered its last events: the finished
    # ones' trails are re-sent too (DataStorage is asked first), those of another shard are not.
    trails = [event for sp in listed[:4] for event in audit_trail(sp)]
    unfinished = reconciler.adopt(listed)
    for _ in range(100):  # the adopted SPs are processed in the background
        if len(advancer.advanced) == unfinished and len(audit.resent) == len(trails):
            break
        await asyncio.sleep(0)

    assert unfinished == 2
    assert sorted(advancer.advanced, key=lambda phase: phase.order) == [Phase.NEW, Phase.CLASSIFYING]
    assert {event.event_id for event in audit.resent} == {event.event_id for event in trails}
    await reconciler.close()


async def test_a_required_rule_answering_past_its_time_limit_is_retried_not_failed() -> None:
    # A busy node or a throttled OPA sidecar looks just like a slow rule: no SP fails for good on it.
    overrun = "data.signalprocessing.priority took 0.183 s, over its 0.1 s time limit"
    world = World(Policies(priority=PolicyTimeLimitExceeded(overrun)))
    sp = world.add()

    with pytest.raises(RetryLater):
        await world.pipeline.advance(sp)

    stored = world.stored()
    assert stored.phase is Phase.CLASSIFYING
    assert stored.status.failure_info == FailureInfo(
        error=overrun, consecutive_failures=1, last_failure_time=NOW
    )
