"""What the policy sees of a target: its enrichment context and the target's kind and name."""

from __future__ import annotations

from typing import Any, cast

import pytest

from controller.classify import policy_input
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
    WorkloadContext,
)

SHOP = NamespaceContext("shop", {"kubernaut.ai/environment": "production"}, {"owner": "payments"})
SHOP_INPUT = {
    "name": "shop",
    "labels": {"kubernaut.ai/environment": "production"},
    "annotations": {"owner": "payments"},
}
NO_NAMESPACE = {"name": "", "labels": {}, "annotations": {}}
CREATED = "2026-01-01T09:00:00Z"


def workload(kind: str, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"kind": kind, "name": name, "labels": labels, "annotations": annotations}


@pytest.mark.parametrize(
    ("context", "target", "namespace", "seen"),
    [
        pytest.param(
            KubernetesContext(
                namespace=SHOP,
                pod=PodDetails(
                    labels={"app": "web"},
                    annotations={"a": "b"},
                    phase="Running",
                    container_statuses=(ContainerStatus("app", restart_count=2),),
                    creation_timestamp=CREATED,
                ),
            ),
            TargetResource("Pod", "web-1", "shop"),
            SHOP_INPUT,
            workload("Pod", "web-1", {"app": "web"}, {"a": "b"}),
            id="pod",
        ),
        pytest.param(
            KubernetesContext(
                namespace=SHOP,
                deployment=DeploymentDetails(
                    {"app": "web"}, {"a": "b"}, replicas=3, available_replicas=2, strategy="Recreate"
                ),
            ),
            TargetResource("Deployment", "web", "shop"),
            SHOP_INPUT,
            workload("Deployment", "web", {"app": "web"}, {"a": "b"}),
            id="deployment",
        ),
        pytest.param(
            KubernetesContext(namespace=SHOP, degraded_mode=True),
            TargetResource("Pod", "gone", "shop"),
            SHOP_INPUT,
            workload("Pod", "gone", {}, {}),
            id="pod-not-found-is-its-kind-and-name",
        ),
        pytest.param(
            KubernetesContext(namespace=SHOP, stateful_set=StatefulSetDetails({"app": "db"}, replicas=2)),
            TargetResource("StatefulSet", "db", "shop"),
            SHOP_INPUT,
            workload("StatefulSet", "db", {"app": "db"}, {}),
            id="statefulset",
        ),
        pytest.param(
            KubernetesContext(),
            TargetResource("Node", "node-a"),
            NO_NAMESPACE,
            workload("Node", "node-a", {}, {}),
            id="node-not-read",
        ),
    ],
)
def test_what_the_policy_sees_of_a_context(
    context: KubernetesContext, target: TargetResource, namespace: dict[str, Any], seen: dict[str, Any]
) -> None:
    built = policy_input(context, target, Signal("critical", "prometheus"))
    assert (built["namespace"], built["workload"]) == (namespace, seen)


def api_object(kind: str, name: str, **body: Any) -> RawObject:
    metadata = {
        "name": name,
        "namespace": "shop",
        "creationTimestamp": CREATED,
        "labels": {"app": "web"},
        "annotations": {"team": "shop"},
    }
    return cast(RawObject, {"kind": kind, "metadata": metadata, **body})


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(api_object("Pod", "web-1", status={"phase": "Running"}), id="pod"),
        pytest.param(
            api_object("Deployment", "web", spec={"replicas": 2}, status={"readyReplicas": 2}),
            id="deployment",
        ),
    ],
)
def test_the_policy_sees_what_the_api_server_said_before_and_after_the_status(raw: RawObject) -> None:
    target = TargetResource(raw["kind"], raw["metadata"]["name"], "shop")
    read = target_context(target.kind, raw, namespace=NamespaceContext("shop"))
    # Classifying and Categorizing rebuild the context from the status the Enriching step wrote.
    from_status = KubernetesContext.from_raw(read.to_raw())
    signal = Signal("critical", "prometheus")

    for context in (read, from_status):
        assert policy_input(context, target, signal)["workload"] == workload(
            raw["kind"], raw["metadata"]["name"], {"app": "web"}, {"team": "shop"}
        )


def test_the_policy_sees_the_recorded_workload_which_is_the_one_its_section_gives() -> None:
    deployment = DeploymentDetails(labels={"app": "web"}, annotations={"team": "shop"})
    target = TargetResource("Deployment", "web", "shop")
    read = KubernetesContext(namespace=SHOP, deployment=deployment)
    recorded = KubernetesContext.from_raw(read.to_raw() | {"workload": {"kind": "Deployment", "name": "web"}})
    signal = Signal("critical", "prometheus")

    # What enrichment records is what the section gives, so a reader needs no section of its kind...
    assert read.workload_of("Deployment", "web") == WorkloadContext(
        "Deployment", "web", {"app": "web"}, {"team": "shop"}
    )
    assert policy_input(read, target, signal)["workload"] == workload(
        "Deployment", "web", {"app": "web"}, {"team": "shop"}
    )
    # ... and once recorded, the record is what the policies see.
    assert policy_input(recorded, target, signal)["workload"] == workload("Deployment", "web", {}, {})
