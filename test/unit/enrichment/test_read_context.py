"""read_kubernetes_context against an in-memory reader: what is read per kind and what each failure means."""

from __future__ import annotations

from typing import Any

import pytest

from controller import kube
from controller.caches import EnrichmentCaches
from controller.clusters import ClusterMember
from controller.enrich import NamespaceMissing, read_cluster_context, read_kubernetes_context
from controller.signalprocessing import (
    ClusterContext,
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    OwnerRef,
    TargetResource,
)

from .fakes import FakeReader, ManualClock, obj, owner, schema_errors, status_schema

NS = "shop"
NAMESPACE = NamespaceContext(NS, {"kubernaut.ai/environment": "production"}, {"owner": "team-a"})


@pytest.fixture
def reader() -> FakeReader:
    reader = FakeReader()
    reader.add(
        kube.NAMESPACES,
        obj(
            "Namespace",
            NS,
            labels={"kubernaut.ai/environment": "production"},
            annotations={"owner": "team-a"},
        ),
    )
    reader.add(kube.NODES, obj("Node", "node-a", status={"allocatable": {"cpu": "4"}}))
    reader.add(kube.DEPLOYMENTS, obj("Deployment", "web", NS, spec={"replicas": 2}))
    reader.add(kube.REPLICASETS, obj("ReplicaSet", "web-5d4f", NS, owners=[owner("Deployment", "web")]))
    reader.add(
        kube.PODS,
        obj(
            "Pod",
            "web-5d4f-x",
            NS,
            labels={"app": "web"},
            owners=[owner("ReplicaSet", "web-5d4f")],
            spec={"nodeName": "node-a"},
            status={"phase": "Running"},
        ),
    )
    for resource, kind in [
        (kube.STATEFULSETS, "StatefulSet"),
        (kube.DAEMONSETS, "DaemonSet"),
        (kube.SERVICES, "Service"),
    ]:
        reader.add(resource, obj(kind, "thing", NS))
    return reader


async def test_pod_target_reads_namespace_pod_owners_and_node(
    reader: FakeReader, caches: EnrichmentCaches
) -> None:
    context = await read_kubernetes_context(reader, TargetResource("Pod", "web-5d4f-x", NS), caches)

    assert context.namespace == NAMESPACE
    assert context.pod is not None and context.pod.node_name == "node-a"
    assert context.owner_chain == (OwnerRef("ReplicaSet", "web-5d4f", NS), OwnerRef("Deployment", "web", NS))
    assert context.node is not None and context.node.allocatable == {"cpu": "4"}
    assert not context.degraded_mode
    assert sorted(reader.log) == sorted(
        [
            ("get", "namespaces", "", NS),
            ("get", "pods", NS, "web-5d4f-x"),
            ("get", "replicasets", NS, "web-5d4f"),
            ("get", "deployments", NS, "web"),
            ("get", "nodes", "", "node-a"),
        ]
    )
    assert schema_errors(context.to_raw(), status_schema()["properties"]["kubernetesContext"]) == []


@pytest.mark.parametrize(
    ("target", "section", "reads"),
    [
        pytest.param(
            TargetResource("Deployment", "web", NS),
            "deployment",
            ["namespaces", "deployments"],
            id="deployment",
        ),
        pytest.param(
            TargetResource("StatefulSet", "thing", NS),
            "stateful_set",
            ["namespaces", "statefulsets"],
            id="statefulset",
        ),
        pytest.param(
            TargetResource("DaemonSet", "thing", NS),
            "daemon_set",
            ["namespaces", "daemonsets"],
            id="daemonset",
        ),
        pytest.param(
            TargetResource("ReplicaSet", "web-5d4f", NS),
            "replica_set",
            ["namespaces", "replicasets", "deployments"],
            id="replicaset-with-its-owner",
        ),
        pytest.param(
            TargetResource("Service", "thing", NS), "service", ["namespaces", "services"], id="service"
        ),
        pytest.param(TargetResource("Job", "batch-1", NS), None, ["namespaces"], id="job-namespace-only"),
        pytest.param(
            TargetResource("PersistentVolumeClaim", "data", NS), None, ["namespaces"], id="pvc-namespace-only"
        ),
        pytest.param(
            TargetResource("pod", "web-5d4f-x", NS), None, ["namespaces"], id="kinds-are-case-sensitive"
        ),
    ],
)
async def test_each_kind_reads_its_objects(
    reader: FakeReader,
    caches: EnrichmentCaches,
    target: TargetResource,
    section: str | None,
    reads: list[str],
) -> None:
    context = await read_kubernetes_context(reader, target, caches)

    assert context.namespace == NAMESPACE
    filled = [
        name
        for name in ("pod", "deployment", "stateful_set", "daemon_set", "replica_set", "service", "node")
        if getattr(context, name) is not None
    ]
    assert filled == ([section] if section else [])
    assert [plural for _, plural, _, _ in reader.log] == reads
    assert not context.degraded_mode


async def test_replica_set_target_has_its_deployment_in_the_owner_chain(
    reader: FakeReader, caches: EnrichmentCaches
) -> None:
    context = await read_kubernetes_context(reader, TargetResource("ReplicaSet", "web-5d4f", NS), caches)
    assert context.owner_chain == (OwnerRef("Deployment", "web", NS),)


async def test_node_target_reads_the_node_only(reader: FakeReader, caches: EnrichmentCaches) -> None:
    context = await read_kubernetes_context(reader, TargetResource("Node", "node-a", "ignored"), caches)
    assert context.namespace is None
    assert context.node is not None
    assert reader.log == [("get", "nodes", "", "node-a")]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(TargetResource("Pod", "gone", NS), id="pod"),
        pytest.param(TargetResource("Deployment", "gone", NS), id="deployment"),
        pytest.param(TargetResource("StatefulSet", "gone", NS), id="statefulset"),
        pytest.param(TargetResource("DaemonSet", "gone", NS), id="daemonset"),
        pytest.param(TargetResource("ReplicaSet", "gone", NS), id="replicaset"),
        pytest.param(TargetResource("Service", "gone", NS), id="service"),
        pytest.param(TargetResource("Pod", "", NS), id="empty-name"),
    ],
)
async def test_missing_target_is_degraded_with_the_namespace(
    reader: FakeReader, caches: EnrichmentCaches, target: TargetResource
) -> None:
    context = await read_kubernetes_context(reader, target, caches)
    assert context == KubernetesContext(namespace=NAMESPACE, degraded_mode=True)


async def test_missing_node_target_is_degraded(reader: FakeReader, caches: EnrichmentCaches) -> None:
    context = await read_kubernetes_context(reader, TargetResource("Node", "gone", ""), caches)
    assert context == KubernetesContext(degraded_mode=True)
    assert context.to_raw() == {"degradedMode": True}


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(TargetResource("Pod", "web-5d4f-x", "nowhere"), id="pod"),
        pytest.param(TargetResource("Deployment", "web", "nowhere"), id="deployment"),
        pytest.param(TargetResource("ConfigMap", "cfg", "nowhere"), id="other-kind"),
        pytest.param(TargetResource("Pod", "web-5d4f-x", ""), id="no-namespace-for-a-namespaced-kind"),
        pytest.param(
            TargetResource("Job", "nightly", ""), id="no-namespace-for-a-namespaced-kind-we-do-not-read"
        ),
    ],
)
async def test_missing_namespace_is_permanent(
    reader: FakeReader, caches: EnrichmentCaches, target: TargetResource
) -> None:
    with pytest.raises(NamespaceMissing) as raised:
        await read_kubernetes_context(reader, target, caches)
    assert raised.value.namespace == target.namespace
    assert all(plural == "namespaces" for _, plural, _, _ in reader.log)


def test_a_namespaced_target_without_a_namespace_is_refused_by_name() -> None:
    assert str(NamespaceMissing("", "Pod")).startswith(
        "the target Pod names no namespace, but Pod is a namespaced kind"
    )


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("PersistentVolume", id="cluster-scoped-kind-we-do-not-read"),
        pytest.param("Namespace", id="cluster-scoped-kind-we-read-otherwise"),
        pytest.param("ClusterIssuer", id="unknown-kind"),
    ],
)
async def test_cluster_scoped_other_kind_is_degraded_without_a_read(
    reader: FakeReader, caches: EnrichmentCaches, kind: str
) -> None:
    context = await read_kubernetes_context(reader, TargetResource(kind, "x-1", ""), caches)
    assert context == KubernetesContext(degraded_mode=True)
    assert reader.log == []  # not even a namespace


ERRORS = [
    pytest.param(kube.Forbidden("forbidden", status=403), id="forbidden"),
    pytest.param(kube.TransientApiError("timed out"), id="timeout"),
    pytest.param(kube.TransientApiError("HTTP 429", status=429), id="too-many-requests"),
    pytest.param(kube.ApiError("HTTP 400", status=400), id="other-status"),
]


@pytest.mark.parametrize("error", ERRORS)
async def test_namespace_read_error_is_transient(
    reader: FakeReader, caches: EnrichmentCaches, error: kube.ApiError
) -> None:
    reader.fail_get(kube.NAMESPACES, NS, error)
    with pytest.raises(kube.TransientApiError) as raised:
        await read_kubernetes_context(reader, TargetResource("Pod", "web-5d4f-x", NS), caches)
    assert raised.value is error or raised.value.__cause__ is error


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize(
    ("resource", "target"),
    [
        pytest.param(kube.PODS, TargetResource("Pod", "web-5d4f-x", NS), id="pod"),
        pytest.param(kube.DEPLOYMENTS, TargetResource("Deployment", "web", NS), id="deployment"),
        pytest.param(kube.NODES, TargetResource("Node", "node-a", ""), id="node"),
    ],
)
async def test_target_read_error_is_transient(
    reader: FakeReader,
    caches: EnrichmentCaches,
    error: kube.ApiError,
    resource: kube.Resource,
    target: TargetResource,
) -> None:
    reader.fail_get(resource, target.name, error, namespace=target.namespace if resource.namespaced else "")
    with pytest.raises(kube.TransientApiError) as raised:
        await read_kubernetes_context(reader, target, caches)
    if not isinstance(error, kube.TransientApiError):
        assert raised.value.__cause__ is error
        assert raised.value.status == error.status
        assert str(target) in str(raised.value)


@pytest.mark.parametrize("error", ERRORS)
async def test_pod_node_error_leaves_the_node_out(
    reader: FakeReader, caches: EnrichmentCaches, error: kube.ApiError
) -> None:
    reader.fail_get(kube.NODES, "node-a", error)
    context = await read_kubernetes_context(reader, TargetResource("Pod", "web-5d4f-x", NS), caches)
    assert context.node is None
    assert context.pod is not None and len(context.owner_chain) == 2
    assert not context.degraded_mode


async def test_pod_on_a_vanished_node(reader: FakeReader, caches: EnrichmentCaches) -> None:
    del reader.objects[("/nodes", "", "node-a")]
    context = await read_kubernetes_context(reader, TargetResource("Pod", "web-5d4f-x", NS), caches)
    assert context.node is None and context.pod is not None


async def test_unscheduled_pod_reads_no_node(reader: FakeReader, caches: EnrichmentCaches) -> None:
    reader.add(kube.PODS, obj("Pod", "pending", NS, spec={}, status={"phase": "Pending"}))
    context = await read_kubernetes_context(reader, TargetResource("Pod", "pending", NS), caches)
    assert context.node is None
    assert "nodes" not in [plural for _, plural, _, _ in reader.log]


async def test_namespace_is_read_once_within_the_ttl(
    reader: FakeReader, caches: EnrichmentCaches, clock: ManualClock
) -> None:
    target = TargetResource("Deployment", "web", NS)
    for _ in range(3):
        await read_kubernetes_context(reader, target, caches)
    assert reader.log.count(("get", "namespaces", "", NS)) == 1

    clock.advance(301)
    await read_kubernetes_context(reader, target, caches)
    assert reader.log.count(("get", "namespaces", "", NS)) == 2


async def test_namespace_cache_never_serves_another_namespace(
    reader: FakeReader, caches: EnrichmentCaches
) -> None:
    reader.add(kube.NAMESPACES, obj("Namespace", "other", labels={"kubernaut.ai/environment": "staging"}))
    reader.add(kube.DEPLOYMENTS, obj("Deployment", "web", "other"))
    first = await read_kubernetes_context(reader, TargetResource("Deployment", "web", NS), caches)
    second = await read_kubernetes_context(reader, TargetResource("Deployment", "web", "other"), caches)
    assert first.namespace == NAMESPACE
    assert second.namespace == NamespaceContext("other", {"kubernaut.ai/environment": "staging"})


async def test_missing_namespace_is_not_cached(reader: FakeReader, caches: EnrichmentCaches) -> None:
    target = TargetResource("Deployment", "web", "late")
    with pytest.raises(NamespaceMissing):
        await read_kubernetes_context(reader, target, caches)
    reader.add(kube.NAMESPACES, obj("Namespace", "late"))
    reader.add(kube.DEPLOYMENTS, obj("Deployment", "web", "late", spec={"replicas": 1}))
    context = await read_kubernetes_context(reader, target, caches)
    assert context.deployment == DeploymentDetails(replicas=1)


def _only(log: list[tuple[str, str, str, str]], verb: str) -> list[Any]:
    return [entry for entry in log if entry[0] == verb]


async def test_pod_enrichment_read_counts(reader: FakeReader, caches: EnrichmentCaches) -> None:
    """The numbers the report quotes: 5 GETs cold, 4 with the namespace cached, no LISTs."""
    target = TargetResource("Pod", "web-5d4f-x", NS)
    await read_kubernetes_context(reader, target, caches)
    assert (len(_only(reader.log, "get")), len(_only(reader.log, "list"))) == (5, 0)
    reader.log.clear()
    await read_kubernetes_context(reader, target, caches)
    assert (len(_only(reader.log, "get")), len(_only(reader.log, "list"))) == (4, 0)


async def test_a_remote_cluster_is_not_read_here_and_is_degraded_with_its_id_and_labels(
    reader: FakeReader, caches: EnrichmentCaches
) -> None:
    # The hub has a namespace and a deployment of these names: reading them would describe the hub.
    member = ClusterMember("prod-eu-1", {"tier": "gold"}, remote=True)

    context = await read_cluster_context(reader, TargetResource("Deployment", "web", NS), caches, member)

    assert context == KubernetesContext(
        cluster_id="prod-eu-1", cluster=ClusterContext({"tier": "gold"}), degraded_mode=True
    )
    assert reader.log == []


async def test_the_hub_is_read_and_labelled_with_its_registered_id(
    reader: FakeReader, caches: EnrichmentCaches
) -> None:
    member = ClusterMember("hub", {"role": "hub"}, remote=False)

    context = await read_cluster_context(reader, TargetResource("Deployment", "web", NS), caches, member)
    unnamed = await read_cluster_context(
        reader, TargetResource("Deployment", "web", NS), caches, ClusterMember("", {}, remote=False)
    )

    assert (context.cluster_id, context.cluster, context.namespace) == (
        "hub",
        ClusterContext({"role": "hub"}),
        NAMESPACE,
    )
    assert context.deployment is not None and not context.degraded_mode
    assert (unnamed.cluster_id, unnamed.cluster) == ("", None)
