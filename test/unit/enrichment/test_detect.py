"""Detected labels: each rule true and false, failed lists, and how the lists are read and cached."""

from __future__ import annotations

from typing import Any, cast

import pytest

from controller import kube
from controller.caches import EnrichmentCaches
from controller.detect import (
    LIST_FAILED,
    Listing,
    RawHorizontalPodAutoscaler,
    RawLabelSelector,
    RawNetworkPolicy,
    RawPodDisruptionBudget,
    detect_labels,
    read_detected_labels,
    selector_matches,
)
from controller.signalprocessing import (
    DeploymentDetails,
    DetectedLabels,
    KubernetesContext,
    NamespaceContext,
    NodeDetails,
    OwnerRef,
    PodDetails,
    StatefulSetDetails,
    TargetResource,
)

from .fakes import FakeReader, ManualClock, obj

NS = "shop"
POD = TargetResource("Pod", "web-5d4f-x", NS)
DEPLOYMENT = TargetResource("Deployment", "web", NS)


def pod_context(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    namespace_labels: dict[str, str] | None = None,
    namespace_annotations: dict[str, str] | None = None,
    owners: tuple[OwnerRef, ...] = (),
) -> KubernetesContext:
    return KubernetesContext(
        namespace=NamespaceContext(NS, namespace_labels or {}, namespace_annotations or {}),
        pod=PodDetails(labels=labels or {}, annotations=annotations or {}),
        owner_chain=owners,
    )


def deployment_context(labels: dict[str, str]) -> KubernetesContext:
    return KubernetesContext(namespace=NamespaceContext(NS), deployment=DeploymentDetails(labels=labels))


def pdb(selector: dict[str, Any] | None) -> RawPodDisruptionBudget:
    spec: dict[str, Any] = {} if selector is None else {"selector": selector}
    return cast(RawPodDisruptionBudget, obj("PodDisruptionBudget", "pdb", NS, spec=spec))


def hpa(kind: str, name: str) -> RawHorizontalPodAutoscaler:
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name}}
    return cast(RawHorizontalPodAutoscaler, obj("HorizontalPodAutoscaler", "hpa", NS, spec=spec))


NETPOL = cast(RawNetworkPolicy, obj("NetworkPolicy", "deny-all", NS))


def labels_of(
    target: TargetResource,
    context: KubernetesContext,
    *,
    pdbs: Listing[RawPodDisruptionBudget] = (),
    hpas: Listing[RawHorizontalPodAutoscaler] = (),
    network_policies: Listing[RawNetworkPolicy] = (),
) -> DetectedLabels:
    return detect_labels(target, context, pdbs=pdbs, hpas=hpas, network_policies=network_policies)


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        pytest.param(None, {"app": "web"}, False, id="no-selector-matches-nothing"),
        pytest.param({}, {"app": "web"}, True, id="empty-selector-matches-everything"),
        pytest.param({}, {}, True, id="empty-selector-matches-unlabelled"),
        pytest.param({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True, id="match-labels"),
        pytest.param({"matchLabels": {"app": "web"}}, {"app": "db"}, False, id="match-labels-other-value"),
        pytest.param({"matchLabels": {"app": "web"}}, {}, False, id="match-labels-missing"),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
            id="in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
            {},
            False,
            id="in-missing-key",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            {},
            True,
            id="notin-missing",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            {"tier": "a"},
            False,
            id="notin-excluded",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "x", "operator": "Exists"}]}, {"x": ""}, True, id="exists"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, {"x": ""}, False, id="dne"
        ),
        pytest.param(
            {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "Exists"}]},
            {"app": "web"},
            False,
            id="both-must-hold",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "x", "operator": "Gt"}]}, {"x": "1"}, False, id="unknown-op"
        ),
    ],
)
def test_selector_matches(selector: dict[str, Any] | None, labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(cast(RawLabelSelector | None, selector), labels) is matches


def test_nothing_detected() -> None:
    assert labels_of(POD, pod_context()) == DetectedLabels()


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        pytest.param(
            pod_context(annotations={"argocd.argoproj.io/instance": "shop"}), True, id="pod-annotation-argocd"
        ),
        pytest.param(
            pod_context(labels={"argocd.argoproj.io/instance": "shop"}), False, id="pod-label-not-a-rule"
        ),
        pytest.param(deployment_context({"fluxcd.io/sync-gc-mark": "x"}), True, id="deployment-label-flux"),
        pytest.param(
            deployment_context({"argocd.argoproj.io/instance": "x"}), True, id="deployment-label-argocd"
        ),
        pytest.param(
            KubernetesContext(stateful_set=StatefulSetDetails({"argocd.argoproj.io/instance": "x"})),
            True,
            id="statefulset-label-argocd",
        ),
        pytest.param(
            pod_context(namespace_labels={"argocd.argoproj.io/instance": "x"}),
            True,
            id="namespace-label-argocd",
        ),
        pytest.param(
            pod_context(namespace_labels={"fluxcd.io/sync-gc-mark": "x"}), True, id="namespace-label-flux"
        ),
        pytest.param(
            pod_context(namespace_annotations={"argocd.argoproj.io/managed": ""}),
            True,
            id="namespace-annotation-argocd-empty-value",
        ),
        pytest.param(
            pod_context(namespace_annotations={"fluxcd.io/sync-status": "ok"}),
            True,
            id="namespace-annotation-flux",
        ),
        pytest.param(
            pod_context(namespace_labels={"argocd.argoproj.io/managed": "x"}),
            False,
            id="managed-as-label-not-a-rule",
        ),
    ],
)
def test_gitops_managed(context: KubernetesContext, expected: bool) -> None:
    assert labels_of(POD, context).git_ops_managed is expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        pytest.param(
            deployment_context({"app.kubernetes.io/managed-by": "Helm"}), True, id="managed-by-helm"
        ),
        pytest.param(
            deployment_context({"app.kubernetes.io/managed-by": "helm"}), False, id="case-sensitive"
        ),
        pytest.param(deployment_context({"helm.sh/chart": "web-1.2.3"}), True, id="chart-label"),
        pytest.param(
            deployment_context({"app.kubernetes.io/managed-by": "Kustomize"}), False, id="other-tool"
        ),
        pytest.param(
            KubernetesContext(stateful_set=StatefulSetDetails({"helm.sh/chart": "db"})),
            True,
            id="statefulset",
        ),
        pytest.param(pod_context(labels={"helm.sh/chart": "web"}), False, id="pod-labels-not-a-rule"),
    ],
)
def test_helm_managed(context: KubernetesContext, expected: bool) -> None:
    assert labels_of(POD, context).helm_managed is expected


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({"sidecar.istio.io/status": "{}"}, True, id="istio"),
        pytest.param({"linkerd.io/proxy-version": "stable-2.14"}, True, id="linkerd"),
        pytest.param({"sidecar.istio.io/inject": "true"}, False, id="inject-request-only"),
        pytest.param({}, False, id="none"),
    ],
)
def test_service_mesh(annotations: dict[str, str], expected: bool) -> None:
    assert labels_of(POD, pod_context(annotations=annotations)).service_mesh is expected


@pytest.mark.parametrize(
    ("namespace_labels", "expected"),
    [
        pytest.param({"kubernaut.ai/environment": "production"}, True, id="production"),
        pytest.param({"kubernaut.ai/environment": "prod"}, True, id="prod"),
        pytest.param({"kubernaut.ai/environment": "Production"}, True, id="case-insensitive"),
        pytest.param({"kubernaut.ai/environment": "staging"}, False, id="staging"),
        pytest.param({"environment": "production"}, False, id="other-key"),
        pytest.param({}, False, id="unlabelled"),
    ],
)
def test_is_production(namespace_labels: dict[str, str], expected: bool) -> None:
    assert labels_of(POD, pod_context(namespace_labels=namespace_labels)).is_production is expected


def test_is_production_without_namespace() -> None:
    assert (
        labels_of(TargetResource("Node", "n"), KubernetesContext(node=NodeDetails())).is_production is False
    )


@pytest.mark.parametrize(
    ("context", "pdbs", "expected"),
    [
        pytest.param(
            pod_context(labels={"app": "web"}), [pdb({"matchLabels": {"app": "web"}})], True, id="match"
        ),
        pytest.param(
            pod_context(labels={"app": "web"}), [pdb({"matchLabels": {"app": "db"}})], False, id="no-match"
        ),
        pytest.param(pod_context(labels={"app": "web"}), [pdb(None)], False, id="nil-selector"),
        pytest.param(pod_context(), [pdb({})], True, id="empty-selector-protects-all"),
        pytest.param(pod_context(labels={"app": "web"}), [], False, id="no-pdbs"),
        pytest.param(deployment_context({"app": "web"}), [pdb({})], False, id="not-a-pod"),
    ],
)
def test_has_pdb(context: KubernetesContext, pdbs: list[RawPodDisruptionBudget], expected: bool) -> None:
    assert labels_of(POD, context, pdbs=pdbs).has_pdb is expected


@pytest.mark.parametrize(
    ("target", "context", "hpas", "expected"),
    [
        pytest.param(
            DEPLOYMENT, deployment_context({}), [hpa("Deployment", "web")], True, id="deployment-target"
        ),
        pytest.param(
            DEPLOYMENT, deployment_context({}), [hpa("Deployment", "api")], False, id="other-deployment"
        ),
        pytest.param(
            DEPLOYMENT, deployment_context({}), [hpa("StatefulSet", "web")], False, id="same-name-other-kind"
        ),
        pytest.param(
            POD,
            pod_context(owners=(OwnerRef("ReplicaSet", "web-5d4f", NS), OwnerRef("Deployment", "web", NS))),
            [hpa("Deployment", "web")],
            True,
            id="pod-owner-chain",
        ),
        pytest.param(POD, pod_context(), [hpa("Deployment", "web")], False, id="pod-without-owners"),
        pytest.param(
            TargetResource("StatefulSet", "db", NS),
            KubernetesContext(stateful_set=StatefulSetDetails()),
            [hpa("StatefulSet", "db")],
            True,
            id="statefulset-target",
        ),
        pytest.param(DEPLOYMENT, deployment_context({}), [], False, id="no-hpas"),
    ],
)
def test_has_hpa(
    target: TargetResource, context: KubernetesContext, hpas: list[RawHorizontalPodAutoscaler], expected: bool
) -> None:
    assert labels_of(target, context, hpas=hpas).has_hpa is expected


@pytest.mark.parametrize(
    ("policies", "expected"),
    [pytest.param([NETPOL], True, id="one-policy"), pytest.param([], False, id="none")],
)
def test_network_isolated(policies: list[RawNetworkPolicy], expected: bool) -> None:
    assert labels_of(POD, pod_context(), network_policies=policies).network_isolated is expected


@pytest.mark.parametrize(
    ("failed", "expected_names"),
    [
        pytest.param({"pdbs"}, ("hasPDB",), id="pdb"),
        pytest.param({"hpas"}, ("hasHPA",), id="hpa"),
        pytest.param({"network_policies"}, ("networkIsolated",), id="network-policy"),
        pytest.param(
            {"network_policies", "pdbs", "hpas"}, ("hasHPA", "hasPDB", "networkIsolated"), id="all-sorted"
        ),
    ],
)
def test_failed_lists_are_false_and_recorded(failed: set[str], expected_names: tuple[str, ...]) -> None:
    context = pod_context(labels={"app": "web"}, owners=(OwnerRef("Deployment", "web", NS),))
    lists: dict[str, Any] = {
        "pdbs": [pdb({})],
        "hpas": [hpa("Deployment", "web")],
        "network_policies": [NETPOL],
    }
    given = {name: LIST_FAILED if name in failed else value for name, value in lists.items()}
    labels = labels_of(POD, context, **given)
    assert labels.failed_detections == expected_names
    assert labels.has_pdb is ("pdbs" not in failed)
    assert labels.has_hpa is ("hpas" not in failed)
    assert labels.network_isolated is ("network_policies" not in failed)


# --- Reading the lists ---------------------------------------------------------------------------


@pytest.fixture
def reader() -> FakeReader:
    reader = FakeReader()
    reader.add(
        kube.PODDISRUPTIONBUDGETS,
        obj("PodDisruptionBudget", "web", NS, spec={"selector": {"matchLabels": {"app": "web"}}}),
    )
    reader.add(
        kube.HORIZONTALPODAUTOSCALERS,
        obj(
            "HorizontalPodAutoscaler",
            "web",
            NS,
            spec={"scaleTargetRef": {"kind": "Deployment", "name": "web"}},
        ),
    )
    reader.add(kube.NETWORKPOLICIES, obj("NetworkPolicy", "deny", NS))
    reader.add(kube.NETWORKPOLICIES, obj("NetworkPolicy", "elsewhere", "other"))
    return reader


ENRICHED_POD = pod_context(labels={"app": "web"}, owners=(OwnerRef("Deployment", "web", NS),))


async def test_reads_the_three_lists_in_the_namespace(reader: FakeReader, caches: EnrichmentCaches) -> None:
    labels = await read_detected_labels(reader, POD, ENRICHED_POD, caches)
    assert labels == DetectedLabels(has_pdb=True, has_hpa=True, network_isolated=True)
    assert sorted(reader.log) == [
        ("list", "horizontalpodautoscalers", NS, ""),
        ("list", "networkpolicies", NS, ""),
        ("list", "poddisruptionbudgets", NS, ""),
    ]


async def test_another_namespace_sees_only_its_own_lists(
    reader: FakeReader, caches: EnrichmentCaches
) -> None:
    await read_detected_labels(reader, POD, ENRICHED_POD, caches)
    other = KubernetesContext(namespace=NamespaceContext("other"), pod=PodDetails({"app": "web"}))
    labels = await read_detected_labels(reader, TargetResource("Pod", "p", "other"), other, caches)
    assert labels == DetectedLabels(network_isolated=True)


async def test_no_pdb_list_without_a_pod(reader: FakeReader, caches: EnrichmentCaches) -> None:
    labels = await read_detected_labels(reader, DEPLOYMENT, deployment_context({}), caches)
    assert labels.has_hpa and labels.network_isolated and not labels.has_pdb
    assert "poddisruptionbudgets" not in [plural for _, plural, _, _ in reader.log]


@pytest.mark.parametrize(
    ("target", "context"),
    [
        pytest.param(TargetResource("Node", "node-a"), KubernetesContext(node=NodeDetails()), id="node"),
        pytest.param(
            TargetResource("Node", "gone"), KubernetesContext(degraded_mode=True), id="degraded-node"
        ),
        pytest.param(TargetResource("PersistentVolume", "pv"), KubernetesContext(), id="cluster-scoped-kind"),
    ],
)
async def test_no_namespace_no_lists_and_nothing_failed(
    reader: FakeReader, caches: EnrichmentCaches, target: TargetResource, context: KubernetesContext
) -> None:
    labels = await read_detected_labels(reader, target, context, caches)
    assert labels == DetectedLabels()
    assert reader.log == []


@pytest.mark.parametrize(
    ("resource", "name"),
    [
        pytest.param(kube.PODDISRUPTIONBUDGETS, "hasPDB", id="pdb"),
        pytest.param(kube.HORIZONTALPODAUTOSCALERS, "hasHPA", id="hpa"),
        pytest.param(kube.NETWORKPOLICIES, "networkIsolated", id="network-policy"),
    ],
)
@pytest.mark.parametrize(
    "error",
    [
        pytest.param(kube.Forbidden("rbac", status=403), id="forbidden"),
        pytest.param(kube.TransientApiError("timed out"), id="timeout"),
        pytest.param(kube.NotFound("kind not served", status=404), id="kind-not-served"),
    ],
)
async def test_failed_list_is_recorded_not_raised(
    reader: FakeReader, caches: EnrichmentCaches, resource: kube.Resource, name: str, error: kube.ApiError
) -> None:
    reader.fail_list(resource, NS, error)
    labels = await read_detected_labels(reader, POD, ENRICHED_POD, caches)
    assert labels.failed_detections == (name,)
    assert labels.to_raw()["failedDetections"] == [name]


async def test_failed_list_is_retried_by_the_next_signal(
    reader: FakeReader, caches: EnrichmentCaches
) -> None:
    reader.fail_list(kube.NETWORKPOLICIES, NS, kube.TransientApiError("timed out"))
    assert (await read_detected_labels(reader, POD, ENRICHED_POD, caches)).failed_detections == (
        "networkIsolated",
    )
    reader.list_errors.clear()
    labels = await read_detected_labels(reader, POD, ENRICHED_POD, caches)
    assert labels.failed_detections == () and labels.network_isolated


@pytest.mark.parametrize(
    ("elapsed", "relisted"),
    [
        pytest.param(30, [], id="all-fresh"),
        pytest.param(61, ["horizontalpodautoscalers"], id="hpa-expired-after-1-min"),
        pytest.param(
            301, ["horizontalpodautoscalers", "networkpolicies", "poddisruptionbudgets"], id="all-expired"
        ),
    ],
)
async def test_lists_are_cached_per_namespace_with_their_ttls(
    reader: FakeReader, caches: EnrichmentCaches, clock: ManualClock, elapsed: float, relisted: list[str]
) -> None:
    await read_detected_labels(reader, POD, ENRICHED_POD, caches)
    reader.log.clear()
    clock.advance(elapsed)
    await read_detected_labels(reader, POD, ENRICHED_POD, caches)
    assert sorted(plural for _, plural, _, _ in reader.log) == relisted
