"""Least privilege of the controller chart, proven by the API server.

The chart's ServiceAccount gets exactly the permissions `templates/rbac.yaml`
documents (asked with `kubectl auth can-i`), and the controller, logged in
with a token of that ServiceAccount, takes a SignalProcessing through the
whole pipeline without one refused request. The chart's ClusterRoleBinding is
cluster-wide, so the controller is held to this spec's own `rbac-<hex>-*`
namespaces by WATCH_NAMESPACES.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devstack.controller_process import ControllerProcess
from devstack.manifests import signal_processing, unique_rr_name
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from test.integration.deploy.charts import (
    SIGNALPROCESSING_CHART,
    Release,
    can_i,
    install,
    service_account_kubeconfig,
    unique_name,
)
from test.integration.signalprocessing.support import (
    SUCCESS_TRAIL,
    audit_events,
    count_types,
    create_sp,
    wait_for_audit_types,
    wait_for_phase,
)

# What a refused request leaves in the controller's log: kopf's warnings and the API's 403.
REFUSAL_MARKS = ("Not enough permissions", "Forbidden", "forbidden", " 403")

READ = ("get", "list", "watch")
NAMESPACED_READS = (
    "pods",
    "services",
    "deployments.apps",
    "replicasets.apps",
    "statefulsets.apps",
    "daemonsets.apps",
    "jobs.batch",
    "cronjobs.batch",
    "poddisruptionbudgets.policy",
    "horizontalpodautoscalers.autoscaling",
    "networkpolicies.networking.k8s.io",
    "remediationrequests.kubernaut.ai",
    "signalprocessings.kubernaut.ai",
)
ALLOWED = [
    *((verb, resource, True) for resource in NAMESPACED_READS for verb in READ),
    *((verb, resource, False) for resource in ("namespaces", "nodes") for verb in READ),
    ("patch", "signalprocessings.kubernaut.ai/status", True),
    ("create", "events", True),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", False),
]
DENIED = [
    ("get", "secrets", True),
    ("list", "secrets", True),
    ("get", "configmaps", True),
    ("create", "configmaps", True),
    ("create", "pods", True),
    ("delete", "pods", True),
    ("patch", "pods", True),
    ("create", "signalprocessings.kubernaut.ai", True),
    ("update", "signalprocessings.kubernaut.ai", True),
    ("patch", "signalprocessings.kubernaut.ai", True),
    ("delete", "signalprocessings.kubernaut.ai", True),
    ("update", "signalprocessings.kubernaut.ai/status", True),
    ("update", "remediationrequests.kubernaut.ai", True),
    ("patch", "events", True),
    ("delete", "namespaces", False),
    ("update", "nodes", False),
    ("get", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("patch", "clusterkopfpeerings.kopf.dev", False),  # one replica: no peering rules at all
    ("create", "serviceaccounts/token", True),
    ("impersonate", "users", False),
]


@pytest.fixture(scope="module")
def controller_release(stack: StackState, api_client: client.ApiClient) -> Iterator[Release]:
    release = install(
        SIGNALPROCESSING_CHART,
        kubeconfig=stack.kubeconfig,
        values=(f"dataStorageUrl={stack.datastorage_url}",),
    )
    yield release
    release.uninstall()
    client.CoreV1Api(api_client).delete_namespace(release.namespace)


def service_account_user(release: Release) -> str:
    return f"system:serviceaccount:{release.namespace}:{release.name}-signalprocessing"


@pytest.mark.br("BR-SP-001")
def test_service_account_may_do_exactly_what_the_chart_documents(
    stack: StackState, api_client: client.ApiClient, controller_release: Release
) -> None:
    namespace = unique_name("rbac-probe")
    user = service_account_user(controller_release)
    table = [(verb, resource, namespaced, True) for verb, resource, namespaced in ALLOWED] + [
        (verb, resource, namespaced, False) for verb, resource, namespaced in DENIED
    ]

    wrong = [
        f"{verb} {resource}: {'allowed' if answer else 'denied'}, wanted {'allowed' if wanted else 'denied'}"
        for verb, resource, namespaced, wanted in table
        if (answer := can_i(stack.kubeconfig, user, verb, resource, namespace if namespaced else None))
        != wanted
    ]

    assert wrong == []


@pytest.mark.br("BR-SP-001")
def test_controller_with_the_chart_service_account_completes_a_signal(
    stack: StackState, api_client: client.ApiClient, controller_release: Release, tmp_path: Path
) -> None:
    prefix = f"{unique_name('rbac')}-"
    namespace = f"{prefix}a"
    core, apps, custom = (
        client.CoreV1Api(api_client),
        client.AppsV1Api(api_client),
        client.CustomObjectsApi(api_client),
    )
    core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"kubernaut.ai/environment": "production"}}}
    )
    target = create_deployment_owned_pod(apps, core, namespace, "api")
    kubeconfig = service_account_kubeconfig(
        stack.kubeconfig,
        namespace=controller_release.namespace,
        service_account=f"{controller_release.name}-signalprocessing",
        path=tmp_path / "service-account.kubeconfig",
    )
    policies = copy_shipped_policies(tmp_path / "policies")
    settings = {
        "KUBECONFIG": str(kubeconfig),
        "DATA_STORAGE_URL": stack.datastorage_url,
        "POLICY_DIR": str(policies),
        "WATCH_NAMESPACES": f"{prefix}*",
        "AUDIT_FLUSH_INTERVAL": "0.2",
    }
    log = tmp_path / "controller.log"
    try:
        with ControllerProcess(settings=settings, log_path=log):
            rr = unique_rr_name()
            created = create_sp(custom, signal_processing(namespace, rr_name=rr, target_name=target))
            done = wait_for_phase(custom, namespace, created["metadata"]["name"])
            wait_for_audit_types(stack.datastorage_url, rr, SUCCESS_TRAIL)
    finally:
        core.delete_namespace(namespace)

    status = done["status"]
    assert status["phase"] == "Completed", status
    context = status["kubernetesContext"]
    assert [owner["kind"] for owner in context["ownerChain"]] == ["ReplicaSet", "Deployment"]
    assert context["detectedLabels"].get("failedDetections", []) == []
    assert count_types(audit_events(stack.datastorage_url, rr)) == SUCCESS_TRAIL
    refusals = [line for line in log.read_text().splitlines() if any(mark in line for mark in REFUSAL_MARKS)]
    assert refusals == []


def create_deployment_owned_pod(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str, name: str
) -> str:
    """Deployment -> ReplicaSet -> Pod, linked by controller ownerReferences (no controller-manager here)."""
    labels = {"app": name}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
    }
    deployment = apps.create_namespaced_deployment(
        namespace,
        {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": labels}, "template": template}},
    )
    replica_set = apps.create_namespaced_replica_set(
        namespace,
        {
            "metadata": {
                "name": f"{name}-1",
                "labels": labels,
                "ownerReferences": [owner(deployment, "Deployment")],
            },
            "spec": {"selector": {"matchLabels": labels}, "template": template},
        },
    )
    pod = core.create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "name": f"{name}-1-x",
                "labels": labels,
                "ownerReferences": [owner(replica_set, "ReplicaSet")],
            },
            "spec": template["spec"],
        },
    )
    return str(pod.metadata.name)


def owner(parent: object, kind: str) -> dict[str, object]:
    metadata = parent.metadata  # type: ignore[attr-defined]
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": metadata.name,
        "uid": metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
