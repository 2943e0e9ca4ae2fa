"""What the policies see of a target: its enrichment context and the target's name."""

from __future__ import annotations

from typing import Any, cast

import pytest

from controller.classify import customlabels_input
from controller.enrich import target_context
from controller.kube import RawObject
from controller.signalprocessing import (
    ContainerStatus,
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    PodDetails,
    Signal,
    StatefulSetDetails,
    TargetResource,
)

SHOP = NamespaceContext("shop", {"kubernaut.ai/environment": "production"}, {"owner": "payments"})
SHOP_INPUT = {
    "namespace": "shop",
    "namespaceLabels": {"kubernaut.ai/environment": "production"},
    "namespaceAnnotations": {"owner": "payments"},
}
NO_NAMESPACE = {"namespace": "", "namespaceLabels": {}, "namespaceAnnotations": {}}
CREATED = "2026-01-01T09:00:00Z"


@pytest.mark.parametrize(
    ("context", "target", "seen"),
    [
        pytest.param(
            KubernetesContext(
                namespace=SHOP,
                pod=PodDetails(
                    labels={"app": "web"},
                    annotations={"a": "b"},
                    phase="Running",
                    container_statuses=(
                        ContainerStatus("app", restart_count=2),
                        ContainerStatus("proxy", restart_count=3),
                    ),
                    creation_timestamp=CREATED,
                ),
            ),
            TargetResource("Pod", "web-1", "shop"),
            SHOP_INPUT
            | {
                "podDetails": {
                    "name": "web-1",
                    "phase": "Running",
                    "labels": {"app": "web"},
                    "annotations": {"a": "b"},
                    "restartCount": 5,
                    "creationTimestamp": CREATED,
                }
            },
            id="pod-restarts-of-all-its-containers",
        ),
        pytest.param(
            KubernetesContext(namespace=SHOP, pod=PodDetails(phase="Pending")),
            TargetResource("Pod", "web-1", "shop"),
            SHOP_INPUT
            | {
                "podDetails": {
                    "name": "web-1",
                    "phase": "Pending",
                    "labels": {},
                    "annotations": {},
                    "restartCount": 0,
                    "creationTimestamp": "",
                }
            },
            id="pod-not-started-has-no-restarts",
        ),
        pytest.param(
            KubernetesContext(
                namespace=SHOP,
                deployment=DeploymentDetails(
                    {"app": "web"},
                    {"a": "b"},
                    replicas=3,
                    available_replicas=2,
                    ready_replicas=1,
                    strategy="Recreate",
                ),
            ),
            TargetResource("Deployment", "web", "shop"),
            SHOP_INPUT
            | {
                "deploymentDetails": {
                    "name": "web",
                    "replicas": 3,
                    "readyReplicas": 1,
                    "availableReplicas": 2,
                    "strategy": "Recreate",
                    "labels": {"app": "web"},
                }
            },
            id="deployment",
        ),
        pytest.param(
            KubernetesContext(namespace=SHOP, degraded_mode=True),
            TargetResource("Pod", "gone", "shop"),
            SHOP_INPUT,
            id="pod-not-found",
        ),
        pytest.param(
            KubernetesContext(namespace=SHOP, stateful_set=StatefulSetDetails(replicas=2)),
            TargetResource("StatefulSet", "db", "shop"),
            SHOP_INPUT,
            id="statefulset-gives-the-namespace-only",
        ),
        pytest.param(KubernetesContext(), TargetResource("Node", "node-a"), NO_NAMESPACE, id="node"),
    ],
)
def test_what_the_custom_labels_policy_sees_of_a_context(
    context: KubernetesContext, target: TargetResource, seen: dict[str, Any]
) -> None:
    assert customlabels_input(context, target, Signal("critical", "prometheus"))["kubernetes"] == seen


def api_object(kind: str, name: str, **body: Any) -> RawObject:
    metadata = {"name": name, "namespace": "shop", "creationTimestamp": CREATED, "labels": {"app": "web"}}
    return cast(RawObject, {"kind": kind, "metadata": metadata, **body})


@pytest.mark.parametrize(
    ("raw", "details_key", "details"),
    [
        pytest.param(
            api_object(
                "Pod",
                "web-1",
                status={
                    "phase": "Running",
                    "containerStatuses": [
                        {"name": "app", "ready": True, "restartCount": 4, "state": {"running": {}}},
                        {"name": "proxy", "ready": True, "restartCount": 1, "state": {"running": {}}},
                    ],
                },
            ),
            "podDetails",
            {
                "name": "web-1",
                "phase": "Running",
                "labels": {"app": "web"},
                "annotations": {},
                "restartCount": 5,
                "creationTimestamp": CREATED,
            },
            id="pod",
        ),
        pytest.param(
            api_object(
                "Deployment",
                "web",
                spec={"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
                status={"readyReplicas": 2, "availableReplicas": 2},
            ),
            "deploymentDetails",
            {
                "name": "web",
                "replicas": 2,
                "readyReplicas": 2,
                "availableReplicas": 2,
                "strategy": "RollingUpdate",
                "labels": {"app": "web"},
            },
            id="deployment",
        ),
    ],
)
def test_the_custom_labels_policy_sees_what_the_api_server_said_before_and_after_the_status(
    raw: RawObject, details_key: str, details: dict[str, Any]
) -> None:
    target = TargetResource(raw["kind"], raw["metadata"]["name"], "shop")
    read = target_context(target.kind, raw, namespace=NamespaceContext("shop"))
    # Classifying and Categorizing rebuild the context from the status the Enriching step wrote.
    from_status = KubernetesContext.from_raw(read.to_raw())
    signal = Signal("critical", "prometheus")

    for context in (read, from_status):
        kubernetes = customlabels_input(context, target, signal)["kubernetes"]
        assert cast(dict[str, Any], kubernetes)[details_key] == details
