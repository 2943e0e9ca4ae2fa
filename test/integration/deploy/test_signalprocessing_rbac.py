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

from devstack.charts import SIGNALPROCESSING_CHART
from devstack.controller_process import ControllerProcess
from devstack.manifests import unique_rr_name
from devstack.state import StackState
from test.integration.deploy.charts import (
    Release,
    can_i,
    controller_service_account,
    install,
    service_account_controller_settings,
    unique_name,
)
from test.integration.signalprocessing.conftest import create_pod_of_deployment
from test.integration.signalprocessing.support import (
    SUCCESS_TRAIL,
    audit_events,
    count_types,
    process_signal,
    wait_for_audit_types,
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
    ("create", "leases.coordination.k8s.io", True),  # no sharding: no lease rules at all
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
    return f"system:serviceaccount:{release.namespace}:{controller_service_account(release)}"


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


LEASE_VERBS = ("get", "list", "create", "update", "delete")


@pytest.mark.br("BR-SP-001")
def test_sharded_service_account_may_write_leases_in_the_release_namespace_only(
    stack: StackState, api_client: client.ApiClient
) -> None:
    release = install(
        SIGNALPROCESSING_CHART,
        kubeconfig=stack.kubeconfig,
        values=(f"dataStorageUrl={stack.datastorage_url}", "sharding.enabled=true", "replicaCount=3"),
    )
    user = service_account_user(release)
    elsewhere = unique_name("rbac-probe")
    try:
        answers = {
            (verb, namespace): can_i(stack.kubeconfig, user, verb, "leases.coordination.k8s.io", namespace)
            for verb in (*LEASE_VERBS, "watch", "patch")
            for namespace in (release.namespace, elsewhere)
        }
    finally:
        release.uninstall()
        client.CoreV1Api(api_client).delete_namespace(release.namespace)

    allowed = {key for key, answer in answers.items() if answer}
    assert allowed == {(verb, release.namespace) for verb in LEASE_VERBS}


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
    create_pod_of_deployment(core, apps, namespace, "api-1-x", replica_set="api-1", deployment="api")
    settings = service_account_controller_settings(
        stack, controller_release, tmp_path, watch_namespaces=f"{prefix}*"
    )
    log = tmp_path / "controller.log"
    try:
        with ControllerProcess(settings=settings, log_path=log):
            rr = unique_rr_name()
            done = process_signal(custom, namespace, rr_name=rr, target_name="api-1-x")
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
