"""Detected labels: facts about a target's surroundings that workflows select on (BR-SP-101, BR-SP-103).

``detect_labels`` decides every label from an enriched ``KubernetesContext`` and three namespace
lists (PDBs, HPAs, NetworkPolicies); it is pure. ``read_detected_labels`` obtains those lists
through the reader and the per-namespace TTL caches (PDB 5 min, HPA 1 min, NetworkPolicy 5 min),
concurrently, and skips the PDB list when there is no pod to protect.

The rules (reference 3.3, with its quirks fixed where noted):

* ``gitOpsManaged``: a key (value ignored) among: pod annotation ``argocd.argoproj.io/instance``;
  workload label ``argocd.argoproj.io/instance`` or ``fluxcd.io/sync-gc-mark``; namespace label
  ``argocd.argoproj.io/instance`` or ``fluxcd.io/sync-gc-mark``; namespace annotation
  ``argocd.argoproj.io/managed`` or ``fluxcd.io/sync-status``. "Workload" is the target when it
  is a Deployment, StatefulSet, DaemonSet or ReplicaSet (the original only looked at Deployments).
* ``helmManaged``: workload label ``app.kubernetes.io/managed-by`` = ``Helm``, or a
  ``helm.sh/chart`` label (same widening).
* ``hasPDB``: a PodDisruptionBudget whose selector matches the target pod's labels (Kubernetes
  selector semantics: an empty selector matches every pod, a missing one none). Pod targets only.
* ``hasHPA``: an HPA whose ``scaleTargetRef`` {kind, name} is the target or any owner in its chain
  (the original matched Deployment targets and Pod owner chains only).
* ``networkIsolated``: any NetworkPolicy in the namespace (pod selectors are not evaluated).
* ``serviceMesh``: pod annotation ``sidecar.istio.io/status`` or ``linkerd.io/proxy-version``.
* ``isProduction``: namespace label ``kubernaut.ai/environment`` is ``production`` or ``prod``,
  compared case-insensitively like the environment classification (the original was
  case-sensitive).
* ``hasResourceLimits`` is not detected and so never written (the original always wrote false).

A list that fails (RBAC, timeout, any API error) leaves its label false and puts the label's CRD
name in ``failedDetections``: ``hasPDB``, ``hasHPA`` or ``networkIsolated``, sorted. When the
context has no namespace (a Node target, a cluster-scoped kind), the three lists are not read at
all, never cluster-wide: those labels are false, and not failed, because namespace-scoped
protections cannot apply to such a target.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping, Sequence
from typing import Final, Literal, TypeAlias, TypedDict, TypeVar, cast

from controller import kube
from controller.caches import EnrichmentCaches
from controller.signalprocessing import DetectedLabels, KubernetesContext, TargetResource
from controller.ttlcache import TTLCache

logger = logging.getLogger(__name__)

# The names recorded in failedDetections: the CRD field of the label that could not be decided.
FAILED_PDB: Final = "hasPDB"
FAILED_HPA: Final = "hasHPA"
FAILED_NETWORK_POLICY: Final = "networkIsolated"

_PRODUCTION_VALUES: Final = frozenset({"production", "prod"})
_ENVIRONMENT_LABEL: Final = "kubernaut.ai/environment"
_ARGOCD_INSTANCE: Final = "argocd.argoproj.io/instance"
_FLUX_SYNC_GC_MARK: Final = "fluxcd.io/sync-gc-mark"
_ARGOCD_MANAGED: Final = "argocd.argoproj.io/managed"
_FLUX_SYNC_STATUS: Final = "fluxcd.io/sync-status"
_MESH_ANNOTATIONS: Final = ("sidecar.istio.io/status", "linkerd.io/proxy-version")


class ListFailed(enum.Enum):
    """Marks a list that could not be read, as distinct from an empty one."""

    LIST_FAILED = "list-failed"


LIST_FAILED: Final = ListFailed.LIST_FAILED

T = TypeVar("T")
Listing: TypeAlias = Sequence[T] | Literal[ListFailed.LIST_FAILED]


class RawLabelSelectorRequirement(TypedDict, total=False):
    key: str
    operator: str
    values: list[str]


class RawLabelSelector(TypedDict, total=False):
    matchLabels: dict[str, str]
    matchExpressions: list[RawLabelSelectorRequirement]


class RawPodDisruptionBudgetSpec(TypedDict, total=False):
    selector: RawLabelSelector | None


class RawPodDisruptionBudget(TypedDict, total=False):
    metadata: kube.RawMeta
    spec: RawPodDisruptionBudgetSpec


class RawCrossVersionObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str


class RawHorizontalPodAutoscalerSpec(TypedDict, total=False):
    scaleTargetRef: RawCrossVersionObjectReference


class RawHorizontalPodAutoscaler(TypedDict, total=False):
    metadata: kube.RawMeta
    spec: RawHorizontalPodAutoscalerSpec


class RawNetworkPolicy(TypedDict, total=False):
    metadata: kube.RawMeta


def selector_matches(selector: RawLabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; a selector with an unknown operator matches nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or []:
        key, values = requirement.get("key", ""), requirement.get("values") or []
        match requirement.get("operator"):
            case "In":
                matched = key in labels and labels[key] in values
            case "NotIn":
                matched = key not in labels or labels[key] not in values
            case "Exists":
                matched = key in labels
            case "DoesNotExist":
                matched = key not in labels
            case _:
                return False
        if not matched:
            return False
    return True


def is_production(namespace_labels: Mapping[str, str]) -> bool:
    return namespace_labels.get(_ENVIRONMENT_LABEL, "").lower() in _PRODUCTION_VALUES


def is_gitops_managed(context: KubernetesContext) -> bool:
    pod_annotations = context.pod.annotations if context.pod else {}
    namespace_annotations = context.namespace.annotations if context.namespace else {}
    return (
        _ARGOCD_INSTANCE in pod_annotations
        or any(key in context.workload_labels for key in (_FLUX_SYNC_GC_MARK, _ARGOCD_INSTANCE))
        or any(key in context.namespace_labels for key in (_ARGOCD_INSTANCE, _FLUX_SYNC_GC_MARK))
        or any(key in namespace_annotations for key in (_ARGOCD_MANAGED, _FLUX_SYNC_STATUS))
    )


def is_helm_managed(workload_labels: Mapping[str, str]) -> bool:
    return workload_labels.get("app.kubernetes.io/managed-by") == "Helm" or "helm.sh/chart" in workload_labels


def has_service_mesh(context: KubernetesContext) -> bool:
    annotations = context.pod.annotations if context.pod else {}
    return any(key in annotations for key in _MESH_ANNOTATIONS)


def has_pdb(context: KubernetesContext, pdbs: Sequence[RawPodDisruptionBudget]) -> bool:
    if context.pod is None:
        return False
    labels = context.pod.labels
    return any(selector_matches((pdb.get("spec") or {}).get("selector"), labels) for pdb in pdbs)


def has_hpa(
    target: TargetResource, context: KubernetesContext, hpas: Sequence[RawHorizontalPodAutoscaler]
) -> bool:
    scalable = {(target.kind, target.name)} | {(owner.kind, owner.name) for owner in context.owner_chain}
    for hpa in hpas:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if (ref.get("kind"), ref.get("name")) in scalable:
            return True
    return False


def detect_labels(
    target: TargetResource,
    context: KubernetesContext,
    *,
    pdbs: Listing[RawPodDisruptionBudget],
    hpas: Listing[RawHorizontalPodAutoscaler],
    network_policies: Listing[RawNetworkPolicy],
) -> DetectedLabels:
    """Every detected label of `target`; a list given as `LIST_FAILED` makes its label false and failed."""
    failed = sorted(
        name
        for name, listing in (
            (FAILED_PDB, pdbs),
            (FAILED_HPA, hpas),
            (FAILED_NETWORK_POLICY, network_policies),
        )
        if listing is LIST_FAILED
    )
    return DetectedLabels(
        git_ops_managed=is_gitops_managed(context),
        has_pdb=pdbs is not LIST_FAILED and has_pdb(context, pdbs),
        has_hpa=hpas is not LIST_FAILED and has_hpa(target, context, hpas),
        helm_managed=is_helm_managed(context.workload_labels),
        network_isolated=network_policies is not LIST_FAILED and len(network_policies) > 0,
        service_mesh=has_service_mesh(context),
        is_production=is_production(context.namespace_labels),
        failed_detections=tuple(failed),
    )


async def read_detected_labels(
    reader: kube.Reader, target: TargetResource, context: KubernetesContext, caches: EnrichmentCaches
) -> DetectedLabels:
    """Lists what the rules need, in the context's namespace only, and applies `detect_labels`.

    Never raises for an API error: a failed list is recorded in `failed_detections`.
    """
    namespace = context.namespace.name if context.namespace else ""
    if not namespace:
        return detect_labels(target, context, pdbs=(), hpas=(), network_policies=())

    async def pdb_list() -> Listing[kube.RawObject]:
        # Only a pod can be protected by a PDB: other targets need not pay for the list.
        if context.pod is None:
            return ()
        return await _cached_list(reader, kube.PODDISRUPTIONBUDGETS, namespace, caches.pdbs)

    pdbs, hpas, network_policies = await asyncio.gather(
        pdb_list(),
        _cached_list(reader, kube.HORIZONTALPODAUTOSCALERS, namespace, caches.hpas),
        _cached_list(reader, kube.NETWORKPOLICIES, namespace, caches.network_policies),
    )
    return detect_labels(
        target,
        context,
        pdbs=cast(Listing[RawPodDisruptionBudget], pdbs),
        hpas=cast(Listing[RawHorizontalPodAutoscaler], hpas),
        network_policies=cast(Listing[RawNetworkPolicy], network_policies),
    )


async def _cached_list(
    reader: kube.Reader, resource: kube.Resource, namespace: str, cache: TTLCache[tuple[kube.RawObject, ...]]
) -> Listing[kube.RawObject]:
    async def load() -> tuple[kube.RawObject, ...]:
        return tuple(await reader.list(resource, namespace=namespace))

    try:
        return await cache.get_or_load(namespace, load)
    except kube.ApiError as e:
        logger.info(
            "Listing %s in %s failed; the label it decides is false: %s", resource.plural, namespace, e
        )
        return LIST_FAILED
