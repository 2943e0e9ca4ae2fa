"""The SignalProcessing resource as one typed value: metadata, spec and status.

Everything in the controller reads a SignalProcessing through this model and never through string
keys: the handler turns the watched object into a `SignalProcessing` once (`from_raw`), the
pipeline's steps return a new `Status`, and the write sends the top-level status fields that
changed (`status_patch`). `to_raw` gives the CRD's camelCase back, field for field, so a status
read back after a restart is the same value the controller wrote (`crds/signalprocessing.yaml` is
held against this model by a test, both ways).

Reading is lenient the way `controller.rawjson` is: the API server validated the object against
the CRD, so an absent field means its zero value, never an error.

The modules follow the CRD: `vocabulary` (phases, conditions, failure reasons), `times`, `spec`,
`status`, `context` and `workloads` (`status.kubernetesContext`), `resource` (the whole object).
Import from the package; the modules are how it is kept readable, not an API.
"""

from controller.signalprocessing.context import (
    DetectedLabels,
    KubernetesContext,
    NamespaceContext,
    OwnerRef,
    RawDetectedLabels,
    RawKubernetesContext,
    RawNamespaceContext,
    RawOwnerChainEntry,
)
from controller.signalprocessing.resource import (
    ObjectMeta,
    SignalProcessing,
)
from controller.signalprocessing.spec import (
    EnrichmentConfig,
    RawEnrichmentConfig,
    RawObjectReference,
    RawSignal,
    RawSpec,
    RawTargetResource,
    RemediationRequestRef,
    Signal,
    Spec,
    TargetResource,
)
from controller.signalprocessing.status import (
    PRIORITY_SOURCE,
    BusinessClassification,
    Condition,
    EnvironmentClassification,
    PriorityAssignment,
    RawBusinessClassification,
    RawCondition,
    RawEnvironmentClassification,
    RawPriorityAssignment,
    RawRecoveryContext,
    RawStatus,
    RecoveryContext,
    Status,
    status_patch,
)
from controller.signalprocessing.times import (
    go_duration,
    optional_time,
    parse_go_duration,
    parse_timestamp,
    timestamp,
)
from controller.signalprocessing.vocabulary import (
    API_VERSION,
    KIND,
    ConditionReason,
    ConditionType,
    FailureReason,
    Phase,
)
from controller.signalprocessing.workloads import (
    ContainerStatus,
    DaemonSetDetails,
    DeploymentDetails,
    NodeCondition,
    NodeDetails,
    PodDetails,
    RawContainerStatusContext,
    RawDaemonSetContext,
    RawDeploymentContext,
    RawNodeConditionContext,
    RawNodeContext,
    RawPodContext,
    RawReplicaSetContext,
    RawServiceContext,
    RawServicePortContext,
    RawStatefulSetContext,
    ReplicaSetDetails,
    ServiceDetails,
    ServicePort,
    StatefulSetDetails,
)

__all__ = [
    "API_VERSION",
    "KIND",
    "PRIORITY_SOURCE",
    "BusinessClassification",
    "Condition",
    "ConditionReason",
    "ConditionType",
    "ContainerStatus",
    "DaemonSetDetails",
    "DeploymentDetails",
    "DetectedLabels",
    "EnrichmentConfig",
    "EnvironmentClassification",
    "FailureReason",
    "KubernetesContext",
    "NamespaceContext",
    "NodeCondition",
    "NodeDetails",
    "ObjectMeta",
    "OwnerRef",
    "Phase",
    "PodDetails",
    "PriorityAssignment",
    "RawBusinessClassification",
    "RawCondition",
    "RawContainerStatusContext",
    "RawDaemonSetContext",
    "RawDeploymentContext",
    "RawDetectedLabels",
    "RawEnrichmentConfig",
    "RawEnvironmentClassification",
    "RawKubernetesContext",
    "RawNamespaceContext",
    "RawNodeConditionContext",
    "RawNodeContext",
    "RawObjectReference",
    "RawOwnerChainEntry",
    "RawPodContext",
    "RawPriorityAssignment",
    "RawRecoveryContext",
    "RawReplicaSetContext",
    "RawServiceContext",
    "RawServicePortContext",
    "RawSignal",
    "RawSpec",
    "RawStatefulSetContext",
    "RawStatus",
    "RawTargetResource",
    "RecoveryContext",
    "RemediationRequestRef",
    "ReplicaSetDetails",
    "ServiceDetails",
    "ServicePort",
    "Signal",
    "SignalProcessing",
    "Spec",
    "StatefulSetDetails",
    "Status",
    "TargetResource",
    "go_duration",
    "optional_time",
    "parse_go_duration",
    "parse_timestamp",
    "status_patch",
    "timestamp",
]
