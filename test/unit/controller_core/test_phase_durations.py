"""The processing duration a pass records: the time in each phase it leaves, and the total.

The pipeline runs against an in-memory API server whose target namespace is missing, so an SP
fails in Enriching after two phases of its own: enough to see what a pass measures itself and
what it has to take from the status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from controller import kube
from controller.audit_events import AuditEvent
from controller.backoff import RetryBackoff
from controller.caches import EnrichmentCaches
from controller.events import InvolvedObject
from controller.metrics import ControllerMetrics
from controller.pipeline import SIGNALPROCESSINGS, Pipeline
from controller.policies import ActivePolicies
from controller.signalmode import SignalModeMappings
from controller.signalprocessing import SignalProcessing

DURATION = "signalprocessing_processing_duration_seconds"
# Late in a second, so a duration taken from the status (whole seconds) would be 0.9 s too long.
FIRST_READ = datetime(2026, 1, 1, 10, 0, 0, 900000, tzinfo=UTC)


class Cluster:
    """An API server holding one SignalProcessing and nothing else: every other read finds nothing."""

    def __init__(self, sp: dict[str, Any]) -> None:
        self.sp = sp

    async def get(self, resource: kube.Resource, name: str, *, namespace: str | None = None) -> Any:
        return self.sp if resource == SIGNALPROCESSINGS else None

    async def list(self, resource: kube.Resource, *, namespace: str) -> list[Any]:
        return []

    async def patch_status(
        self, resource: kube.Resource, name: str, *, namespace: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        status = {**(self.sp.get("status") or {}), **patch["status"]}
        version = str(int(self.sp["metadata"]["resourceVersion"]) + 1)
        self.sp = self.sp | {"metadata": self.sp["metadata"] | {"resourceVersion": version}, "status": status}
        return self.sp


class Clock:
    """Moves 10 ms on every reading, as if each step took that long."""

    def __init__(self, start: datetime) -> None:
        self.now = start - timedelta(milliseconds=10)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)
        return self.now


class Ignored:
    """Takes the audit events and Kubernetes Events a pass emits, which these tests do not look at."""

    saturated = False

    def emit(self, event: AuditEvent) -> None:
        pass

    def resend(self, events: Sequence[AuditEvent]) -> None:
        pass

    def record(self, involved: InvolvedObject, **_: Any) -> None:
        pass


def signal_processing(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "SignalProcessing",
        "metadata": {
            "namespace": "shop",
            "name": "sp-1",
            "uid": "uid-1",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {
            "remediationRequestRef": {"name": "rr-1"},
            "signal": {
                "name": "HighMemoryUsage",
                "severity": "critical",
                "targetResource": {"kind": "Pod", "name": "web-1", "namespace": "gone"},
            },
        },
        "status": status,
    }


async def durations_of_a_pass(status: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Runs one pass over an SP with `status`; returns (count, sum) of each phase's duration series."""
    cluster, metrics = Cluster(signal_processing(status)), ControllerMetrics.create()
    pipeline = Pipeline(
        api=cluster,
        caches=EnrichmentCaches.create(),
        policies=cast(ActivePolicies, None),  # the SP fails before any policy is asked
        signal_modes=SignalModeMappings(),
        audit=Ignored(),
        events=Ignored(),
        metrics=metrics,
        deadline=timedelta(hours=1),
        backoff=RetryBackoff(),
        clock=Clock(FIRST_READ),
    )

    final = await pipeline.advance(SignalProcessing.from_raw(cluster.sp))

    assert (final.status.phase, final.status.failed_phase) == ("Failed", "Enriching")
    [family] = metrics.processing_duration.collect()
    counts = {s.labels["phase"]: s.value for s in family.samples if s.name == f"{DURATION}_count"}
    sums = {s.labels["phase"]: s.value for s in family.samples if s.name == f"{DURATION}_sum"}
    return {phase: (counts[phase], sums[phase]) for phase in counts}


async def test_a_pass_times_the_phases_it_entered_itself_exactly() -> None:
    observed = await durations_of_a_pass({})

    assert sorted(observed) == ["completed", "enriching", "pending"]  # New has no duration of its own
    assert {phase: count for phase, (count, _) in observed.items()} == {
        "completed": 1,
        "enriching": 1,
        "pending": 1,
    }
    # The clock reads .90 (New step), .91 (its write: Pending begins), .92 (Pending step), .93 (its
    # write: Enriching begins), .94 (Enriching step), .95 (its reads), .96 (the failure's write).
    assert observed["pending"][1] == pytest.approx(0.02)
    assert observed["enriching"][1] == pytest.approx(0.03)
    # The total runs from startTime, which the status keeps in whole seconds: 10:00:00.
    assert observed["completed"][1] == pytest.approx(0.96)


async def test_a_pass_that_finds_the_sp_mid_phase_times_it_from_the_status() -> None:
    # Enriching since 10:00:00 by the status, as after a transient error; this pass's failure write
    # lands at .92 (after the step's reading at .90 and its reads' at .91).
    observed = await durations_of_a_pass({"phase": "Enriching", "startTime": "2026-01-01T10:00:00Z"})

    assert sorted(observed) == ["completed", "enriching"]
    assert observed["enriching"] == pytest.approx((1, 0.92))  # (count, sum)
