"""From API objects to the typed context, and from the context to the CRD's status shape and back."""

from __future__ import annotations

from typing import Any, cast

import pytest

from controller.enrich import (
    RawContainerStatus,
    RawDaemonSet,
    RawDeployment,
    RawNamespace,
    RawNode,
    RawPod,
    RawService,
    RawServicePort,
    RawStatefulSet,
    container_status,
    daemon_set_details,
    deployment_details,
    namespace_context,
    node_details,
    pod_details,
    replica_set_details,
    service_details,
    service_port,
    stateful_set_details,
    target_context,
)
from controller.signalprocessing import (
    ContainerStatus,
    DaemonSetDetails,
    DeploymentDetails,
    DetectedLabels,
    KubernetesContext,
    NamespaceContext,
    NodeCondition,
    NodeDetails,
    OwnerRef,
    PodDetails,
    RawKubernetesContext,
    RawTargetResource,
    ReplicaSetDetails,
    ServiceDetails,
    ServicePort,
    StatefulSetDetails,
    TargetResource,
)

from .fakes import obj, schema_errors, status_schema

NS = NamespaceContext("shop", {"kubernaut.ai/environment": "production"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": "t"}}},
            ContainerStatus("app", ready=True, restart_count=0, state="Running"),
            id="running",
        ),
        pytest.param(
            {
                "name": "app",
                "ready": False,
                "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            },
            ContainerStatus("app", ready=False, restart_count=7, state="Waiting"),
            id="waiting-reason-not-kept",
        ),
        pytest.param(
            {
                "name": "app",
                "restartCount": 3,
                "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            },
            ContainerStatus("app", restart_count=3, state="Terminated", last_termination_reason="OOMKilled"),
            id="terminated-with-reason",
        ),
        pytest.param(
            {
                "name": "app",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled"}},
            },
            ContainerStatus("app", state="Waiting"),
            id="last-state-is-not-read",
        ),
        pytest.param(
            {"name": "app", "state": {"running": {}, "terminated": {"reason": "Error"}}},
            ContainerStatus("app", state="Running"),
            id="running-wins-over-terminated",
        ),
        pytest.param(
            {"name": "app", "state": {"waiting": {}, "terminated": {"reason": "Error"}}},
            ContainerStatus("app", state="Waiting"),
            id="waiting-wins-over-terminated",
        ),
        pytest.param({"name": "app", "state": {}}, ContainerStatus("app"), id="no-state"),
        pytest.param({"name": "app"}, ContainerStatus("app"), id="state-absent"),
        pytest.param(
            {"name": "app", "state": {"terminated": {}}},
            ContainerStatus("app", state="Terminated"),
            id="terminated-without-reason",
        ),
    ],
)
def test_container_status(raw: dict[str, Any], expected: ContainerStatus) -> None:
    assert container_status(cast(RawContainerStatus, raw)) == expected


def test_pod_details() -> None:
    raw = obj(
        "Pod",
        "web-1",
        "shop",
        labels={"app": "web"},
        annotations={"sidecar.istio.io/status": "{}"},
        spec={"nodeName": "node-a", "containers": [{"name": "app"}]},
        status={
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 2, "state": {"running": {}}},
                {
                    "name": "proxy",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"reason": "Completed"}},
                },
            ],
        },
    )
    assert pod_details(cast(RawPod, raw)) == PodDetails(
        labels={"app": "web"},
        annotations={"sidecar.istio.io/status": "{}"},
        phase="Running",
        node_name="node-a",
        container_statuses=(
            ContainerStatus("app", ready=True, restart_count=2, state="Running"),
            ContainerStatus("proxy", state="Terminated", last_termination_reason="Completed"),
        ),
    )


def test_pod_creation_timestamp_is_kept_as_the_api_wrote_it() -> None:
    raw = obj("Pod", "web-1", "shop")
    raw["metadata"]["creationTimestamp"] = "2026-01-01T09:00:00Z"
    assert pod_details(cast(RawPod, raw)).creation_timestamp == "2026-01-01T09:00:00Z"


def test_pod_restart_count_adds_up_its_containers() -> None:
    containers = (ContainerStatus("app", restart_count=2), ContainerStatus("proxy", restart_count=5))
    assert PodDetails(container_statuses=containers).restart_count == 7
    assert PodDetails().restart_count == 0


def test_pending_pod_without_node_or_statuses() -> None:
    raw = obj("Pod", "web-1", "shop", spec={}, status={"phase": "Pending"})
    assert pod_details(cast(RawPod, raw)) == PodDetails(phase="Pending")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            obj(
                "Deployment",
                "web",
                "shop",
                labels={"app": "web"},
                annotations={"a": "b"},
                spec={"replicas": 3},
                status={"availableReplicas": 2, "readyReplicas": 1},
            ),
            DeploymentDetails({"app": "web"}, {"a": "b"}, replicas=3, available_replicas=2, ready_replicas=1),
            id="full",
        ),
        pytest.param(
            obj("Deployment", "web", "shop", spec={}, status={}),
            DeploymentDetails(replicas=0, available_replicas=0, ready_replicas=0),
            id="replicas-unset-is-0",
        ),
        pytest.param(
            obj("Deployment", "web", "shop", spec={"replicas": 0}),
            DeploymentDetails(),
            id="scaled-to-zero-and-no-status",
        ),
        pytest.param(
            obj("Deployment", "web", "shop", spec={"replicas": 1, "strategy": {"type": "Recreate"}}),
            DeploymentDetails(replicas=1, strategy="Recreate"),
            id="strategy-type",
        ),
    ],
)
def test_deployment_details(raw: dict[str, Any], expected: DeploymentDetails) -> None:
    assert deployment_details(cast(RawDeployment, raw)) == expected


def test_replica_set_details() -> None:
    raw = obj("ReplicaSet", "web-5d4f", "shop", spec={"replicas": 2}, status={"availableReplicas": 2})
    assert replica_set_details(cast(RawDeployment, raw)) == ReplicaSetDetails(
        replicas=2, available_replicas=2
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            obj(
                "StatefulSet",
                "db",
                "shop",
                labels={"app": "db"},
                spec={"replicas": 3},
                status={"readyReplicas": 2, "currentReplicas": 3},
            ),
            StatefulSetDetails({"app": "db"}, replicas=3, ready_replicas=2, current_replicas=3),
            id="full",
        ),
        pytest.param(obj("StatefulSet", "db", "shop"), StatefulSetDetails(), id="empty"),
    ],
)
def test_stateful_set_details(raw: dict[str, Any], expected: StatefulSetDetails) -> None:
    assert stateful_set_details(cast(RawStatefulSet, raw)) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            obj(
                "DaemonSet",
                "agent",
                "shop",
                labels={"app": "agent"},
                status={"desiredNumberScheduled": 4, "currentNumberScheduled": 3, "numberReady": 2},
            ),
            DaemonSetDetails(
                {"app": "agent"}, desired_number_scheduled=4, current_number_scheduled=3, number_ready=2
            ),
            id="full",
        ),
        pytest.param(obj("DaemonSet", "agent", "shop"), DaemonSetDetails(), id="empty"),
    ],
)
def test_daemon_set_details(raw: dict[str, Any], expected: DaemonSetDetails) -> None:
    assert daemon_set_details(cast(RawDaemonSet, raw)) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            ServicePort(80, name="http", target_port="8080", protocol="TCP"),
            id="int-target-port-as-string",
        ),
        pytest.param(
            {"port": 443, "targetPort": "https", "protocol": "TCP"},
            ServicePort(443, target_port="https", protocol="TCP"),
            id="named-target-port",
        ),
        pytest.param({"port": 53}, ServicePort(53), id="no-target-port"),
    ],
)
def test_service_port(raw: dict[str, Any], expected: ServicePort) -> None:
    assert service_port(cast(RawServicePort, raw)) == expected


def test_service_details() -> None:
    raw = obj(
        "Service",
        "web",
        "shop",
        labels={"app": "web"},
        spec={
            "type": "LoadBalancer",
            "clusterIP": "10.0.0.7",
            "externalIPs": ["192.0.2.1"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    )
    assert service_details(cast(RawService, raw)) == ServiceDetails(
        labels={"app": "web"},
        type="LoadBalancer",
        cluster_ip="10.0.0.7",
        external_ips=("192.0.2.1",),
        ports=(ServicePort(80, name="http", target_port="8080", protocol="TCP"),),
    )


def test_node_details() -> None:
    raw = obj(
        "Node",
        "node-a",
        labels={"kubernetes.io/os": "linux"},
        status={
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"},
                {"type": "MemoryPressure", "status": "False"},
            ],
            "allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": "110"},
            "capacity": {"cpu": "4"},
        },
    )
    assert node_details(cast(RawNode, raw)) == NodeDetails(
        labels={"kubernetes.io/os": "linux"},
        conditions=(NodeCondition("Ready", "True", "KubeletReady"), NodeCondition("MemoryPressure", "False")),
        allocatable={"cpu": "3920m", "memory": "15Gi", "pods": "110"},
    )


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"name": "shop"}, id="absent"),
        pytest.param({"name": "shop", "labels": None, "annotations": None}, id="null"),
    ],
)
def test_nil_maps_become_empty(metadata: dict[str, Any]) -> None:
    assert namespace_context(cast(RawNamespace, {"metadata": metadata})) == NamespaceContext("shop", {}, {})


@pytest.mark.parametrize(
    ("kind", "raw", "section"),
    [
        pytest.param("Pod", obj("Pod", "p", "shop"), "pod", id="pod"),
        pytest.param("Deployment", obj("Deployment", "d", "shop"), "deployment", id="deployment"),
        pytest.param("StatefulSet", obj("StatefulSet", "s", "shop"), "stateful_set", id="statefulset"),
        pytest.param("DaemonSet", obj("DaemonSet", "d", "shop"), "daemon_set", id="daemonset"),
        pytest.param("ReplicaSet", obj("ReplicaSet", "r", "shop"), "replica_set", id="replicaset"),
        pytest.param("Service", obj("Service", "s", "shop"), "service", id="service"),
        pytest.param("Job", obj("Job", "j", "shop"), None, id="other-kind-namespace-only"),
    ],
)
def test_target_context_fills_only_the_target_section(
    kind: str, raw: dict[str, Any], section: str | None
) -> None:
    context = target_context(kind, raw, namespace=NS)
    sections = ("pod", "deployment", "stateful_set", "daemon_set", "replica_set", "service", "node")
    assert context.namespace == NS
    assert [name for name in sections if getattr(context, name) is not None] == ([section] if section else [])


FULL_CONTEXT = KubernetesContext(
    namespace=NamespaceContext("shop", {"team": "a"}, {"note": "x"}),
    pod=PodDetails(
        labels={"app": "web"},
        phase="Running",
        node_name="node-a",
        container_statuses=(
            ContainerStatus(
                "app", ready=False, restart_count=5, state="Terminated", last_termination_reason="OOMKilled"
            ),
        ),
    ),
    node=NodeDetails(conditions=(NodeCondition("Ready", "True"),), allocatable={"cpu": "2"}),
    owner_chain=(OwnerRef("ReplicaSet", "web-5d4f", "shop"), OwnerRef("Deployment", "web", "shop")),
    detected_labels=DetectedLabels(has_pdb=True, is_production=True, failed_detections=("hasHPA",)),
    custom_labels={"team": ("payments",), "region": ("eu", "us")},
)


def test_to_raw_is_the_crd_shape() -> None:
    assert FULL_CONTEXT.to_raw() == {
        "namespace": {"name": "shop", "labels": {"team": "a"}, "annotations": {"note": "x"}},
        "pod": {
            "labels": {"app": "web"},
            "phase": "Running",
            "nodeName": "node-a",
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": False,
                    "restartCount": 5,
                    "state": "Terminated",
                    "lastTerminationReason": "OOMKilled",
                }
            ],
        },
        "node": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "2"}},
        "ownerChain": [
            {"namespace": "shop", "kind": "ReplicaSet", "name": "web-5d4f"},
            {"namespace": "shop", "kind": "Deployment", "name": "web"},
        ],
        "detectedLabels": {
            "gitOpsManaged": False,
            "hasPDB": True,
            "hasHPA": False,
            "helmManaged": False,
            "networkIsolated": False,
            "serviceMesh": False,
            "isProduction": True,
            "failedDetections": ["hasHPA"],
        },
        "customLabels": {"team": ["payments"], "region": ["eu", "us"]},
        "degradedMode": False,
    }


def test_degraded_context_to_raw() -> None:
    context = KubernetesContext(namespace=NamespaceContext("shop"), degraded_mode=True)
    assert context.to_raw() == {"namespace": {"name": "shop"}, "degradedMode": True}


def test_zero_counts_are_written() -> None:
    raw = KubernetesContext(deployment=DeploymentDetails()).to_raw()
    assert raw["deployment"] == {"replicas": 0, "availableReplicas": 0, "readyReplicas": 0}


EVERY_SECTION = [
    pytest.param(FULL_CONTEXT, id="pod-with-everything"),
    pytest.param(
        KubernetesContext(namespace=NS, deployment=DeploymentDetails({"a": "b"}, replicas=2)), id="deployment"
    ),
    pytest.param(
        KubernetesContext(
            namespace=NS,
            pod=PodDetails(phase="Running", creation_timestamp="2026-01-01T09:00:00Z"),
        ),
        id="pod-with-creation-timestamp",
    ),
    pytest.param(
        KubernetesContext(namespace=NS, deployment=DeploymentDetails(replicas=2, strategy="RollingUpdate")),
        id="deployment-with-strategy",
    ),
    pytest.param(
        KubernetesContext(namespace=NS, stateful_set=StatefulSetDetails(replicas=1, current_replicas=1)),
        id="statefulset",
    ),
    pytest.param(
        KubernetesContext(namespace=NS, daemon_set=DaemonSetDetails(number_ready=3)), id="daemonset"
    ),
    pytest.param(KubernetesContext(namespace=NS, replica_set=ReplicaSetDetails(replicas=4)), id="replicaset"),
    pytest.param(
        KubernetesContext(
            namespace=NS,
            service=ServiceDetails(
                type="ClusterIP",
                cluster_ip="10.0.0.1",
                external_ips=("1.2.3.4",),
                ports=(ServicePort(80, target_port="http"),),
            ),
        ),
        id="service",
    ),
    pytest.param(
        KubernetesContext(
            node=NodeDetails({"zone": "a"}, (NodeCondition("Ready", "Unknown", "NodeStatusUnknown"),))
        ),
        id="node",
    ),
    pytest.param(KubernetesContext(degraded_mode=True), id="degraded-node"),
    pytest.param(KubernetesContext(namespace=NS, detected_labels=DetectedLabels()), id="all-labels-false"),
]


@pytest.mark.parametrize("context", EVERY_SECTION)
def test_to_raw_passes_the_crd_schema(context: KubernetesContext) -> None:
    schema = status_schema()["properties"]["kubernetesContext"]
    assert schema_errors(context.to_raw(), schema) == []


@pytest.mark.parametrize("context", EVERY_SECTION)
def test_from_raw_reverses_to_raw(context: KubernetesContext) -> None:
    assert KubernetesContext.from_raw(context.to_raw()) == context


def test_from_raw_of_an_empty_status() -> None:
    assert KubernetesContext.from_raw(cast(RawKubernetesContext, {})) == KubernetesContext()


def test_workload_labels_come_from_the_target_workload() -> None:
    assert KubernetesContext(stateful_set=StatefulSetDetails({"helm.sh/chart": "db-1"})).workload_labels == {
        "helm.sh/chart": "db-1"
    }
    assert KubernetesContext(pod=PodDetails({"app": "web"})).workload_labels == {}


@pytest.mark.parametrize(
    ("raw", "expected", "written"),
    [
        pytest.param(
            {"kind": "Pod", "name": "p", "namespace": "ns"},
            TargetResource("Pod", "p", "ns"),
            "Pod ns/p",
            id="full",
        ),
        pytest.param(
            {"kind": "Node", "name": "n", "namespace": ""},
            TargetResource("Node", "n", ""),
            "Node n",
            id="empty",
        ),
        pytest.param({"kind": "Node", "name": "n"}, TargetResource("Node", "n", ""), "Node n", id="absent"),
    ],
)
def test_target_resource_from_raw(raw: dict[str, str], expected: TargetResource, written: str) -> None:
    target = TargetResource.from_raw(cast(RawTargetResource, raw))
    assert target == expected
    assert target.is_cluster_scoped is (not raw.get("namespace"))
    assert str(target) == written
    # An empty namespace and an absent one say the same (cluster-scoped): written back absent.
    assert target.to_raw() == {key: value for key, value in raw.items() if value}


def test_schema_check_is_not_vacuous() -> None:
    schema = status_schema()["properties"]["kubernetesContext"]
    bad = {"pod": {"containerStatuses": [{"name": "a", "ready": "yes"}]}, "podDetails": {}}
    assert sorted(schema_errors(bad, schema)) == [
        ".pod.containerStatuses[0].ready: 'yes' is not boolean",
        ".pod.containerStatuses[0].restartCount: required",
        ".podDetails: not in the schema (would be pruned)",
    ]
