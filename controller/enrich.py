"""Kubernetes enrichment: what the cluster says about a signal's target (BR-SP-001).

This module owns the shape of ``status.kubernetesContext`` (``KubernetesContext`` and its parts,
``to_raw``/``from_raw`` in the CRD's camelCase) and the reads that fill it. Reading is one async
function, ``read_kubernetes_context``; everything it does with what it read is a pure function
(``pod_details``, ``node_details``, ``target_context``, ...) that unit tests call with plain dicts.

Which objects are read, per target kind: the namespace (cached), then the target itself, then for a
Pod its node; for every target object read, its owner chain (``controller.ownerchain``). A Node
target reads the node only; any other kind reads the namespace only.

What an answer means:

* target not found: ``degraded_mode=True``, still a success (also for a Node);
* target namespace not found (or no namespace for a kind that needs one): ``NamespaceMissing``,
  a permanent failure;
* any other error reading the namespace or the target: ``kube.TransientApiError``, retried;
* the pod's node and the owner chain are supplementary: a failure leaves them out, quietly.

Detected labels (``controller.detect``) and custom labels are added to the context by their own
stages; this module only carries them in the status shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypedDict, cast

from controller import kube
from controller.ownerchain import OwnerRef, RawOwnerChainEntry, read_owner_chain
from controller.ttlcache import DEFAULT_MAX_SIZE, Clock, TTLCache

logger = logging.getLogger(__name__)

# TTLs of reference 3.3/3.4: namespaces change rarely; HPAs are the likeliest to come and go.
NAMESPACE_TTL: Final = 300.0
PDB_TTL: Final = 300.0
HPA_TTL: Final = 60.0
NETWORK_POLICY_TTL: Final = 300.0

# Target kinds with a section of their own in the context; any other namespaced kind gets the
# namespace only (a Node is handled apart: it has no namespace).
_DETAILED_KINDS: Final = frozenset({"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Service"})


class NamespaceMissing(Exception):
    """The target's namespace does not exist (or the target names none): enrichment cannot succeed."""

    def __init__(self, namespace: str, kind: str) -> None:
        super().__init__(
            f'namespace "{namespace}" of the target {kind} does not exist'
            if namespace
            else f"the target {kind} names no namespace"
        )
        self.namespace = namespace


# --- The API objects read (only the fields used) -------------------------------------------------


class RawTargetResource(TypedDict, total=False):
    """`spec.signal.targetResource`."""

    kind: str
    name: str
    namespace: str


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


RawReplicaSetContext = RawDeploymentContext


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


# --- Helpers for untrusted JSON ------------------------------------------------------------------


def _strings(value: object) -> dict[str, str]:
    """A string map from JSON; null (a nil map) becomes empty."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _compact(**fields: object) -> dict[str, object]:
    """Drops the fields that say nothing (None, "", empty maps and lists); keeps 0 and False."""
    return {k: v for k, v in fields.items() if v is not None and v != "" and v != {} and v != []}


def _meta(raw: Mapping[str, Any]) -> kube.RawMeta:
    return cast(kube.RawMeta, raw.get("metadata") or {})


# --- The typed context ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetResource:
    """The object a signal is about (`spec.signal.targetResource`). Kinds are case-sensitive."""

    kind: str
    name: str
    namespace: str = ""

    @classmethod
    def from_raw(cls, raw: RawTargetResource) -> TargetResource:
        return cls(
            kind=_str(raw.get("kind")), name=_str(raw.get("name")), namespace=_str(raw.get("namespace"))
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class NamespaceContext:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: RawNamespaceContext) -> NamespaceContext:
        return cls(_str(raw.get("name")), _strings(raw.get("labels")), _strings(raw.get("annotations")))

    def to_raw(self) -> RawNamespaceContext:
        raw = _compact(labels=dict(self.labels), annotations=dict(self.annotations))
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
            name=_str(raw.get("name")),
            ready=raw.get("ready") is True,
            restart_count=_int(raw.get("restartCount")),
            state=_str(raw.get("state")),
            last_termination_reason=_str(raw.get("lastTerminationReason")),
        )

    def to_raw(self) -> RawContainerStatusContext:
        optional = _compact(state=self.state, lastTerminationReason=self.last_termination_reason)
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
            labels=_strings(raw.get("labels")),
            annotations=_strings(raw.get("annotations")),
            phase=_str(raw.get("phase")),
            node_name=_str(raw.get("nodeName")),
            container_statuses=tuple(ContainerStatus.from_raw(c) for c in raw.get("containerStatuses") or []),
            creation_timestamp=_str(raw.get("creationTimestamp")),
        )

    def to_raw(self) -> RawPodContext:
        return cast(
            RawPodContext,
            _compact(
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
            labels=_strings(raw.get("labels")),
            annotations=_strings(raw.get("annotations")),
            replicas=_int(raw.get("replicas")),
            available_replicas=_int(raw.get("availableReplicas")),
            ready_replicas=_int(raw.get("readyReplicas")),
            strategy=_str(raw.get("strategy")),
        )

    def to_raw(self) -> RawDeploymentContext:
        return cast(
            RawDeploymentContext,
            _compact(labels=dict(self.labels), annotations=dict(self.annotations), strategy=self.strategy)
            | {
                "replicas": self.replicas,
                "availableReplicas": self.available_replicas,
                "readyReplicas": self.ready_replicas,
            },
        )


# A ReplicaSet reports exactly what a Deployment does, in the same CRD shape.
ReplicaSetDetails = DeploymentDetails


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
            labels=_strings(raw.get("labels")),
            annotations=_strings(raw.get("annotations")),
            replicas=_int(raw.get("replicas")),
            ready_replicas=_int(raw.get("readyReplicas")),
            current_replicas=_int(raw.get("currentReplicas")),
        )

    def to_raw(self) -> RawStatefulSetContext:
        return cast(
            RawStatefulSetContext,
            _compact(labels=dict(self.labels), annotations=dict(self.annotations))
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
            labels=_strings(raw.get("labels")),
            annotations=_strings(raw.get("annotations")),
            desired_number_scheduled=_int(raw.get("desiredNumberScheduled")),
            current_number_scheduled=_int(raw.get("currentNumberScheduled")),
            number_ready=_int(raw.get("numberReady")),
        )

    def to_raw(self) -> RawDaemonSetContext:
        return cast(
            RawDaemonSetContext,
            _compact(labels=dict(self.labels), annotations=dict(self.annotations))
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
            port=_int(raw.get("port")),
            name=_str(raw.get("name")),
            target_port=_str(raw.get("targetPort")),
            protocol=_str(raw.get("protocol")),
        )

    def to_raw(self) -> RawServicePortContext:
        optional = _compact(name=self.name, targetPort=self.target_port, protocol=self.protocol)
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
            labels=_strings(raw.get("labels")),
            annotations=_strings(raw.get("annotations")),
            type=_str(raw.get("type")),
            cluster_ip=_str(raw.get("clusterIP")),
            external_ips=tuple(_str(ip) for ip in raw.get("externalIPs") or []),
            ports=tuple(ServicePort.from_raw(p) for p in raw.get("ports") or []),
        )

    def to_raw(self) -> RawServiceContext:
        return cast(
            RawServiceContext,
            _compact(
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
        return cls(type=_str(raw.get("type")), status=_str(raw.get("status")), reason=_str(raw.get("reason")))

    def to_raw(self) -> RawNodeConditionContext:
        optional = _compact(reason=self.reason)
        return cast(RawNodeConditionContext, {"type": self.type, "status": self.status} | optional)


@dataclass(frozen=True)
class NodeDetails:
    labels: Mapping[str, str] = field(default_factory=dict)
    conditions: tuple[NodeCondition, ...] = ()
    allocatable: Mapping[str, str] = field(default_factory=dict)  # resource name -> quantity

    @classmethod
    def from_raw(cls, raw: RawNodeContext) -> NodeDetails:
        return cls(
            labels=_strings(raw.get("labels")),
            conditions=tuple(NodeCondition.from_raw(c) for c in raw.get("conditions") or []),
            allocatable=_strings(raw.get("allocatable")),
        )

    def to_raw(self) -> RawNodeContext:
        return cast(
            RawNodeContext,
            _compact(
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
            failed_detections=tuple(_str(name) for name in raw.get("failedDetections") or []),
        )

    def to_raw(self) -> RawDetectedLabels:
        # Every label is written, false included: false is an answer ("checked, not there").
        # `hasResourceLimits` is not: nothing detects it, so writing false would claim a check.
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
                str(k): tuple(_str(v) for v in values)
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


# --- From API objects to the context (pure) ------------------------------------------------------


def namespace_context(raw: RawNamespace) -> NamespaceContext:
    meta = _meta(raw)
    return NamespaceContext(
        _str(meta.get("name")), _strings(meta.get("labels")), _strings(meta.get("annotations"))
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
        name, reason = "Terminated", _str(terminated.get("reason"))
    return ContainerStatus(
        name=_str(raw.get("name")),
        ready=raw.get("ready") is True,
        restart_count=_int(raw.get("restartCount")),
        state=name,
        last_termination_reason=reason,
    )


def pod_details(raw: RawPod) -> PodDetails:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    return PodDetails(
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        phase=_str(status.get("phase")),
        node_name=_str(spec.get("nodeName")),
        container_statuses=tuple(container_status(c) for c in status.get("containerStatuses") or []),
        creation_timestamp=_str(meta.get("creationTimestamp")),
    )


def deployment_details(raw: RawDeployment) -> DeploymentDetails:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    return DeploymentDetails(
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        replicas=_int(spec.get("replicas")),
        available_replicas=_int(status.get("availableReplicas")),
        ready_replicas=_int(status.get("readyReplicas")),
        strategy=_str((spec.get("strategy") or {}).get("type")),
    )


def replica_set_details(raw: RawReplicaSet) -> ReplicaSetDetails:
    return deployment_details(raw)


def stateful_set_details(raw: RawStatefulSet) -> StatefulSetDetails:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    return StatefulSetDetails(
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        replicas=_int(spec.get("replicas")),
        ready_replicas=_int(status.get("readyReplicas")),
        current_replicas=_int(status.get("currentReplicas")),
    )


def daemon_set_details(raw: RawDaemonSet) -> DaemonSetDetails:
    meta, status = _meta(raw), raw.get("status") or {}
    return DaemonSetDetails(
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        desired_number_scheduled=_int(status.get("desiredNumberScheduled")),
        current_number_scheduled=_int(status.get("currentNumberScheduled")),
        number_ready=_int(status.get("numberReady")),
    )


def service_port(raw: RawServicePort) -> ServicePort:
    target = raw.get("targetPort")
    return ServicePort(
        port=_int(raw.get("port")),
        name=_str(raw.get("name")),
        target_port=str(target) if isinstance(target, int | str) and not isinstance(target, bool) else "",
        protocol=_str(raw.get("protocol")),
    )


def service_details(raw: RawService) -> ServiceDetails:
    meta, spec = _meta(raw), raw.get("spec") or {}
    return ServiceDetails(
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        type=_str(spec.get("type")),
        cluster_ip=_str(spec.get("clusterIP")),
        external_ips=tuple(_str(ip) for ip in spec.get("externalIPs") or []),
        ports=tuple(service_port(p) for p in spec.get("ports") or []),
    )


def node_details(raw: RawNode) -> NodeDetails:
    meta, status = _meta(raw), raw.get("status") or {}
    return NodeDetails(
        labels=_strings(meta.get("labels")),
        conditions=tuple(
            NodeCondition(
                type=_str(c.get("type")), status=_str(c.get("status")), reason=_str(c.get("reason"))
            )
            for c in status.get("conditions") or []
        ),
        allocatable=_strings(status.get("allocatable")),
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


@dataclass(frozen=True)
class EnrichmentCaches:
    """The per-namespace caches of the enrichment stage. Create one set per controller and reuse it.

    Keys are namespace names. The PDB, HPA and NetworkPolicy lists are read by `controller.detect`.
    """

    namespaces: TTLCache[NamespaceContext]
    pdbs: TTLCache[tuple[kube.RawObject, ...]]
    hpas: TTLCache[tuple[kube.RawObject, ...]]
    network_policies: TTLCache[tuple[kube.RawObject, ...]]

    @classmethod
    def create(
        cls,
        *,
        clock: Clock = time.monotonic,
        max_size: int = DEFAULT_MAX_SIZE,
        namespace_ttl: float = NAMESPACE_TTL,
        pdb_ttl: float = PDB_TTL,
        hpa_ttl: float = HPA_TTL,
        network_policy_ttl: float = NETWORK_POLICY_TTL,
    ) -> EnrichmentCaches:
        return cls(
            namespaces=TTLCache(namespace_ttl, max_size=max_size, clock=clock),
            pdbs=TTLCache(pdb_ttl, max_size=max_size, clock=clock),
            hpas=TTLCache(hpa_ttl, max_size=max_size, clock=clock),
            network_policies=TTLCache(network_policy_ttl, max_size=max_size, clock=clock),
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

    resource = kube.resource_for_kind(target.kind) if target.kind in _DETAILED_KINDS else None
    if not target.namespace:
        if resource is not None:
            raise NamespaceMissing("", target.kind)
        return KubernetesContext()  # a cluster-scoped kind we have nothing to say about
    namespace = await read_namespace(reader, target.namespace, caches.namespaces, kind=target.kind)
    if resource is None:
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
