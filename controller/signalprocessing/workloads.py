"""The per-kind sections of `status.kubernetesContext`: what was read of the target itself.

One section per kind the controller reads in detail (Pod, Deployment, ReplicaSet, StatefulSet,
DaemonSet, Service) and the Node (a Node target, or a Pod's node). Each keeps what the CRD declares
for its kind and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict, cast

from controller.rawjson import (
    compact,
    int_or_zero,
    str_or_empty,
    string_map,
)


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


class RawReplicaSetContext(TypedDict, total=False):
    labels: dict[str, str]
    annotations: dict[str, str]
    replicas: int
    availableReplicas: int
    readyReplicas: int


class RawDeploymentContext(RawReplicaSetContext, total=False):
    strategy: str


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
    creation_timestamp: str = ""  # as the API wrote it

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
class ReplicaSetDetails:
    """The replica counts of a ReplicaSet; a Deployment adds its rollout strategy."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 0  # the desired count (spec), 0 when unset
    available_replicas: int = 0
    ready_replicas: int = 0

    @classmethod
    def from_raw(cls, raw: RawReplicaSetContext) -> ReplicaSetDetails:
        return ReplicaSetDetails(
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
class DeploymentDetails(ReplicaSetDetails):
    strategy: str = ""  # spec.strategy.type (RollingUpdate, Recreate)

    @classmethod
    def of(cls, counts: ReplicaSetDetails, *, strategy: str) -> DeploymentDetails:
        return cls(
            labels=counts.labels,
            annotations=counts.annotations,
            replicas=counts.replicas,
            available_replicas=counts.available_replicas,
            ready_replicas=counts.ready_replicas,
            strategy=strategy,
        )

    @classmethod
    def from_raw(cls, raw: RawReplicaSetContext) -> DeploymentDetails:
        strategy = str_or_empty(cast(RawDeploymentContext, raw).get("strategy"))
        return cls.of(ReplicaSetDetails.from_raw(raw), strategy=strategy)

    def to_raw(self) -> RawDeploymentContext:
        return cast(RawDeploymentContext, dict(super().to_raw()) | compact(strategy=self.strategy))


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
