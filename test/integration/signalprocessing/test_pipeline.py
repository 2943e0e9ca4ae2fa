"""The pipeline end to end: one SP from creation to its terminal phase, status and audit trail."""

from __future__ import annotations

import pytest
from kubernetes import client

from devstack.controller_process import ControllerProcess
from devstack.manifests import unique_rr_name
from devstack.state import StackState
from test.integration.polling import eventually
from test.integration.signalprocessing.conftest import pod
from test.integration.signalprocessing.support import (
    SUCCESS_TRAIL,
    SUCCESS_TRANSITIONS,
    condition,
    phase_transitions,
    process_signal,
    wait_for_audit_types,
    wait_for_exact_trail,
)


@pytest.mark.br("BR-SP-090")
def test_pod_signal_completes_with_exactly_one_audit_trail(
    stack: StackState,
    operator: ControllerProcess,
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    sp_namespace: str,
) -> None:
    core.create_namespaced_pod(sp_namespace, pod("api"))
    rr = unique_rr_name()

    done = process_signal(custom_objects, sp_namespace, rr_name=rr, target_name="api")

    status = done["status"]
    assert status["phase"] == "Completed"
    assert status["environmentClassification"]["environment"] == "Production"
    assert status["priorityAssignment"]["priority"] == "P0"
    assert status["kubernetesContext"]["pod"]["labels"] == {"app": "api"}
    assert [c["type"] for c in status["conditions"] if c["status"] == "True"] == [
        "EnrichmentComplete",
        "ClassificationComplete",
        "CategorizationComplete",
        "ProcessingComplete",
        "Ready",
    ]
    classified = status["signalClassification"]
    assert (classified["severity"], len(classified["policyHash"])) == ("critical", 64)
    wait_for_exact_trail(stack.datastorage_url, operator.metrics_url, rr, SUCCESS_TRAIL)
    assert sorted(phase_transitions(stack.datastorage_url, rr)) == sorted(SUCCESS_TRANSITIONS)


@pytest.mark.br("BR-SP-001")
def test_missing_target_namespace_fails_with_error_occurred(
    stack: StackState, custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    rr = unique_rr_name()

    failed = process_signal(
        custom_objects, sp_namespace, rr_name=rr, target_namespace="no-such-namespace-anywhere"
    )

    status = failed["status"]
    assert status["phase"] == "Failed"
    assert status["failedPhase"] == "Enriching"
    enrichment = condition(status, "EnrichmentComplete")
    assert (enrichment["status"], enrichment["reason"]) == ("False", "EnrichmentFailed")
    events = wait_for_audit_types(stack.datastorage_url, rr, {"signalprocessing.error.occurred": 1})
    error = next(e for e in events if e["event_type"] == "signalprocessing.error.occurred")
    assert error["event_outcome"] == "failure"
    assert error["event_data"]["phase"] == "Enriching"
    assert "no-such-namespace-anywhere" in error["event_data"]["error"]
    eventually(
        lambda: ("Enriching", "Failed") in phase_transitions(stack.datastorage_url, rr),
        message="phase.transition Enriching -> Failed was not audited",
    )
