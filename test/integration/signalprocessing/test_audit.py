"""The audit trail in DataStorage (BR-SP-090): what each event says, exact counts, no loss on restarts.

Every spec waits for the exact trail of its own SignalProcessings (by
correlation id = remediationRequestRef.name), failing at once on a duplicate,
and counts it again once the controller holds no undelivered event (so a late
duplicate cannot slip in after the check), then checks the event contents
against the contract. The restart specs run a
controller of their own, and for the DataStorage outage a DataStorage of
their own on the shared PostgreSQL, so the shared services are never
disturbed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devstack.controller_process import ControllerProcess
from devstack.datastorage_process import DataStorageProcess
from devstack.manifests import GROUP, SP_PLURAL, VERSION
from devstack.state import StackState
from test.integration.polling import eventually
from test.integration.signalprocessing.conftest import (
    NamespaceFactory,
    create_pod_of_deployment,
    pod,
    workload,
)
from test.integration.signalprocessing.own_controller import own_controller
from test.integration.signalprocessing.support import (
    SHIPPED_POLICY,
    SUCCESS_TRAIL,
    SUCCESS_TRANSITIONS,
    audit_events,
    create_signals,
    metric_value,
    process_signal,
    wait_for_exact_trail,
    wait_for_phase,
)

ENRICHMENT = "signalprocessing.enrichment.completed"
TRANSITION = "signalprocessing.phase.transition"
PROCESSED = "signalprocessing.signal.processed"
DECISION = "signalprocessing.classification.decision"
BUSINESS = "signalprocessing.business.classified"
ERROR = "signalprocessing.error.occurred"

ENRICHMENT_FAILURE_TRAIL = {TRANSITION: 2, ERROR: 1}
SHIPPED_POLICY_HASH = hashlib.sha256(SHIPPED_POLICY.encode()).hexdigest()
# Phases of an SP whose trail was partly written: a kill then interrupts it mid-pipeline.
MID_PIPELINE = {"Enriching", "Classifying", "Categorizing"}
PRODUCTION = {"kubernaut.ai/environment": "production"}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return dict(found)


def one_of(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    (event,) = [e for e in events if e["event_type"] == event_type]
    return event


def transitions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted(
        (e["event_data"]["from_phase"], e["event_data"]["to_phase"])
        for e in events
        if e["event_type"] == TRANSITION
    )


def assert_common_fields(events: list[dict[str, Any]], sp: dict[str, Any]) -> None:
    """The fields every event of one SP shares (reference 6.1)."""
    for event in events:
        assert event["version"] == "1.0"
        assert event["event_category"] == "signalprocessing"
        assert (event["actor_type"], event["actor_id"]) == ("service", "signalprocessing-controller")
        assert (event["resource_type"], event["resource_id"]) == ("SignalProcessing", sp["metadata"]["name"])
        assert event["correlation_id"] == sp["spec"]["remediationRequestRef"]["name"]
        assert event["namespace"] == sp["metadata"]["namespace"]


def assert_success_trail(datastorage_url: str, metrics_url: str, sp: dict[str, Any]) -> list[dict[str, Any]]:
    rr = sp["spec"]["remediationRequestRef"]["name"]
    events = wait_for_exact_trail(datastorage_url, metrics_url, rr, SUCCESS_TRAIL)
    assert_common_fields(events, sp)
    assert transitions(events) == sorted(SUCCESS_TRANSITIONS)
    return events


# --- what each event says ---------------------------------------------------------------------


@pytest.mark.br("BR-SP-090")
def test_signal_processed_reports_the_classification_of_a_completed_signal(
    stack: StackState,
    operator: ControllerProcess,
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    sp_namespace: str,
) -> None:
    core.create_namespaced_pod(sp_namespace, pod("payment"))
    done = process_signal(custom_objects, sp_namespace, "Completed", target_name="payment")

    events = assert_success_trail(stack.datastorage_url, operator.metrics_url, done)

    processed = one_of(events, PROCESSED)
    assert (processed["event_action"], processed["event_outcome"]) == ("processed", "success")
    data = processed["event_data"]
    assert data["phase"] == "Completed"
    assert (data["signal"], data["severity"]) == ("HighMemoryUsage", "critical")
    assert (data["environment"], data["priority"]) == ("Production", "P0")
    assert data["environment_source"] == done["status"]["environmentClassification"]["source"]
    assert data["priority_source"] == done["status"]["priorityAssignment"]["source"]
    assert (data["criticality"], data["sla_requirement"]) == ("High", "Gold")
    assert (data["has_owner_chain"], data["owner_chain_length"]) == (False, 0)
    assert (data["degraded_mode"], data["has_pdb"], data["has_hpa"]) == (False, False, False)
    assert "error" not in data


@pytest.mark.br("BR-SP-090")
def test_classification_decision_carries_results_severities_and_the_policy_hash(
    stack: StackState,
    custom_objects: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace({"kubernaut.ai/environment": "staging"})
    apps.create_namespaced_deployment(namespace, workload("checkout", {"app": "checkout"}))
    done = process_signal(
        custom_objects,
        namespace,
        "Completed",
        severity="Sev3",
        target_kind="Deployment",
        target_name="checkout",
    )

    decision = one_of(assert_success_trail(stack.datastorage_url, operator.metrics_url, done), DECISION)

    assert (decision["event_action"], decision["event_outcome"]) == ("classification", "success")
    data = decision["event_data"]
    assert (data["environment"], data["priority"]) == ("Staging", "P2")
    assert (data["criticality"], data["sla_requirement"]) == ("Medium", "Silver")
    assert data["environment_source"] == done["status"]["environmentClassification"]["source"]
    assert data["priority_source"] == done["status"]["priorityAssignment"]["source"]
    assert (data["signal"], data["severity"]) == ("HighMemoryUsage", "warning")
    assert (data["external_severity"], data["normalized_severity"], data["determination_source"]) == (
        "Sev3",
        "warning",
        "rego-policy",
    )
    classified = done["status"]["signalClassification"]
    assert classified["severity"] == "warning"
    assert data["policy_hash"] == classified["policyHash"] == SHIPPED_POLICY_HASH


@pytest.mark.br("BR-SP-002")
def test_business_classified_carries_unit_criticality_and_sla(
    stack: StackState,
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace({**PRODUCTION, "kubernaut.ai/team": "payments"})
    core.create_namespaced_pod(namespace, pod("ledger"))
    done = process_signal(custom_objects, namespace, "Completed", target_name="ledger")

    business = one_of(assert_success_trail(stack.datastorage_url, operator.metrics_url, done), BUSINESS)

    assert (business["event_action"], business["event_outcome"]) == ("classification", "success")
    data = business["event_data"]
    assert (data["business_unit"], data["criticality"], data["sla_requirement"]) == (
        "payments",
        "High",
        "Gold",
    )
    assert (data["signal"], data["severity"]) == ("HighMemoryUsage", "critical")
    assert data["policy_hash"] == done["status"]["signalClassification"]["policyHash"]
    assert "service_owner" not in data


@pytest.mark.br("BR-SP-100")
def test_enrichment_completed_describes_the_context_and_owner_chain(
    stack: StackState,
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace({"kubernaut.ai/environment": "development"})
    create_pod_of_deployment(
        core, apps, namespace, "worker-7c9d-x1", replica_set="worker-7c9d", deployment="worker"
    )
    done = process_signal(
        custom_objects, namespace, "Completed", severity="info", target_name="worker-7c9d-x1"
    )

    enrichment = one_of(assert_success_trail(stack.datastorage_url, operator.metrics_url, done), ENRICHMENT)

    assert (enrichment["event_action"], enrichment["event_outcome"]) == ("enrichment", "success")
    data = enrichment["event_data"]
    assert (data["has_namespace"], data["has_pod"], data["has_deployment"]) == (True, True, False)
    assert (data["owner_chain_length"], data["degraded_mode"]) == (2, False)
    assert [o["kind"] for o in done["status"]["kubernetesContext"]["ownerChain"]] == [
        "ReplicaSet",
        "Deployment",
    ]
    # Rebuilt from the status after a restart, the duration spans the step's whole-second timestamps
    # (startTime to EnrichmentComplete): 0 is right when both fall in the same second.
    began = datetime.fromisoformat(done["status"]["startTime"])
    enriched = datetime.fromisoformat(condition(done["status"], "EnrichmentComplete")["lastTransitionTime"])
    assert data["duration_ms"] == (enriched - began) // timedelta(milliseconds=1)
    assert enrichment["duration_ms"] == data["duration_ms"]


@pytest.mark.br("BR-SP-090")
def test_each_phase_change_is_audited_once_in_order(
    stack: StackState,
    operator: ControllerProcess,
    custom_objects: client.CustomObjectsApi,
    sp_namespace: str,
) -> None:
    done = process_signal(custom_objects, sp_namespace, "Completed", severity="warning", target_name="absent")

    events = assert_success_trail(stack.datastorage_url, operator.metrics_url, done)

    changes = {
        (e["event_data"]["from_phase"], e["event_data"]["to_phase"]): e
        for e in events
        if e["event_type"] == TRANSITION
    }
    assert sorted(changes) == sorted(SUCCESS_TRANSITIONS)
    # Timestamps come from the status (whole seconds), so later steps may share one, never go back.
    stamps = [changes[step]["event_timestamp"] for step in SUCCESS_TRANSITIONS]
    assert stamps == sorted(stamps)
    assert stamps[0][:19] == done["status"]["startTime"][:19]  # Pending -> Enriching is the start
    for change in changes.values():
        assert (change["event_action"], change["event_outcome"]) == ("phase_transition", "success")
        assert change["event_data"]["signal"] == "HighMemoryUsage"


@pytest.mark.br("BR-SP-001")
def test_missing_target_pod_is_audited_as_degraded_success_without_error(
    stack: StackState,
    operator: ControllerProcess,
    custom_objects: client.CustomObjectsApi,
    sp_namespace: str,
) -> None:
    done = process_signal(custom_objects, sp_namespace, "Completed", target_name="non-existent-pod")

    events = assert_success_trail(stack.datastorage_url, operator.metrics_url, done)

    enrichment = one_of(events, ENRICHMENT)["event_data"]
    assert (enrichment["has_namespace"], enrichment["has_pod"], enrichment["degraded_mode"]) == (
        True,
        False,
        True,
    )
    processed = one_of(events, PROCESSED)
    assert processed["event_outcome"] == "success"
    assert processed["event_data"]["degraded_mode"] is True


@pytest.mark.br("BR-SP-090")
def test_fatal_enrichment_error_is_audited_exactly_once_with_its_details(
    stack: StackState, operator: ControllerProcess, custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    missing = f"gone-{secrets.token_hex(3)}"
    failed = process_signal(custom_objects, sp_namespace, "Failed", target_namespace=missing)

    rr = failed["spec"]["remediationRequestRef"]["name"]
    events = wait_for_exact_trail(stack.datastorage_url, operator.metrics_url, rr, ENRICHMENT_FAILURE_TRAIL)

    assert_common_fields(events, failed)
    error = one_of(events, ERROR)
    assert (error["event_action"], error["event_outcome"]) == ("error", "failure")
    assert error["event_data"]["phase"] == "Enriching"
    assert missing in error["event_data"]["error"]
    assert error["event_data"]["signal"] == "HighMemoryUsage"
    assert transitions(events) == [("Enriching", "Failed"), ("Pending", "Enriching")]


@pytest.mark.br("BR-SP-090")
def test_a_burst_of_signals_gets_one_exact_trail_each(
    stack: StackState,
    operator: ControllerProcess,
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    sp_namespace: str,
) -> None:
    core.create_namespaced_pod(sp_namespace, pod("api"))
    names = create_signals(custom_objects, sp_namespace, 12, target_name="api")
    done = [wait_for_phase(custom_objects, sp_namespace, name, "Completed") for name in names]

    for sp in done:
        assert_success_trail(stack.datastorage_url, operator.metrics_url, sp)


# --- no loss, no duplicates across restarts ----------------------------------------------------


@pytest.fixture
def private_datastorage(stack: StackState, tmp_path: Path) -> Iterator[DataStorageProcess]:
    """A DataStorage of this spec's own on the shared database, free to be stopped and restarted."""
    process = DataStorageProcess(
        database_url=stack.database_url, redis_url=stack.redis_url, log_path=tmp_path / "datastorage.log"
    )
    with process:
        yield process


@pytest.mark.br("BR-SP-090")
def test_no_event_is_lost_while_datastorage_is_down(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    private_datastorage: DataStorageProcess,
    tmp_path: Path,
    worker_id: str,
) -> None:
    with own_controller(
        stack, api_client, tmp_path, worker_id, DATA_STORAGE_URL=private_datastorage.url
    ) as own:
        namespace = own.make_namespace(PRODUCTION)
        own.core.create_namespaced_pod(namespace, pod("api"))
        private_datastorage.stop()

        names = create_signals(custom_objects, namespace, 6, target_name="api")
        done = [wait_for_phase(custom_objects, namespace, name, "Completed") for name in names]
        rrs = [sp["spec"]["remediationRequestRef"]["name"] for sp in done]
        assert all(audit_events(stack.datastorage_url, rr) == [] for rr in rrs), "delivered while down?"
        eventually(
            lambda: metric_value(own.process.metrics_url, "audit_events_retried_total") > 0,
            message="the controller never tried to deliver while DataStorage was down",
        )
        # The last step's events are queued right after its write, which the spec may see first.
        eventually(
            lambda: (
                metric_value(own.process.metrics_url, "audit_events_pending")
                == 6 * sum(SUCCESS_TRAIL.values())
            ),
            message="the controller does not hold every event of the 6 trails while DataStorage is down",
        )

        private_datastorage.start()

        for sp in done:
            assert_success_trail(stack.datastorage_url, own.process.metrics_url, sp)


@pytest.mark.br("BR-SP-090")
def test_trails_held_in_memory_survive_a_controller_crash_without_duplicates(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    # A flush interval far longer than the spec keeps every event in the controller's memory until the crash.
    with own_controller(
        stack, api_client, tmp_path, worker_id, AUDIT_FLUSH_INTERVAL="3600", AUDIT_BATCH_SIZE="1000"
    ) as own:
        namespace = own.make_namespace(PRODUCTION)
        own.core.create_namespaced_pod(namespace, pod("api"))
        names = create_signals(custom_objects, namespace, 6, target_name="api")
        done = [wait_for_phase(custom_objects, namespace, name, "Completed") for name in names]
        rrs = [sp["spec"]["remediationRequestRef"]["name"] for sp in done]

        own.process.kill()
        assert all(audit_events(stack.datastorage_url, rr) == [] for rr in rrs), "delivered before the crash?"

        with own.replacement(AUDIT_FLUSH_INTERVAL="0.2", AUDIT_BATCH_SIZE="100") as restarted:
            for sp in done:
                assert_success_trail(stack.datastorage_url, restarted.metrics_url, sp)


@pytest.mark.br("BR-SP-090")
def test_a_restart_sends_none_of_the_trails_datastorage_already_has(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    with own_controller(stack, api_client, tmp_path, worker_id) as own:
        namespace = own.make_namespace(PRODUCTION)
        own.core.create_namespaced_pod(namespace, pod("api"))
        names = create_signals(custom_objects, namespace, 6, target_name="api")
        done = [wait_for_phase(custom_objects, namespace, name, "Completed") for name in names]
        for sp in done:
            assert_success_trail(stack.datastorage_url, own.process.metrics_url, sp)
        own.process.kill()

        with own.replacement() as restarted:
            # It meets every SP again and asks DataStorage about each trail instead of sending it.
            trails = 6 * sum(SUCCESS_TRAIL.values())
            eventually(
                lambda: metric_value(restarted.metrics_url, "audit_events_already_stored_total") == trails,
                message="the restarted controller did not find every delivered trail event in DataStorage",
            )
            assert metric_value(restarted.metrics_url, "audit_events_delivered_total") == 0
            assert metric_value(restarted.metrics_url, "audit_events_pending") == 0
            for sp in done:
                assert_success_trail(stack.datastorage_url, restarted.metrics_url, sp)


@pytest.mark.br("BR-SP-090")
def test_a_controller_killed_mid_burst_leaves_exact_trails_after_restart(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    with own_controller(stack, api_client, tmp_path, worker_id) as own:
        namespace = own.make_namespace(PRODUCTION)
        own.core.create_namespaced_pod(namespace, pod("api"))
        # The burst comes in two waves: the first is done when the kill lands, the second is in flight.
        finished = create_signals(custom_objects, namespace, 8, target_name="api")
        for name in finished:
            wait_for_phase(custom_objects, namespace, name, "Completed")
        # Without its OPA the controller cannot evaluate the custom labels while enriching, so the
        # second wave stays mid-pipeline, retrying, however fast the machine: the kill lands there.
        own.opa.stop()
        in_flight = create_signals(custom_objects, namespace, 8, target_name="api")

        def all_retrying_mid_pipeline() -> dict[str, dict[str, Any]] | None:
            statuses = statuses_in(custom_objects, namespace)
            retrying = [
                name
                for name in in_flight
                if statuses.get(name, {}).get("phase") in MID_PIPELINE
                and (statuses[name].get("failureInfo") or {}).get("consecutiveFailures")
            ]
            return statuses if retrying == in_flight else None

        eventually(all_retrying_mid_pipeline, message="the second wave did not start retrying mid-pipeline")
        own.process.kill()

        at_kill = phases_in(custom_objects, namespace)
        interrupted = [name for name in in_flight if at_kill[name] in MID_PIPELINE]
        assert interrupted == in_flight, f"the kill did not land mid-pipeline; phases at the kill: {at_kill}"
        names = finished + in_flight

        own.opa.start()  # on its reserved port, where the replacement expects it
        with own.replacement() as restarted:
            done = [wait_for_phase(custom_objects, namespace, name, "Completed") for name in names]
            for sp in done:
                assert_success_trail(stack.datastorage_url, restarted.metrics_url, sp)


# --- every SignalProcessing of a namespace at once -------------------------------------------------


def statuses_in(api: client.CustomObjectsApi, namespace: str) -> dict[str, dict[str, Any]]:
    """The status of every SignalProcessing in `namespace`, read in one list call."""
    listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL)["items"]
    return {sp["metadata"]["name"]: dict(sp.get("status") or {}) for sp in listed}


def phases_in(api: client.CustomObjectsApi, namespace: str) -> dict[str, str]:
    """The phase of every SignalProcessing in `namespace`, read in one list call."""
    return {name: str(status.get("phase", "")) for name, status in statuses_in(api, namespace).items()}
