"""`status.kubernetesContext`: what enrichment learnt about a signal's target.

A section is present only when it was read (the target's own kind, a Pod's node), and `to_raw`
leaves out what says nothing, so the status a controller writes and the one it reads back after a
restart are the same value. The policies see these same values (`controller.classify` builds their
input from them); nothing here reads the cluster (`controller.enrich` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict, cast

from controller.rawjson import (
    compact,
    str_or_empty,
    string_map,
)
from controller.signalprocessing.workloads import (
    DaemonSetDetails,
    DeploymentDetails,
    NodeDetails,
    PodDetails,
    RawDaemonSetContext,
    RawDeploymentContext,
    RawNodeContext,
    RawPodContext,
    RawReplicaSetContext,
    RawServiceContext,
    RawStatefulSetContext,
    ReplicaSetDetails,
    ServiceDetails,
    StatefulSetDetails,
)


class RawNamespaceContext(TypedDict, total=False):
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]


class RawDetectedLabels(TypedDict, total=False):
    isProduction: bool
    helmManaged: bool
    gitOpsManaged: bool
    hasPDB: bool
    hasHPA: bool
    networkIsolated: bool
    serviceMesh: bool
    failedDetections: list[str]
    hasResourceLimits: bool


class RawClusterContext(TypedDict, total=False):
    labels: dict[str, str]


class RawWorkloadContext(TypedDict, total=False):
    kind: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]


class RawKubernetesContext(TypedDict, total=False):
    clusterID: str
    cluster: RawClusterContext
    namespace: RawNamespaceContext
    workload: RawWorkloadContext
    pod: RawPodContext
    deployment: RawDeploymentContext
    statefulSet: RawStatefulSetContext
    daemonSet: RawDaemonSetContext
    replicaSet: RawReplicaSetContext
    service: RawServiceContext
    node: RawNodeContext
    ownerChain: list[RawOwnerChainEntry]
    detectedLabels: RawDetectedLabels
    customLabels: dict[str, list[str]]
    degradedMode: bool


class RawOwnerChainEntry(TypedDict, total=False):
    """One item of `status.kubernetesContext.ownerChain`."""

    namespace: str
    kind: str
    name: str


@dataclass(frozen=True)
class OwnerRef:
    """One controlling owner. `namespace` is empty for cluster-scoped owners (a Node, say)."""

    kind: str
    name: str
    namespace: str = ""

    @classmethod
    def from_raw(cls, raw: RawOwnerChainEntry) -> OwnerRef:
        return cls(kind=raw.get("kind", ""), name=raw.get("name", ""), namespace=raw.get("namespace", ""))

    def to_raw(self) -> RawOwnerChainEntry:
        raw = RawOwnerChainEntry(kind=self.kind, name=self.name)
        if self.namespace:
            raw["namespace"] = self.namespace
        return raw


@dataclass(frozen=True)
class NamespaceContext:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: RawNamespaceContext) -> NamespaceContext:
        return cls(
            str_or_empty(raw.get("name")), string_map(raw.get("labels")), string_map(raw.get("annotations"))
        )

    def to_raw(self) -> RawNamespaceContext:
        raw = compact(labels=dict(self.labels), annotations=dict(self.annotations))
        return cast(RawNamespaceContext, {"name": self.name, **raw})


@dataclass(frozen=True)
class ClusterContext:
    """`kubernetesContext.cluster`: the registry's entry of the signal's cluster (`controller.clusters`)."""

    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: RawClusterContext) -> ClusterContext:
        return cls(string_map(raw.get("labels")))

    def to_raw(self) -> RawClusterContext:
        return cast(RawClusterContext, compact(labels=dict(self.labels)))


@dataclass(frozen=True)
class WorkloadContext:
    """`kubernetesContext.workload`: the target as the policies see it (their `input.workload`).

    Its kind and name come from the spec; its labels and annotations from the section enrichment
    read for its kind (a Node has labels only), empty when it was not found or has no section.
    """

    kind: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: RawWorkloadContext) -> WorkloadContext:
        return cls(
            kind=str_or_empty(raw.get("kind")),
            name=str_or_empty(raw.get("name")),
            labels=string_map(raw.get("labels")),
            annotations=string_map(raw.get("annotations")),
        )

    def to_raw(self) -> RawWorkloadContext:
        raw = compact(labels=dict(self.labels), annotations=dict(self.annotations))
        return cast(RawWorkloadContext, {"kind": self.kind, "name": self.name, **raw})


@dataclass(frozen=True)
class DetectedLabels:
    """Facts about the target's surroundings (BR-SP-101); `controller.detect` decides them.

    `failed_detections` names the labels that are false only because the list behind them failed
    (BR-SP-103); see `controller.detect` for the names.
    """

    git_ops_managed: bool = False
    has_pdb: bool = False
    has_hpa: bool = False
    helm_managed: bool = False
    network_isolated: bool = False
    service_mesh: bool = False
    is_production: bool = False
    failed_detections: tuple[str, ...] = ()
    # Nothing here detects resource limits, so this stays None (unchecked) unless another writer of
    # the CRD (the Go original) recorded it; it is kept, not claimed.
    has_resource_limits: bool | None = None

    @classmethod
    def from_raw(cls, raw: RawDetectedLabels) -> DetectedLabels:
        return cls(
            git_ops_managed=raw.get("gitOpsManaged") is True,
            has_pdb=raw.get("hasPDB") is True,
            has_hpa=raw.get("hasHPA") is True,
            helm_managed=raw.get("helmManaged") is True,
            network_isolated=raw.get("networkIsolated") is True,
            service_mesh=raw.get("serviceMesh") is True,
            is_production=raw.get("isProduction") is True,
            failed_detections=tuple(str_or_empty(name) for name in raw.get("failedDetections") or []),
            has_resource_limits=limits if isinstance(limits := raw.get("hasResourceLimits"), bool) else None,
        )

    def to_raw(self) -> RawDetectedLabels:
        # Every label is written, false included: false is an answer ("checked, not there").
        # `hasResourceLimits` only when known: nothing detects it, so writing false would claim a check.
        raw = RawDetectedLabels(
            gitOpsManaged=self.git_ops_managed,
            hasPDB=self.has_pdb,
            hasHPA=self.has_hpa,
            helmManaged=self.helm_managed,
            networkIsolated=self.network_isolated,
            serviceMesh=self.service_mesh,
            isProduction=self.is_production,
        )
        if self.failed_detections:
            raw["failedDetections"] = list(self.failed_detections)
        if self.has_resource_limits is not None:
            raw["hasResourceLimits"] = self.has_resource_limits
        return raw


@dataclass(frozen=True)
class KubernetesContext:
    """`status.kubernetesContext`: at most one of the per-kind sections is set, matching the target."""

    namespace: NamespaceContext | None = None
    cluster_id: str = ""  # the cluster described: spec.signal.clusterID, else the hub's own id
    cluster: ClusterContext | None = None  # the registry's labels of that cluster, when it has any
    workload: WorkloadContext | None = None  # the target as the policies see it (`workload_of`)
    pod: PodDetails | None = None
    deployment: DeploymentDetails | None = None
    stateful_set: StatefulSetDetails | None = None
    daemon_set: DaemonSetDetails | None = None
    replica_set: ReplicaSetDetails | None = None
    service: ServiceDetails | None = None
    node: NodeDetails | None = None  # a Node target, or a Pod's node
    owner_chain: tuple[OwnerRef, ...] = ()
    detected_labels: DetectedLabels | None = None
    custom_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    degraded_mode: bool = False  # the target was not found; the context has what could be read

    @property
    def namespace_labels(self) -> Mapping[str, str]:
        return self.namespace.labels if self.namespace else {}

    @property
    def workload_labels(self) -> Mapping[str, str]:
        """The labels of the target when it is a workload controller (Deployment, StatefulSet, ...)."""
        for workload in (self.deployment, self.stateful_set, self.daemon_set, self.replica_set):
            if workload is not None:
                return workload.labels
        return {}

    def workload_of(self, kind: str, name: str) -> WorkloadContext:
        """The target `kind` `name` as the policies see it, from the section read for its kind."""
        sections = {
            "pod": self.pod,
            "deployment": self.deployment,
            "statefulset": self.stateful_set,
            "daemonset": self.daemon_set,
            "replicaset": self.replica_set,
            "service": self.service,
        }
        section = sections.get(kind.lower())
        if section is not None:
            return WorkloadContext(kind, name, section.labels, section.annotations)
        if kind.lower() == "node" and self.node is not None:
            return WorkloadContext(kind, name, self.node.labels)  # enrichment keeps no Node annotations
        return WorkloadContext(kind, name)

    @classmethod
    def from_raw(cls, raw: RawKubernetesContext) -> KubernetesContext:
        namespace, pod, deployment = raw.get("namespace"), raw.get("pod"), raw.get("deployment")
        stateful_set, daemon_set, replica_set = (
            raw.get("statefulSet"),
            raw.get("daemonSet"),
            raw.get("replicaSet"),
        )
        service, node, detected = raw.get("service"), raw.get("node"), raw.get("detectedLabels")
        cluster, workload = raw.get("cluster"), raw.get("workload")
        return cls(
            namespace=NamespaceContext.from_raw(namespace) if namespace is not None else None,
            cluster_id=str_or_empty(raw.get("clusterID")),
            cluster=ClusterContext.from_raw(cluster) if cluster is not None else None,
            workload=WorkloadContext.from_raw(workload) if workload is not None else None,
            pod=PodDetails.from_raw(pod) if pod is not None else None,
            deployment=DeploymentDetails.from_raw(deployment) if deployment is not None else None,
            stateful_set=StatefulSetDetails.from_raw(stateful_set) if stateful_set is not None else None,
            daemon_set=DaemonSetDetails.from_raw(daemon_set) if daemon_set is not None else None,
            replica_set=ReplicaSetDetails.from_raw(replica_set) if replica_set is not None else None,
            service=ServiceDetails.from_raw(service) if service is not None else None,
            node=NodeDetails.from_raw(node) if node is not None else None,
            owner_chain=tuple(OwnerRef.from_raw(o) for o in raw.get("ownerChain") or []),
            detected_labels=DetectedLabels.from_raw(detected) if detected is not None else None,
            custom_labels={
                str(k): tuple(str_or_empty(v) for v in values)
                for k, values in (raw.get("customLabels") or {}).items()
                if isinstance(values, list)
            },
            degraded_mode=raw.get("degradedMode") is True,
        )

    def to_raw(self) -> RawKubernetesContext:
        """The CRD's shape. A section that was not read is left out; `degradedMode` is always written."""
        raw = RawKubernetesContext(degradedMode=self.degraded_mode)
        if self.cluster_id:
            raw["clusterID"] = self.cluster_id
        if self.cluster is not None:
            raw["cluster"] = self.cluster.to_raw()
        if self.namespace is not None:
            raw["namespace"] = self.namespace.to_raw()
        if self.workload is not None:
            raw["workload"] = self.workload.to_raw()
        if self.pod is not None:
            raw["pod"] = self.pod.to_raw()
        if self.deployment is not None:
            raw["deployment"] = self.deployment.to_raw()
        if self.stateful_set is not None:
            raw["statefulSet"] = self.stateful_set.to_raw()
        if self.daemon_set is not None:
            raw["daemonSet"] = self.daemon_set.to_raw()
        if self.replica_set is not None:
            raw["replicaSet"] = self.replica_set.to_raw()
        if self.service is not None:
            raw["service"] = self.service.to_raw()
        if self.node is not None:
            raw["node"] = self.node.to_raw()
        if self.owner_chain:
            raw["ownerChain"] = [owner.to_raw() for owner in self.owner_chain]
        if self.detected_labels is not None:
            raw["detectedLabels"] = self.detected_labels.to_raw()
        if self.custom_labels:
            raw["customLabels"] = {key: list(values) for key, values in self.custom_labels.items()}
        return raw
