"""The reconciler against a running controller: what one SP's status says once the pipeline is done.

Each spec creates the cluster objects a signal is about (a target of each kind,
owners, protections, a parent RemediationRequest), creates one SignalProcessing
in a namespace the worker's controller watches, waits for its terminal phase
and reads the result from the status: classification, the Kubernetes context,
detected and custom labels, the recovery context, conditions, and the
transient-failure fields. The audit trail is read only where it proves that a
phase was written exactly once.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devstack.controller_process import ControllerProcess
from devstack.manifests import (
    DELETE,
    GROUP,
    RR_PLURAL,
    SP_PLURAL,
    VERSION,
    signal_processing,
    unique_rr_name,
    with_change,
)
from devstack.state import StackState
from test.integration.conftest import request_deletion
from test.integration.signalprocessing.conftest import (
    NamespaceFactory,
    controller_ref,
    create_pod_of_deployment,
    pod,
    pod_template,
    workload,
)
from test.integration.signalprocessing.support import (
    SUCCESS_TRAIL,
    SUCCESS_TRANSITIONS,
    business_fields,
    completed_status,
    condition,
    create_sp,
    get_sp,
    phase_transitions,
    process_signal,
    wait_for_exact_trail,
    wait_for_phase,
)

CONDITION_TYPES = [
    "EnrichmentComplete",
    "ClassificationComplete",
    "CategorizationComplete",
    "ProcessingComplete",
    "Ready",
]
# Sections of status.kubernetesContext that describe the target itself (one per detailed kind).
TARGET_SECTIONS = {"pod", "deployment", "statefulSet", "daemonSet", "replicaSet", "service", "node"}
_GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+)s$")


# --- Fixtures and builders -----------------------------------------------------------------------


@pytest.fixture
def batch(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def nodes(core: client.CoreV1Api) -> Iterator[Callable[[dict[str, str]], str]]:
    """Creates Nodes (cluster-scoped, so named uniquely) and deletes them afterwards."""
    created: list[str] = []

    def make(labels: dict[str, str]) -> str:
        name = f"node-{secrets.token_hex(4)}"
        core.create_node({"metadata": {"name": name, "labels": labels}})
        created.append(name)
        return name

    yield make
    request_deletion(core.delete_node, created)


def daemon_set(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": pod_template(labels)},
    }


def service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def go_duration_seconds(text: str) -> int:
    match = _GO_DURATION.match(text)
    assert match, f"not a whole-second Go duration: {text!r}"
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def create_remediation_request(
    api: client.CustomObjectsApi, namespace: str, name: str, status: dict[str, Any]
) -> None:
    """A parent RemediationRequest whose status is written through the status subresource."""
    api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        RR_PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RemediationRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"signalName": "HighMemoryUsage", "severity": "critical"},
        },
    )
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, RR_PLURAL, name, {"status": status})


# --- Classification through the pipeline (BR-SP-051, BR-SP-052, BR-SP-053, BR-SP-070) -----------


@pytest.mark.br("BR-SP-070")
@pytest.mark.parametrize(
    ("environment", "severity", "target", "priority", "policy_name"),
    [
        pytest.param("production", "critical", "Pod", "P0", "critical-production", id="production-pod-P0"),
        pytest.param("staging", "warning", "Deployment", "P2", "warning-staging", id="staging-deploy-P2"),
        pytest.param("development", "info", "Service", "P3", "info-development", id="dev-service-P3"),
    ],
)
def test_environment_and_severity_decide_the_priority(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    make_namespace: NamespaceFactory,
    operator: object,
    environment: str,
    severity: str,
    target: str,
    priority: str,
    policy_name: str,
) -> None:
    namespace = make_namespace({"kubernaut.ai/environment": environment})
    if target == "Pod":
        core.create_namespaced_pod(namespace, pod("api-server"))
    elif target == "Deployment":
        apps.create_namespaced_deployment(namespace, workload("api-server", {"app": "api-server"}))
    # The Service is left uncreated: a missing target still classifies (degraded mode).

    status = completed_status(
        custom_objects, namespace, severity=severity, target_kind=target, target_name="api-server"
    )

    assert status["environmentClassification"]["environment"] == environment.capitalize()
    assert status["environmentClassification"]["source"] == "namespace-labels"
    assert status["priorityAssignment"]["priority"] == priority
    assert status["priorityAssignment"]["policyName"] == policy_name
    assert status["priorityAssignment"]["source"] == "rego-policy"
    assert status["kubernetesContext"]["degradedMode"] is (target == "Service")


@pytest.mark.br("BR-SP-051")
def test_environment_label_is_read_case_insensitively_from_the_target_namespace(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    sp_namespace: str,
) -> None:
    target_namespace = make_namespace({"kubernaut.ai/environment": "Staging"}, prefix="target-")
    core.create_namespaced_pod(target_namespace, pod("web"))

    status = completed_status(
        custom_objects, sp_namespace, target_name="web", target_namespace=target_namespace
    )

    # The SP's own namespace says production; the target's namespace decides.
    assert status["environmentClassification"]["environment"] == "Staging"
    assert status["environmentClassification"]["source"] == "namespace-labels"
    assert status["priorityAssignment"]["priority"] == "P1"


@pytest.mark.br("BR-SP-052")
def test_a_staging_looking_namespace_name_without_label_is_not_classified_staging(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    sp_namespace: str,
) -> None:
    target_namespace = make_namespace(prefix="staging-app-")
    core.create_namespaced_pod(target_namespace, pod("web"))

    status = completed_status(
        custom_objects, sp_namespace, severity="warning", target_name="web", target_namespace=target_namespace
    )

    assert status["environmentClassification"]["environment"] == "Unknown"
    assert status["environmentClassification"]["source"] == "default"


@pytest.mark.br("BR-SP-053")
def test_unlabelled_namespace_is_unknown_and_gets_the_catch_all_priority(
    custom_objects: client.CustomObjectsApi, make_namespace: NamespaceFactory, operator: object
) -> None:
    namespace = make_namespace()

    status = completed_status(custom_objects, namespace)

    assert status["environmentClassification"]["environment"] == "Unknown"
    assert status["environmentClassification"]["source"] == "default"
    assert status["priorityAssignment"]["priority"] == "P2"
    assert status["priorityAssignment"]["policyName"] == "default-catch-all"
    assert status["businessClassification"]["criticality"] == "Medium"
    assert status["businessClassification"]["slaRequirement"] == "Bronze"


@pytest.mark.br("BR-SP-002")
def test_business_classification_comes_from_namespace_labels(
    custom_objects: client.CustomObjectsApi, make_namespace: NamespaceFactory, operator: object
) -> None:
    namespace = make_namespace(
        {
            "kubernaut.ai/environment": "production",
            "kubernaut.ai/business-unit": "payments",
            "kubernaut.ai/service-owner": "payments-team",
            "kubernaut.ai/criticality": "critical",
            "kubernaut.ai/sla-tier": "platinum",
        }
    )

    status = completed_status(custom_objects, namespace)

    assert business_fields(status) == ("payments", "payments-team", "Critical", "Platinum")


@pytest.mark.br("BR-SP-002")
def test_production_without_business_labels_gets_the_policy_defaults(
    custom_objects: client.CustomObjectsApi, make_namespace: NamespaceFactory, operator: object
) -> None:
    namespace = make_namespace({"kubernaut.ai/environment": "production", "kubernaut.ai/team": "checkout"})

    status = completed_status(custom_objects, namespace)

    business = status["businessClassification"]
    assert (business["businessUnit"], business["criticality"], business["slaRequirement"]) == (
        "checkout",
        "High",
        "Gold",
    )


# --- Kubernetes context per target kind (BR-SP-001) ----------------------------------------------


def _make_target(
    kind: str,
    namespace: str,
    labels: dict[str, str],
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    nodes: Callable[[dict[str, str]], str],
) -> str:
    name = f"{kind.lower()}-{secrets.token_hex(3)}"
    match kind:
        case "Pod":
            core.create_namespaced_pod(namespace, pod(name, labels=labels))
        case "Deployment":
            apps.create_namespaced_deployment(namespace, workload(name, labels))
        case "StatefulSet":
            apps.create_namespaced_stateful_set(namespace, workload(name, labels))
        case "DaemonSet":
            apps.create_namespaced_daemon_set(namespace, daemon_set(name, labels))
        case "ReplicaSet":
            apps.create_namespaced_replica_set(namespace, workload(name, labels))
        case "Service":
            core.create_namespaced_service(namespace, service(name, labels))
        case "Node":
            name = nodes(labels)
    return name


@pytest.mark.br("BR-SP-001")
@pytest.mark.parametrize(
    ("kind", "section"),
    [
        ("Pod", "pod"),
        ("Deployment", "deployment"),
        ("StatefulSet", "statefulSet"),
        ("DaemonSet", "daemonSet"),
        ("ReplicaSet", "replicaSet"),
        ("Service", "service"),
        ("Node", "node"),
    ],
)
def test_each_target_kind_fills_its_own_context_section(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    nodes: Callable[[dict[str, str]], str],
    sp_namespace: str,
    kind: str,
    section: str,
) -> None:
    labels = {"app": "checkout", "probe": secrets.token_hex(3)}
    name = _make_target(kind, sp_namespace, labels, core=core, apps=apps, nodes=nodes)

    status = completed_status(
        custom_objects,
        sp_namespace,
        target_kind=kind,
        target_name=name,
        target_namespace="" if kind == "Node" else sp_namespace,
    )

    context = status["kubernetesContext"]
    assert context["degradedMode"] is False
    assert TARGET_SECTIONS & set(context) == {section}
    assert context[section]["labels"] == labels
    # The same target, whatever its kind, as the policies see it.
    assert {key: context["workload"][key] for key in ("kind", "name", "labels")} == {
        "kind": kind,
        "name": name,
        "labels": labels,
    }
    assert condition(status, "EnrichmentComplete")["message"] == (
        f"K8s context enriched: {kind} {name}"
        if kind == "Node"
        else f"K8s context enriched: {kind} {sp_namespace}/{name}"
    )
    if kind == "Node":
        assert "namespace" not in context
    else:
        assert context["namespace"]["name"] == sp_namespace
        assert context["namespace"]["labels"]["kubernaut.ai/environment"] == "production"


@pytest.mark.br("BR-SP-001")
def test_unknown_target_kind_gets_the_namespace_only_without_degrading(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    status = completed_status(custom_objects, sp_namespace, target_kind="KafkaTopic", target_name="orders")

    context = status["kubernetesContext"]
    assert context["degradedMode"] is False
    assert not TARGET_SECTIONS & set(context)
    assert context["namespace"]["name"] == sp_namespace


@pytest.mark.br("BR-SP-001")
def test_missing_target_pod_completes_in_degraded_mode(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    status = completed_status(
        custom_objects,
        sp_namespace,
        target_name="non-existent-pod",
        labels={"alertname": "HighMemoryUsage", "pod": "non-existent-pod"},
    )

    context = status["kubernetesContext"]
    assert context["degradedMode"] is True
    assert "pod" not in context
    assert context["namespace"]["name"] == sp_namespace
    enrichment = condition(status, "EnrichmentComplete")
    assert (enrichment["status"], enrichment["reason"]) == ("True", "DegradedMode")
    assert enrichment["message"].startswith("Enrichment completed in degraded mode: Pod")
    assert status["environmentClassification"]["environment"] == "Production"


@pytest.mark.br("BR-SP-001")
def test_missing_target_node_completes_in_degraded_mode(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    status = completed_status(
        custom_objects,
        sp_namespace,
        target_kind="Node",
        target_name=f"gone-{secrets.token_hex(4)}",
        target_namespace="",
    )

    assert status["kubernetesContext"]["degradedMode"] is True
    assert "node" not in status["kubernetesContext"]


@pytest.mark.br("BR-SP-001")
def test_unknown_cluster_scoped_target_completes_in_degraded_mode_without_a_namespace(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    status = completed_status(
        custom_objects,
        sp_namespace,
        target_kind="ClusterIssuer",
        target_name="letsencrypt",
        target_namespace="",
    )

    context = status["kubernetesContext"]
    assert context["degradedMode"] is True
    assert "namespace" not in context
    assert context["workload"] == {"kind": "ClusterIssuer", "name": "letsencrypt"}
    assert status["environmentClassification"]["environment"] == "Unknown"  # no namespace labels


@pytest.mark.br("BR-SP-001")
def test_namespaced_target_without_a_namespace_fails_in_enriching_naming_the_field(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    status = process_signal(custom_objects, sp_namespace, target_kind="Deployment", target_namespace="")[
        "status"
    ]

    assert (status["phase"], status["failedPhase"]) == ("Failed", "Enriching")
    assert status["failureInfo"]["error"].startswith(
        "the target Deployment names no namespace, but Deployment is a namespaced kind"
    )
    assert "spec.signal.targetResource.namespace" in status["failureInfo"]["error"]
    assert condition(status, "EnrichmentComplete")["reason"] == "EnrichmentFailed"


# --- Owner chains (BR-SP-100) --------------------------------------------------------------------


@pytest.mark.br("BR-SP-100")
def test_owner_chain_of_a_pod_goes_through_its_replicaset_to_the_deployment(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    sp_namespace: str,
) -> None:
    create_pod_of_deployment(
        core, apps, sp_namespace, "ownerchain-6d4f-x1", replica_set="ownerchain-6d4f", deployment="ownerchain"
    )

    status = completed_status(custom_objects, sp_namespace, target_name="ownerchain-6d4f-x1")

    assert status["kubernetesContext"]["ownerChain"] == [
        {"namespace": sp_namespace, "kind": "ReplicaSet", "name": "ownerchain-6d4f"},
        {"namespace": sp_namespace, "kind": "Deployment", "name": "ownerchain"},
    ]


@pytest.mark.br("BR-SP-100")
def test_owner_chain_of_a_job_pod_reaches_its_cronjob(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    sp_namespace: str,
) -> None:
    template = {
        **pod_template({"app": "report"}),
        "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "registry.local/app:1"}]},
    }
    cron_job = batch.create_namespaced_cron_job(
        sp_namespace,
        {
            "metadata": {"name": "nightly-report"},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": template}}},
        },
    )
    job = batch.create_namespaced_job(
        sp_namespace,
        {
            "metadata": {
                "name": "nightly-report-290001",
                "ownerReferences": [controller_ref(cron_job)],
            },
            "spec": {"template": template},
        },
    )
    core.create_namespaced_pod(sp_namespace, pod("nightly-report-290001-abcde", owner=controller_ref(job)))

    status = completed_status(custom_objects, sp_namespace, target_name="nightly-report-290001-abcde")

    assert status["kubernetesContext"]["ownerChain"] == [
        {"namespace": sp_namespace, "kind": "Job", "name": "nightly-report-290001"},
        {"namespace": sp_namespace, "kind": "CronJob", "name": "nightly-report"},
    ]


@pytest.mark.br("BR-SP-100")
def test_owner_chain_stops_at_five_owners(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    sp_namespace: str,
) -> None:
    # Seven ReplicaSets, each controlled by the next: the pod's chain is cut after five.
    labels = {"app": "deep"}
    owner: Any = None
    for level in range(7, 0, -1):
        reference = controller_ref(owner) if owner is not None else None
        owner = apps.create_namespaced_replica_set(
            sp_namespace, workload(f"rs-{level}", labels, owner=reference)
        )
    core.create_namespaced_pod(sp_namespace, pod("deep-pod", labels=labels, owner=controller_ref(owner)))

    status = completed_status(custom_objects, sp_namespace, target_name="deep-pod")

    assert [entry["name"] for entry in status["kubernetesContext"]["ownerChain"]] == [
        "rs-1",
        "rs-2",
        "rs-3",
        "rs-4",
        "rs-5",
    ]


@pytest.mark.br("BR-SP-100")
def test_owner_references_without_the_controller_flag_are_not_followed(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    sp_namespace: str,
) -> None:
    labels = {"app": "loose"}
    deployment = apps.create_namespaced_deployment(sp_namespace, workload("loose", labels))
    core.create_namespaced_pod(
        sp_namespace,
        pod(
            "loose-pod",
            labels=labels,
            owner=controller_ref(deployment, controller=False),
        ),
    )

    status = completed_status(custom_objects, sp_namespace, target_name="loose-pod")

    assert status["kubernetesContext"]["degradedMode"] is False
    assert status["kubernetesContext"].get("ownerChain", []) == []


# --- Detected labels (BR-SP-101, BR-SP-103) ------------------------------------------------------


@pytest.mark.br("BR-SP-101")
def test_pdb_hpa_and_network_policy_around_a_pod_are_detected(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    api_client: client.ApiClient,
    sp_namespace: str,
) -> None:
    labels = {"app": "protected"}
    create_pod_of_deployment(
        core,
        apps,
        sp_namespace,
        "protected-5c9-aa",
        replica_set="protected-5c9",
        deployment="protected",
        labels=labels,
    )
    client.PolicyV1Api(api_client).create_namespaced_pod_disruption_budget(
        sp_namespace,
        {"metadata": {"name": "protected"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}},
    )
    client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
        sp_namespace,
        {
            "metadata": {"name": "protected"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "protected"},
                "minReplicas": 1,
                "maxReplicas": 10,
            },
        },
    )
    client.NetworkingV1Api(api_client).create_namespaced_network_policy(
        sp_namespace,
        {"metadata": {"name": "deny-ingress"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    )

    status = completed_status(custom_objects, sp_namespace, target_name="protected-5c9-aa")

    detected = status["kubernetesContext"]["detectedLabels"]
    assert (detected["hasPDB"], detected["hasHPA"], detected["networkIsolated"]) == (True, True, True)
    assert detected["isProduction"] is True
    assert "failedDetections" not in detected


@pytest.mark.br("BR-SP-101")
def test_helm_and_gitops_labels_of_the_workload_are_detected(
    custom_objects: client.CustomObjectsApi, apps: client.AppsV1Api, sp_namespace: str
) -> None:
    labels = {
        "app": "charted",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "charted-1.2.3",
        "argocd.argoproj.io/instance": "charted-prod",
    }
    apps.create_namespaced_deployment(sp_namespace, workload("charted", labels))

    status = completed_status(custom_objects, sp_namespace, target_kind="Deployment", target_name="charted")

    detected = status["kubernetesContext"]["detectedLabels"]
    assert (detected["helmManaged"], detected["gitOpsManaged"]) == (True, True)
    assert (detected["hasPDB"], detected["hasHPA"], detected["networkIsolated"]) == (False, False, False)


@pytest.mark.br("BR-SP-101")
def test_flux_annotated_namespace_marks_its_pods_gitops_managed(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    sp_namespace: str,
) -> None:
    target_namespace = make_namespace(prefix="flux-")
    core.patch_namespace(target_namespace, {"metadata": {"annotations": {"fluxcd.io/sync-status": "synced"}}})
    core.create_namespaced_pod(target_namespace, pod("reconciled"))

    status = completed_status(
        custom_objects, sp_namespace, target_name="reconciled", target_namespace=target_namespace
    )

    detected = status["kubernetesContext"]["detectedLabels"]
    assert detected["gitOpsManaged"] is True
    assert detected["helmManaged"] is False


@pytest.mark.br("BR-SP-103")
def test_bare_pod_has_every_detection_false_and_none_failed(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: object,
) -> None:
    namespace = make_namespace()
    core.create_namespaced_pod(namespace, pod("plain"))

    status = completed_status(custom_objects, namespace, target_name="plain")

    assert status["kubernetesContext"]["detectedLabels"] == {
        "gitOpsManaged": False,
        "hasPDB": False,
        "hasHPA": False,
        "helmManaged": False,
        "networkIsolated": False,
        "serviceMesh": False,
        "isProduction": False,
    }


# --- Custom labels (BR-SP-102) -------------------------------------------------------------------


@pytest.mark.br("BR-SP-102")
def test_custom_labels_come_from_the_rego_policy_over_namespace_labels(
    custom_objects: client.CustomObjectsApi, make_namespace: NamespaceFactory, operator: object
) -> None:
    namespace = make_namespace(
        {
            "kubernaut.ai/team": "platform",
            "kubernaut.ai/tier": "backend",
            "kubernaut.ai/cost-center": "cc-42",
            "unrelated": "ignored",
        }
    )

    status = completed_status(custom_objects, namespace)

    assert status["kubernetesContext"]["customLabels"] == {
        "team": ["platform"],
        "tier": ["backend"],
        "cost-center": ["cc-42"],
    }


@pytest.mark.br("BR-SP-102")
def test_namespace_without_kubernaut_labels_gets_no_custom_labels(
    custom_objects: client.CustomObjectsApi, make_namespace: NamespaceFactory, operator: object
) -> None:
    namespace = make_namespace({"team": "not-a-kubernaut-label"})

    status = completed_status(custom_objects, namespace)

    assert status["kubernetesContext"].get("customLabels", {}) == {}


# --- Recovery context from the parent RemediationRequest (BR-SP-003) -----------------------------


@pytest.mark.br("BR-SP-003")
def test_first_attempt_has_no_recovery_context(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    rr = unique_rr_name()
    create_remediation_request(custom_objects, sp_namespace, rr, {"recoveryAttempts": 0})

    status = completed_status(custom_objects, sp_namespace, rr_name=rr)

    assert "recoveryContext" not in status


@pytest.mark.br("BR-SP-003")
def test_retried_remediation_carries_its_recovery_context(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    rr = unique_rr_name()
    started = datetime.now(UTC) - timedelta(minutes=5)
    create_remediation_request(
        custom_objects,
        sp_namespace,
        rr,
        {
            "recoveryAttempts": 3,
            "failureReason": "PreviousExecutionTimedOut",
            "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )

    status = completed_status(custom_objects, sp_namespace, rr_name=rr)

    recovery = status["recoveryContext"]
    assert recovery["attemptCount"] == 3
    assert recovery["previousRemediationId"] == rr
    assert recovery["lastFailureReason"] == "PreviousExecutionTimedOut"
    assert abs(go_duration_seconds(recovery["timeSinceFirstFailure"]) - 300) <= 30


@pytest.mark.br("BR-SP-003")
def test_missing_parent_remediation_request_gives_no_recovery_context(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    status = completed_status(custom_objects, sp_namespace, rr_name=unique_rr_name())

    assert "recoveryContext" not in status


# --- Conditions (BR-SP-110) ----------------------------------------------------------------------


@pytest.mark.br("BR-SP-110")
def test_completed_signal_has_exactly_the_five_conditions_true(
    custom_objects: client.CustomObjectsApi, core: client.CoreV1Api, sp_namespace: str
) -> None:
    core.create_namespaced_pod(sp_namespace, pod("api"))

    status = completed_status(custom_objects, sp_namespace, target_name="api")

    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        (kind, "True") for kind in CONDITION_TYPES
    ]
    assert [c["reason"] for c in status["conditions"]] == [
        "EnrichmentSucceeded",
        "ClassificationSucceeded",
        "CategorizationSucceeded",
        "ProcessingSucceeded",
        "Ready",
    ]
    assert all(c["observedGeneration"] == 1 and c["lastTransitionTime"] for c in status["conditions"])
    assert status["observedGeneration"] == 1
    assert status["startTime"] <= status["completionTime"]


@pytest.mark.br("BR-SP-110")
def test_condition_messages_describe_each_result(
    custom_objects: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    make_namespace: NamespaceFactory,
    operator: object,
) -> None:
    namespace = make_namespace({"kubernaut.ai/environment": "staging", "kubernaut.ai/team": "web"})
    apps.create_namespaced_deployment(namespace, workload("web-frontend", {"app": "web-frontend"}))

    status = completed_status(
        custom_objects, namespace, severity="warning", target_kind="Deployment", target_name="web-frontend"
    )

    assert condition(status, "EnrichmentComplete")["message"] == (
        f"K8s context enriched: Deployment {namespace}/web-frontend"
    )
    classification = condition(status, "ClassificationComplete")["message"]
    assert "environment=Staging" in classification and "priority=P2" in classification
    assert "severity=warning (from 'warning')" in classification
    assert condition(status, "CategorizationComplete")["message"].startswith(
        "Categorized: businessUnit=web, criticality=Medium, sla=Silver"
    )
    processing = condition(status, "ProcessingComplete")["message"]
    assert "processed successfully" in processing and "P2 Staging" in processing


# --- Robustness of the reconcile loop ------------------------------------------------------------


@pytest.mark.br("BR-SP-001")
def test_minimal_kubernetes_event_signal_completes(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    rr = unique_rr_name()
    manifest = signal_processing(sp_namespace, rr_name=rr, severity="info")
    manifest = with_change(manifest, "spec.signal.type", "kubernetes-event")
    for optional in ("source", "labels"):
        manifest = with_change(manifest, f"spec.signal.{optional}", DELETE)
    created = create_sp(custom_objects, manifest)

    done = wait_for_phase(custom_objects, sp_namespace, created["metadata"]["name"])

    assert done["status"]["phase"] == "Completed"
    assert done["status"]["priorityAssignment"]["priority"] == "P2"


@pytest.mark.br("BR-SP-001")
def test_namespace_name_with_digits_and_dashes_is_processed(
    custom_objects: client.CustomObjectsApi,
    namespace_prefix: str,
    make_namespace: NamespaceFactory,
    operator: object,
) -> None:
    namespace = make_namespace(prefix=f"{namespace_prefix}my-ns-123-")

    status = completed_status(custom_objects, namespace)

    assert status["kubernetesContext"]["namespace"]["name"] == namespace


@pytest.mark.br("BR-SP-001")
def test_empty_fingerprint_is_rejected_by_the_api_server(
    custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    manifest = with_change(signal_processing(sp_namespace), "spec.signal.fingerprint", "")

    with pytest.raises(ApiException) as rejected:
        create_sp(custom_objects, manifest)

    assert rejected.value.status == 422
    assert "fingerprint" in str(rejected.value.body)


@pytest.mark.br("BR-SP-090")
def test_ten_signals_at_once_each_complete_with_one_trail(
    stack: StackState,
    operator: ControllerProcess,
    custom_objects: client.CustomObjectsApi,
    sp_namespace: str,
) -> None:
    rrs = [unique_rr_name() for _ in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        created = list(
            pool.map(lambda rr: create_sp(custom_objects, signal_processing(sp_namespace, rr_name=rr)), rrs)
        )

    for sp in created:
        done = wait_for_phase(custom_objects, sp_namespace, sp["metadata"]["name"], timeout=60)
        assert done["status"]["phase"] == "Completed"
    for rr in rrs:
        wait_for_exact_trail(stack.datastorage_url, operator.metrics_url, rr, SUCCESS_TRAIL)


@pytest.mark.br("BR-SP-090")
def test_concurrent_metadata_writes_never_make_a_phase_run_twice(
    stack: StackState,
    operator: ControllerProcess,
    custom_objects: client.CustomObjectsApi,
    sp_namespace: str,
) -> None:
    # Every label write moves the resourceVersion, so the controller's conditional status
    # patches keep conflicting; each phase must still be written (and audited) exactly once.
    rr = unique_rr_name()
    name = create_sp(custom_objects, signal_processing(sp_namespace, rr_name=rr))["metadata"]["name"]
    finished = threading.Event()

    def churn() -> None:
        round_ = 0
        while not finished.is_set():
            round_ += 1
            custom_objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                sp_namespace,
                SP_PLURAL,
                name,
                {"metadata": {"labels": {"churn": str(round_)}}},
            )

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        done = wait_for_phase(custom_objects, sp_namespace, name)
    finally:
        finished.set()
        writer.join()

    assert done["status"]["phase"] == "Completed"
    assert get_sp(custom_objects, sp_namespace, name)["metadata"]["labels"]["churn"]
    wait_for_exact_trail(stack.datastorage_url, operator.metrics_url, rr, SUCCESS_TRAIL)
    assert sorted(phase_transitions(stack.datastorage_url, rr)) == sorted(SUCCESS_TRANSITIONS)


# --- Transient-failure fields on success (BR-SP-111) ---------------------------------------------


@pytest.mark.br("BR-SP-111")
def test_signal_that_never_failed_has_no_failure_record(
    custom_objects: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    make_namespace: NamespaceFactory,
    operator: object,
) -> None:
    namespace = make_namespace(
        {"kubernaut.ai/environment": "production", "kubernaut.ai/business-unit": "payments"}
    )
    apps.create_namespaced_deployment(namespace, workload("checkout", {"app": "checkout"}))

    status = completed_status(custom_objects, namespace, target_kind="Deployment", target_name="checkout")

    assert "failureInfo" not in status  # nil until the first failure
    assert "failedPhase" not in status
    assert [c["status"] for c in status["conditions"]] == ["True"] * 5
