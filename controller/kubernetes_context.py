"""The shape of `status.kubernetesContext`: what enrichment learnt about a signal's target.

Typed, frozen values with `from_raw`/`to_raw` in the CRD's camelCase. A section is present only
when it was read (the target's own kind, a Pod's node), and `to_raw` leaves out what says nothing,
so the status a controller writes and the one it reads back after a restart are the same value.
The policies see these same values (`controller.classify` builds their input from them); nothing
here reads the cluster (`controller.enrich` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict, cast

from controller.rawjson import compact, int_or_zero, str_or_empty, string_map

# --- The status shape: status.kubernetesContext --------------------------------------------------


class RawNamespaceContext(TypedDict, total=False):
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]


class RawContainerStatusContext(TypedDict, total=False):
    name: str
    ready: bool
    restartCount: int
    state: str
    lastTerminationReason: str


class RawPodContext(TypedDict, total=False):
    labels: dict[str, str]
    annotations: dict[str, str]
    phase: str
    nodeName: str
    containerStatuses: list[RawContainerStatusContext]
    creationTimestamp: str


class RawDeploymentContext(TypedDict, total=False):
    labels: dict[str, str]
    annotations: dict[str, str]
    replicas: int
    availableReplicas: int
    readyReplicas: int
    strategy: str


class RawReplicaSetContext(TypedDict, total=False):
    labels: dict[str, str]
    annotations: dict[str, str]
    replicas: int
    availableReplicas: int
    readyReplicas: int


class RawStatefulSetContext(TypedDict, total=False):
    labels: dict[str, str]
    annotations: dict[str, str]
    replicas: int
    readyReplicas: int
    currentReplicas: int


class RawDaemonSetContext(TypedDict, total=False):
    labels: dict[str, str]
    annotations: dict[str, str]
    desiredNumberScheduled: int
    currentNumberScheduled: int
    numberReady: int


class RawServicePortContext(TypedDict, total=False):
    name: str
    port: int
    targetPort: str
    protocol: str


class RawServiceContext(TypedDict, total=False):
    labels: dict[str, str]
    annotations: dict[str, str]
    type: str
    clusterIP: str
    externalIPs: list[str]
    ports: list[RawServicePortContext]


class RawNodeConditionContext(TypedDict, total=False):
    type: str
    status: str
    reason: str


class RawNodeContext(TypedDict, total=False):
    labels: dict[str, str]
    conditions: list[RawNodeConditionContext]
    allocatable: dict[str, str]


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


class RawKubernetesContext(TypedDict, total=False):
    namespace: RawNamespaceContext
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


# --- The typed context ---------------------------------------------------------------------------


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
class ContainerStatus:
    name: str
    ready: bool = False
    restart_count: int = 0
    state: str = ""  # Running, Waiting or Terminated; empty when the API gives none
    last_termination_reason: str = ""  # only while the container is Terminated

    @classmethod
    def from_raw(cls, raw: RawContainerStatusContext) -> ContainerStatus:
        return cls(
            name=str_or_empty(raw.get("name")),
            ready=raw.get("ready") is True,
            restart_count=int_or_zero(raw.get("restartCount")),
            state=str_or_empty(raw.get("state")),
            last_termination_reason=str_or_empty(raw.get("lastTerminationReason")),
        )

    def to_raw(self) -> RawContainerStatusContext:
        optional = compact(state=self.state, lastTerminationReason=self.last_termination_reason)
        required = {"name": self.name, "ready": self.ready, "restartCount": self.restart_count}
        return cast(RawContainerStatusContext, required | optional)


@dataclass(frozen=True)
class PodDetails:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    phase: str = ""
    node_name: str = ""
    container_statuses: tuple[ContainerStatus, ...] = ()
    creation_timestamp: str = ""  # as the API wrote it; the custom-labels policy sees it

    @property
    def restart_count(self) -> int:
        """The pod's restarts: its containers' added up, as `kubectl get pods` counts them."""
        return sum(container.restart_count for container in self.container_statuses)

    @classmethod
    def from_raw(cls, raw: RawPodContext) -> PodDetails:
        return cls(
            labels=string_map(raw.get("labels")),
            annotations=string_map(raw.get("annotations")),
            phase=str_or_empty(raw.get("phase")),
            node_name=str_or_empty(raw.get("nodeName")),
            container_statuses=tuple(ContainerStatus.from_raw(c) for c in raw.get("containerStatuses") or []),
            creation_timestamp=str_or_empty(raw.get("creationTimestamp")),
        )

    def to_raw(self) -> RawPodContext:
        return cast(
            RawPodContext,
            compact(
                labels=dict(self.labels),
                annotations=dict(self.annotations),
                phase=self.phase,
                nodeName=self.node_name,
                containerStatuses=[c.to_raw() for c in self.container_statuses],
                creationTimestamp=self.creation_timestamp,
            ),
        )


@dataclass(frozen=True)
class DeploymentDetails:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 0  # the desired count (spec), 0 when unset
    available_replicas: int = 0
    ready_replicas: int = 0
    strategy: str = ""  # spec.strategy.type of a Deployment (RollingUpdate, Recreate); a ReplicaSet has none

    @classmethod
    def from_raw(cls, raw: RawDeploymentContext) -> DeploymentDetails:
        return cls(
            labels=string_map(raw.get("labels")),
            annotations=string_map(raw.get("annotations")),
            replicas=int_or_zero(raw.get("replicas")),
            available_replicas=int_or_zero(raw.get("availableReplicas")),
            ready_replicas=int_or_zero(raw.get("readyReplicas")),
            strategy=str_or_empty(raw.get("strategy")),
        )

    def to_raw(self) -> RawDeploymentContext:
        return cast(
            RawDeploymentContext,
            compact(labels=dict(self.labels), annotations=dict(self.annotations), strategy=self.strategy)
            | {
                "replicas": self.replicas,
                "availableReplicas": self.available_replicas,
                "readyReplicas": self.ready_replicas,
            },
        )


@dataclass(frozen=True)
class ReplicaSetDetails:
    """What a Deployment reports, less the rollout strategy: a ReplicaSet has none."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 0  # the desired count (spec), 0 when unset
    available_replicas: int = 0
    ready_replicas: int = 0

    @classmethod
    def from_raw(cls, raw: RawReplicaSetContext) -> ReplicaSetDetails:
        return cls(
            labels=string_map(raw.get("labels")),
            annotations=string_map(raw.get("annotations")),
            replicas=int_or_zero(raw.get("replicas")),
            available_replicas=int_or_zero(raw.get("availableReplicas")),
            ready_replicas=int_or_zero(raw.get("readyReplicas")),
        )

    def to_raw(self) -> RawReplicaSetContext:
        return cast(
            RawReplicaSetContext,
            compact(labels=dict(self.labels), annotations=dict(self.annotations))
            | {
                "replicas": self.replicas,
                "availableReplicas": self.available_replicas,
                "readyReplicas": self.ready_replicas,
            },
        )


@dataclass(frozen=True)
class StatefulSetDetails:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 0  # the desired count (spec), 0 when unset
    ready_replicas: int = 0
    current_replicas: int = 0

    @classmethod
    def from_raw(cls, raw: RawStatefulSetContext) -> StatefulSetDetails:
        return cls(
            labels=string_map(raw.get("labels")),
            annotations=string_map(raw.get("annotations")),
            replicas=int_or_zero(raw.get("replicas")),
            ready_replicas=int_or_zero(raw.get("readyReplicas")),
            current_replicas=int_or_zero(raw.get("currentReplicas")),
        )

    def to_raw(self) -> RawStatefulSetContext:
        return cast(
            RawStatefulSetContext,
            compact(labels=dict(self.labels), annotations=dict(self.annotations))
            | {
                "replicas": self.replicas,
                "readyReplicas": self.ready_replicas,
                "currentReplicas": self.current_replicas,
            },
        )


@dataclass(frozen=True)
class DaemonSetDetails:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    desired_number_scheduled: int = 0
    current_number_scheduled: int = 0
    number_ready: int = 0

    @classmethod
    def from_raw(cls, raw: RawDaemonSetContext) -> DaemonSetDetails:
        return cls(
            labels=string_map(raw.get("labels")),
            annotations=string_map(raw.get("annotations")),
            desired_number_scheduled=int_or_zero(raw.get("desiredNumberScheduled")),
            current_number_scheduled=int_or_zero(raw.get("currentNumberScheduled")),
            number_ready=int_or_zero(raw.get("numberReady")),
        )

    def to_raw(self) -> RawDaemonSetContext:
        return cast(
            RawDaemonSetContext,
            compact(labels=dict(self.labels), annotations=dict(self.annotations))
            | {
                "desiredNumberScheduled": self.desired_number_scheduled,
                "currentNumberScheduled": self.current_number_scheduled,
                "numberReady": self.number_ready,
            },
        )


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = ""
    target_port: str = ""  # the IntOrString in its string form ("8080" or "http")
    protocol: str = ""

    @classmethod
    def from_raw(cls, raw: RawServicePortContext) -> ServicePort:
        return cls(
            port=int_or_zero(raw.get("port")),
            name=str_or_empty(raw.get("name")),
            target_port=str_or_empty(raw.get("targetPort")),
            protocol=str_or_empty(raw.get("protocol")),
        )

    def to_raw(self) -> RawServicePortContext:
        optional = compact(name=self.name, targetPort=self.target_port, protocol=self.protocol)
        return cast(RawServicePortContext, {"port": self.port} | optional)


@dataclass(frozen=True)
class ServiceDetails:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    type: str = ""
    cluster_ip: str = ""
    external_ips: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()

    @classmethod
    def from_raw(cls, raw: RawServiceContext) -> ServiceDetails:
        return cls(
            labels=string_map(raw.get("labels")),
            annotations=string_map(raw.get("annotations")),
            type=str_or_empty(raw.get("type")),
            cluster_ip=str_or_empty(raw.get("clusterIP")),
            external_ips=tuple(str_or_empty(ip) for ip in raw.get("externalIPs") or []),
            ports=tuple(ServicePort.from_raw(p) for p in raw.get("ports") or []),
        )

    def to_raw(self) -> RawServiceContext:
        return cast(
            RawServiceContext,
            compact(
                labels=dict(self.labels),
                annotations=dict(self.annotations),
                type=self.type,
                clusterIP=self.cluster_ip,
                externalIPs=list(self.external_ips),
                ports=[p.to_raw() for p in self.ports],
            ),
        )


@dataclass(frozen=True)
class NodeCondition:
    type: str
    status: str
    reason: str = ""

    @classmethod
    def from_raw(cls, raw: RawNodeConditionContext) -> NodeCondition:
        return cls(
            type=str_or_empty(raw.get("type")),
            status=str_or_empty(raw.get("status")),
            reason=str_or_empty(raw.get("reason")),
        )

    def to_raw(self) -> RawNodeConditionContext:
        optional = compact(reason=self.reason)
        return cast(RawNodeConditionContext, {"type": self.type, "status": self.status} | optional)


@dataclass(frozen=True)
class NodeDetails:
    labels: Mapping[str, str] = field(default_factory=dict)
    conditions: tuple[NodeCondition, ...] = ()
    allocatable: Mapping[str, str] = field(default_factory=dict)  # resource name -> quantity

    @classmethod
    def from_raw(cls, raw: RawNodeContext) -> NodeDetails:
        return cls(
            labels=string_map(raw.get("labels")),
            conditions=tuple(NodeCondition.from_raw(c) for c in raw.get("conditions") or []),
            allocatable=string_map(raw.get("allocatable")),
        )

    def to_raw(self) -> RawNodeContext:
        return cast(
            RawNodeContext,
            compact(
                labels=dict(self.labels),
                conditions=[c.to_raw() for c in self.conditions],
                allocatable=dict(self.allocatable),
            ),
        )


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

    @classmethod
    def from_raw(cls, raw: RawKubernetesContext) -> KubernetesContext:
        namespace, pod, deployment = raw.get("namespace"), raw.get("pod"), raw.get("deployment")
        stateful_set, daemon_set, replica_set = (
            raw.get("statefulSet"),
            raw.get("daemonSet"),
            raw.get("replicaSet"),
        )
        service, node, detected = raw.get("service"), raw.get("node"), raw.get("detectedLabels")
        return cls(
            namespace=NamespaceContext.from_raw(namespace) if namespace is not None else None,
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
        if self.namespace is not None:
            raw["namespace"] = self.namespace.to_raw()
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
