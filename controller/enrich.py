"""Kubernetes enrichment: what the cluster says about a signal's target (BR-SP-001).

This module reads the objects that fill ``status.kubernetesContext`` (whose shape is
``controller.kubernetes_context``). Reading is one async function, ``read_kubernetes_context``;
everything it does with what it read is a pure function (``pod_details``, ``node_details``,
``target_context``, ...) that unit tests call with plain dicts.

Which objects are read, per target kind: the namespace (cached), then the target itself, then for a
Pod its node; for every target object read, its owner chain (``controller.ownerchain``). A Node
target reads the node only; any other kind reads the namespace only. An empty namespace means a
cluster-scoped target (kubernaut 2026): a Node is read as above; any other kind without one, unless
it is a namespaced kind we know, reads nothing at all and is degraded.

What an answer means:

* target not found: ``degraded_mode=True``, still a success (also for a Node);
* target namespace not found, or no namespace for a kind we know to be namespaced (Pod, Job, ...):
  ``NamespaceMissing``, a permanent failure;
* any other error reading the namespace or the target: ``kube.TransientApiError``, retried;
* the pod's node and the owner chain are supplementary: a failure leaves them out, quietly.

A signal from another cluster of the fleet (``controller.clusters``) is not read here at all
(``read_cluster_context``): degraded mode, reason ``remote_reader_unavailable``.

Detected labels (``controller.detect``) and custom labels are added to the context by their own
stages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final, TypedDict, cast

from controller import kube
from controller.caches import EnrichmentCaches
from controller.clusters import ClusterMember
from controller.ownerchain import read_owner_chain
from controller.rawjson import int_or_zero, str_or_empty, string_map
from controller.signalprocessing import (
    ClusterContext,
    ContainerStatus,
    DaemonSetDetails,
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    NodeCondition,
    NodeDetails,
    PodDetails,
    ReplicaSetDetails,
    ServiceDetails,
    ServicePort,
    StatefulSetDetails,
    TargetResource,
)
from controller.ttlcache import TTLCache

logger = logging.getLogger(__name__)
# Why a context is degraded, as the metric label `error_type` and the condition message say.
REMOTE_READER_UNAVAILABLE: Final = "remote_reader_unavailable"
# Target kinds with a section of their own in the context; any other namespaced kind gets the
# namespace only (a Node is handled apart: it has no namespace).
_DETAILED_KINDS: Final = frozenset({"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Service"})


class NamespaceMissing(Exception):
    """The target's namespace does not exist, or a namespaced target names none: enrichment cannot
    succeed. An empty `namespace` is the second case: a creator's error no retry can fix, and
    guessing one (the SP's own, say) could describe another object."""

    def __init__(self, namespace: str, kind: str) -> None:
        super().__init__(
            f'namespace "{namespace}" of the target {kind} does not exist'
            if namespace
            else f"the target {kind} names no namespace, but {kind} is a namespaced kind "
            "(only a cluster-scoped target, a Node say, may leave spec.signal.targetResource.namespace empty)"
        )
        self.namespace = namespace


# --- The API objects read (only the fields used) -------------------------------------------------


class RawNamespace(TypedDict, total=False):
    metadata: kube.RawMeta


class RawContainerStateDetail(TypedDict, total=False):
    reason: str


class RawContainerState(TypedDict, total=False):
    running: dict[str, Any]
    waiting: RawContainerStateDetail
    terminated: RawContainerStateDetail


class RawContainerStatus(TypedDict, total=False):
    name: str
    ready: bool
    restartCount: int
    state: RawContainerState


class RawPodSpec(TypedDict, total=False):
    nodeName: str


class RawPodStatus(TypedDict, total=False):
    phase: str
    containerStatuses: list[RawContainerStatus]


class RawPod(TypedDict, total=False):
    metadata: kube.RawMeta
    spec: RawPodSpec
    status: RawPodStatus


class RawDeploymentStrategy(TypedDict, total=False):
    type: str


class RawReplicasSpec(TypedDict, total=False):
    """Spec of a Deployment, StatefulSet or ReplicaSet (only Deployments have `strategy`)."""

    replicas: int
    strategy: RawDeploymentStrategy


class RawReplicaStatus(TypedDict, total=False):
    """Status of a Deployment or ReplicaSet (StatefulSets add `currentReplicas`)."""

    availableReplicas: int
    readyReplicas: int
    currentReplicas: int


class RawDeployment(TypedDict, total=False):
    metadata: kube.RawMeta
    spec: RawReplicasSpec
    status: RawReplicaStatus


RawStatefulSet = RawDeployment
RawReplicaSet = RawDeployment


class RawDaemonSetStatus(TypedDict, total=False):
    desiredNumberScheduled: int
    currentNumberScheduled: int
    numberReady: int


class RawDaemonSet(TypedDict, total=False):
    metadata: kube.RawMeta
    status: RawDaemonSetStatus


class RawServicePort(TypedDict, total=False):
    name: str
    port: int
    targetPort: int | str
    protocol: str


class RawServiceSpec(TypedDict, total=False):
    type: str
    clusterIP: str
    externalIPs: list[str]
    ports: list[RawServicePort]


class RawService(TypedDict, total=False):
    metadata: kube.RawMeta
    spec: RawServiceSpec


class RawNodeCondition(TypedDict, total=False):
    type: str
    status: str
    reason: str


class RawNodeStatus(TypedDict, total=False):
    conditions: list[RawNodeCondition]
    allocatable: dict[str, str]


class RawNode(TypedDict, total=False):
    metadata: kube.RawMeta
    status: RawNodeStatus


def _meta(raw: Mapping[str, Any]) -> kube.RawMeta:
    return cast(kube.RawMeta, raw.get("metadata") or {})


# --- From API objects to the context (pure) ------------------------------------------------------


def namespace_context(raw: RawNamespace) -> NamespaceContext:
    meta = _meta(raw)
    return NamespaceContext(
        str_or_empty(meta.get("name")), string_map(meta.get("labels")), string_map(meta.get("annotations"))
    )


def container_status(raw: RawContainerStatus) -> ContainerStatus:
    """The first state present, in the order Running, Waiting, Terminated; the reason only if Terminated."""
    state = raw.get("state") or {}
    name, reason = "", ""
    if state.get("running") is not None:
        name = "Running"
    elif state.get("waiting") is not None:
        name = "Waiting"
    elif (terminated := state.get("terminated")) is not None:
        name, reason = "Terminated", str_or_empty(terminated.get("reason"))
    return ContainerStatus(
        name=str_or_empty(raw.get("name")),
        ready=raw.get("ready") is True,
        restart_count=int_or_zero(raw.get("restartCount")),
        state=name,
        last_termination_reason=reason,
    )


def pod_details(raw: RawPod) -> PodDetails:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    return PodDetails(
        labels=string_map(meta.get("labels")),
        annotations=string_map(meta.get("annotations")),
        phase=str_or_empty(status.get("phase")),
        node_name=str_or_empty(spec.get("nodeName")),
        container_statuses=tuple(container_status(c) for c in status.get("containerStatuses") or []),
        creation_timestamp=str_or_empty(meta.get("creationTimestamp")),
    )


def replica_set_details(raw: RawReplicaSet) -> ReplicaSetDetails:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    return ReplicaSetDetails(
        labels=string_map(meta.get("labels")),
        annotations=string_map(meta.get("annotations")),
        replicas=int_or_zero(spec.get("replicas")),
        available_replicas=int_or_zero(status.get("availableReplicas")),
        ready_replicas=int_or_zero(status.get("readyReplicas")),
    )


def deployment_details(raw: RawDeployment) -> DeploymentDetails:
    strategy = str_or_empty(((raw.get("spec") or {}).get("strategy") or {}).get("type"))
    return DeploymentDetails.of(replica_set_details(raw), strategy=strategy)


def stateful_set_details(raw: RawStatefulSet) -> StatefulSetDetails:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    return StatefulSetDetails(
        labels=string_map(meta.get("labels")),
        annotations=string_map(meta.get("annotations")),
        replicas=int_or_zero(spec.get("replicas")),
        ready_replicas=int_or_zero(status.get("readyReplicas")),
        current_replicas=int_or_zero(status.get("currentReplicas")),
    )


def daemon_set_details(raw: RawDaemonSet) -> DaemonSetDetails:
    meta, status = _meta(raw), raw.get("status") or {}
    return DaemonSetDetails(
        labels=string_map(meta.get("labels")),
        annotations=string_map(meta.get("annotations")),
        desired_number_scheduled=int_or_zero(status.get("desiredNumberScheduled")),
        current_number_scheduled=int_or_zero(status.get("currentNumberScheduled")),
        number_ready=int_or_zero(status.get("numberReady")),
    )


def service_port(raw: RawServicePort) -> ServicePort:
    target = raw.get("targetPort")
    return ServicePort(
        port=int_or_zero(raw.get("port")),
        name=str_or_empty(raw.get("name")),
        target_port=str(target) if isinstance(target, int | str) and not isinstance(target, bool) else "",
        protocol=str_or_empty(raw.get("protocol")),
    )


def service_details(raw: RawService) -> ServiceDetails:
    meta, spec = _meta(raw), raw.get("spec") or {}
    return ServiceDetails(
        labels=string_map(meta.get("labels")),
        annotations=string_map(meta.get("annotations")),
        type=str_or_empty(spec.get("type")),
        cluster_ip=str_or_empty(spec.get("clusterIP")),
        external_ips=tuple(str_or_empty(ip) for ip in spec.get("externalIPs") or []),
        ports=tuple(service_port(p) for p in spec.get("ports") or []),
    )


def node_details(raw: RawNode) -> NodeDetails:
    meta, status = _meta(raw), raw.get("status") or {}
    return NodeDetails(
        labels=string_map(meta.get("labels")),
        conditions=tuple(
            NodeCondition(
                type=str_or_empty(c.get("type")),
                status=str_or_empty(c.get("status")),
                reason=str_or_empty(c.get("reason")),
            )
            for c in status.get("conditions") or []
        ),
        allocatable=string_map(status.get("allocatable")),
    )


def target_context(kind: str, raw: kube.RawObject, *, namespace: NamespaceContext) -> KubernetesContext:
    """The context of a namespaced target that was found: its namespace and its own section."""
    match kind:
        case "Pod":
            return KubernetesContext(namespace=namespace, pod=pod_details(cast(RawPod, raw)))
        case "Deployment":
            return KubernetesContext(
                namespace=namespace, deployment=deployment_details(cast(RawDeployment, raw))
            )
        case "StatefulSet":
            return KubernetesContext(
                namespace=namespace, stateful_set=stateful_set_details(cast(RawStatefulSet, raw))
            )
        case "DaemonSet":
            return KubernetesContext(
                namespace=namespace, daemon_set=daemon_set_details(cast(RawDaemonSet, raw))
            )
        case "ReplicaSet":
            return KubernetesContext(
                namespace=namespace, replica_set=replica_set_details(cast(RawReplicaSet, raw))
            )
        case "Service":
            return KubernetesContext(namespace=namespace, service=service_details(cast(RawService, raw)))
        case _:
            return KubernetesContext(namespace=namespace)


# --- Reading (the async edge) --------------------------------------------------------------------


async def read_cluster_context(
    reader: kube.Reader, target: TargetResource, caches: EnrichmentCaches, member: ClusterMember
) -> KubernetesContext:
    """The context of `target` in the signal's cluster, `member`, with that cluster's id and registry labels.

    A remote cluster is not read at all: this controller has no remote reader, and `reader` reads
    the hub, where a namespace or workload of the same name would be another object. The context
    is then degraded (`REMOTE_READER_UNAVAILABLE`), and classification goes on with what the signal
    and the registry say. Raises as `read_kubernetes_context`.
    """
    if member.remote:
        context = KubernetesContext(degraded_mode=True)
    else:
        context = await read_kubernetes_context(reader, target, caches)
    return replace(
        context, cluster_id=member.id, cluster=ClusterContext(member.labels) if member.labels else None
    )


async def read_kubernetes_context(
    reader: kube.Reader, target: TargetResource, caches: EnrichmentCaches
) -> KubernetesContext:
    """Reads what the cluster knows of `target`; see the module docstring for what each failure means.

    Raises `NamespaceMissing` (permanent) or `kube.TransientApiError` (retry); nothing else from
    the API.
    """
    if target.kind == "Node":
        found = await _read_required(reader, kube.NODES, target, namespace=None)
        if found is None:
            return KubernetesContext(degraded_mode=True)
        return KubernetesContext(node=node_details(cast(RawNode, found)))

    resource = kube.resource_for_kind(target.kind)
    if target.is_cluster_scoped:
        if resource is not None and resource.namespaced:
            raise NamespaceMissing("", target.kind)
        # Cluster-scoped, or a kind we do not know: there is nothing we read, namespace included.
        return KubernetesContext(degraded_mode=True)
    namespace = await read_namespace(reader, target.namespace, caches.namespaces, kind=target.kind)
    if resource is None or target.kind not in _DETAILED_KINDS:
        return KubernetesContext(namespace=namespace)

    raw = await _read_required(reader, resource, target, namespace=target.namespace)
    if raw is None:
        return KubernetesContext(namespace=namespace, degraded_mode=True)
    context = target_context(target.kind, raw, namespace=namespace)
    node_name = context.pod.node_name if context.pod is not None else ""
    owner_chain, node = await asyncio.gather(read_owner_chain(reader, raw), _read_node(reader, node_name))
    return replace(context, owner_chain=owner_chain, node=node)


async def read_namespace(
    reader: kube.Reader, name: str, cache: TTLCache[NamespaceContext], *, kind: str = ""
) -> NamespaceContext:
    """The namespace, from `cache` when fresh. Raises `NamespaceMissing` or `kube.TransientApiError`."""

    async def load() -> NamespaceContext:
        try:
            raw = await reader.get(kube.NAMESPACES, name)
        except kube.TransientApiError:
            raise
        except kube.ApiError as e:
            raise _transient(e, f"reading namespace {name}") from e
        if raw is None:
            raise NamespaceMissing(name, kind or "target")
        return namespace_context(cast(RawNamespace, raw))

    return await cache.get_or_load(name, load)


async def _read_required(
    reader: kube.Reader, resource: kube.Resource, target: TargetResource, *, namespace: str | None
) -> kube.RawObject | None:
    try:
        return await reader.get(resource, target.name, namespace=namespace)
    except kube.TransientApiError:
        raise
    except kube.ApiError as e:
        raise _transient(e, f"reading {target}") from e


async def _read_node(reader: kube.Reader, name: str) -> NodeDetails | None:
    """A Pod's node, if it can be read: it adds detail but is not what the signal is about."""
    if not name:
        return None
    try:
        raw = await reader.get(kube.NODES, name)
    except kube.ApiError as e:
        logger.info("Node %s of the target pod left out: %s", name, e)
        return None
    return node_details(cast(RawNode, raw)) if raw is not None else None


def _transient(error: kube.ApiError, doing: str) -> kube.TransientApiError:
    """Any failed read of a required object is retried: RBAC can be fixed, a server can come back."""
    return kube.TransientApiError(f"{doing}: {error}", status=error.status, reason=error.reason)
