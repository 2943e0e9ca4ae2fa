"""Prometheus metrics driven by real SignalProcessings: exact deltas per phase, enrichment and audit delivery.

The worker's operator is not used here: xdist runs one spec at a time per
worker, but the operator may still be working for the previous spec (retry
timers of transient-error specs, Events and audit batches in the background),
which would leak into a delta. The module runs a controller of its own,
watched namespaces outside the worker's glob, and every spec waits until its
deltas are exact and the controller holds no undelivered audit event, so the
next spec starts from a quiet controller.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from devstack.state import StackState
from test.integration.polling import eventually
from test.integration.signalprocessing.conftest import pod
from test.integration.signalprocessing.own_controller import OwnController, own_controller
from test.integration.signalprocessing.support import (
    create_signals,
    scrape,
    wait_for_phase,
    wait_until_delivered,
)

Sample = tuple[str, frozenset[tuple[str, str]]]

PROCESSING = "signalprocessing_processing_total"
COMPLETED_COUNT = "signalprocessing_processing_duration_seconds_count"
ENRICHMENT = "signalprocessing_enrichment_total"
ENRICHMENT_COUNT = "signalprocessing_enrichment_duration_seconds_count"
ENRICHMENT_ERRORS = "signalprocessing_enrichment_errors_total"
DELIVERED = "audit_events_delivered_total"
STEPS = ("new", "pending", "enriching", "classifying", "categorizing")
SUCCESS_TRAIL_EVENTS = 8  # enrichment.completed, 4 phase.transition, signal.processed, 2 classifications
FAILURE_TRAIL_EVENTS = 3  # phase.transition Pending->Enriching, error.occurred, phase.transition ->Failed
PRODUCTION = {"kubernaut.ai/environment": "production"}


def sample(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


class MetricDeltas:
    """Changes of the controller's counters since a baseline.

    A counter child never incremented is absent from /metrics and counts as 0 (`Scrape.counter`),
    but an undeclared counter or a label name its series do not have fails the spec.
    """

    def __init__(self, metrics_url: str) -> None:
        self._url = metrics_url
        self._baseline = scrape(metrics_url)

    def now(self, wanted: dict[Sample, float]) -> dict[Sample, float]:
        current = scrape(self._url)
        return {
            key: current.counter(key[0], **dict(key[1])) - self._baseline.counter(key[0], **dict(key[1]))
            for key in wanted
        }

    def wait_for(self, wanted: dict[Sample, float], timeout: float = 30.0) -> None:
        """Polls until every delta equals `wanted`, waits for audit delivery to settle, checks again."""
        eventually(
            self._matches(wanted), timeout=timeout, message="metric deltas did not reach the expected values"
        )
        wait_until_delivered(self._url, timeout)
        assert self._matches(wanted)()

    def _matches(self, wanted: dict[Sample, float]) -> Callable[[], bool]:
        def probe() -> bool:
            off = {
                _show(key): (value, wanted[key])
                for key, value in self.now(wanted).items()
                if value != wanted[key]
            }
            assert not off, f"(delta, expected) differ: {off}"
            return True

        return probe


def _show(key: Sample) -> str:
    name, labels = key
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels)) + "}"


@pytest.fixture(scope="module")
def metrics_controller(
    stack: StackState,
    api_client: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
) -> Iterator[OwnController]:
    with own_controller(stack, api_client, tmp_path_factory.mktemp("metrics-controller"), worker_id) as own:
        yield own


def processing(result: str, count: float, *, phases: tuple[str, ...] = STEPS) -> dict[Sample, float]:
    return {sample(PROCESSING, phase=phase, result=result): count for phase in phases}


@pytest.mark.br("BR-SP-008")
def test_successful_lifecycle_counts_each_phase_step_once_per_signal(
    metrics_controller: OwnController, custom_objects: client.CustomObjectsApi
) -> None:
    namespace = metrics_controller.make_namespace(PRODUCTION)
    metrics_controller.core.create_namespaced_pod(namespace, pod("api"))
    deltas = MetricDeltas(metrics_controller.process.metrics_url)

    names = create_signals(custom_objects, namespace, 3, severity="warning", target_name="api")
    for name in names:
        wait_for_phase(custom_objects, namespace, name, "Completed")

    deltas.wait_for(
        {
            **processing("success", 3),
            **processing("failure", 0),
            sample(COMPLETED_COUNT, phase="completed"): 3,
            sample(ENRICHMENT, result="success"): 3,
            sample(ENRICHMENT, result="degraded"): 0,
            sample(ENRICHMENT, result="failure"): 0,
            sample(ENRICHMENT_COUNT, resource_kind="pod"): 3,
            sample(DELIVERED): 3 * SUCCESS_TRAIL_EVENTS,
        }
    )


@pytest.mark.br("BR-SP-001")
def test_missing_target_counts_as_degraded_enrichment_not_success(
    metrics_controller: OwnController, custom_objects: client.CustomObjectsApi
) -> None:
    namespace = metrics_controller.make_namespace({"kubernaut.ai/environment": "staging"})
    deltas = MetricDeltas(metrics_controller.process.metrics_url)

    (name,) = create_signals(custom_objects, namespace, 1, target_name="never-created")
    wait_for_phase(custom_objects, namespace, name, "Completed")

    deltas.wait_for(
        {
            **processing("success", 1),
            sample(ENRICHMENT, result="success"): 0,
            sample(ENRICHMENT, result="degraded"): 1,
            sample(ENRICHMENT_COUNT, resource_kind="pod"): 1,
            sample(COMPLETED_COUNT, phase="completed"): 1,
            sample(DELIVERED): SUCCESS_TRAIL_EVENTS,
        }
    )


@pytest.mark.br("BR-SP-008")
def test_fatal_enrichment_error_counts_one_failure_and_no_later_phase(
    metrics_controller: OwnController, custom_objects: client.CustomObjectsApi
) -> None:
    namespace = metrics_controller.make_namespace({"kubernaut.ai/environment": "development"})
    deltas = MetricDeltas(metrics_controller.process.metrics_url)

    (name,) = create_signals(custom_objects, namespace, 1, target_namespace=f"gone-{secrets.token_hex(3)}")
    wait_for_phase(custom_objects, namespace, name, "Failed")

    deltas.wait_for(
        {
            **processing("success", 1, phases=("new", "pending")),
            **processing("success", 0, phases=("enriching", "classifying", "categorizing")),
            sample(PROCESSING, phase="enriching", result="failure"): 1,
            sample(ENRICHMENT, result="failure"): 1,
            sample(ENRICHMENT_ERRORS, error_type="not_found"): 1,
            sample(ENRICHMENT_ERRORS, error_type="api_error"): 0,
            sample(ENRICHMENT_COUNT, resource_kind="pod"): 0,
            sample(COMPLETED_COUNT, phase="completed"): 1,
            sample(DELIVERED): FAILURE_TRAIL_EVENTS,
        }
    )
