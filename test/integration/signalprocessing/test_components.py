"""The enrichment and classification stages called directly against the real API server.

No controller is involved: each spec creates objects in a namespace no
controller watches, then runs the stage functions the pipeline runs
(`enrich.read_kubernetes_context`, `detect.read_detected_labels`,
`ownerchain.read_owner_chain`, `recovery.read_recovery_context`, and the
classifiers over the shipped policies in an embedded engine) and asserts on
what they read and decide. The API server has no controllers, so owner
references, HPAs and PDBs are only ever what the spec wrote.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller import classify, kube
from controller.caches import EnrichmentCaches
from controller.detect import read_detected_labels
from controller.enrich import NamespaceMissing, read_kubernetes_context
from controller.ownerchain import MAX_OWNERS, read_owner_chain
from controller.policies import POLICY_FILE_NAME, ActivePolicies, read_policy
from controller.recovery import read_recovery_context
from controller.signalprocessing import (
    BusinessClassification,
    EnvironmentClassification,
    KubernetesContext,
    OwnerRef,
    PriorityAssignment,
    RemediationRequestRef,
    Signal,
    TargetResource,
)
from devstack.manifests import GROUP, RR_PLURAL, VERSION
from devstack.state import StackState
from test.integration.patient_engines import patient_embedded
from test.integration.signalprocessing.conftest import (
    REPOSITORY,
    NamespaceFactory,
    controller_ref,
    create_pod_of_deployment,
    pod,
    pod_template,
)

SHIPPED_POLICIES = REPOSITORY / "policies"
RawObject = dict[str, Any]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def reader(stack: StackState) -> AsyncIterator[kube.ApiClient]:
    async with kube.ApiClient(kube.Credentials.from_kubeconfig(stack.kubeconfig)) as opened:
        yield opened


@pytest.fixture
async def shipped_policies() -> AsyncIterator[ActivePolicies]:
    """The shipped policies in an engine of this test's own, never the worker controller's OPA."""
    engine = patient_embedded()
    policies = ActivePolicies(engine, classify.smoke_check)
    await policies.start(SHIPPED_POLICIES)
    yield policies
    await engine.close()


@pytest.fixture
def unwatched_namespace(make_namespace: NamespaceFactory, worker_id: str) -> Callable[..., str]:
    """Namespaces with labels or annotations, outside every controller's glob."""

    def make(labels: dict[str, str] | None = None) -> str:
        return make_namespace(labels, prefix=f"cmp-{worker_id}-")

    return make


@pytest.fixture
def autoscaling(api_client: client.ApiClient) -> client.AutoscalingV2Api:
    return client.AutoscalingV2Api(api_client)


@pytest.fixture
def disruption(api_client: client.ApiClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(api_client)


# --- manifests -----------------------------------------------------------------------------------


def deployment(name: str, labels: dict[str, str] | None = None, replicas: int = 2) -> RawObject:
    selector = {"app": name}
    return {
        "metadata": {"name": name, "labels": {**selector, **(labels or {})}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": pod_template(selector),
        },
    }


def replica_set(name: str, owner: RawObject | None) -> RawObject:
    selector = {"rs": name}
    metadata: RawObject = {"name": name, "labels": selector}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "metadata": metadata,
        "spec": {"selector": {"matchLabels": selector}, "template": pod_template(selector)},
    }


def hpa(name: str, target_kind: str, target_name: str) -> RawObject:
    return {
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target_name},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    }


def pdb(name: str, match_labels: dict[str, str]) -> RawObject:
    return {
        "metadata": {"name": name},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": match_labels}},
    }


# --- stage calls -----------------------------------------------------------------------------------


async def enrich(reader: kube.Reader, kind: str, name: str, namespace: str) -> KubernetesContext:
    """What the Enriching phase reads: the context, then the detected labels over it."""
    target = TargetResource(kind=kind, name=name, namespace=namespace)
    caches = EnrichmentCaches.create()
    context = await read_kubernetes_context(reader, target, caches)
    return replace(context, detected_labels=await read_detected_labels(reader, target, context, caches))


def detected(context: KubernetesContext) -> Any:
    assert context.detected_labels is not None
    return context.detected_labels


# --- K8sEnricher: real reads -----------------------------------------------------------------------


@pytest.mark.br("BR-SP-001")
async def test_pod_context_has_its_labels_annotations_and_status(
    reader: kube.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    manifest = pod("checkout", labels={"app": "test-app", "version": "v1.2.3"})
    manifest["metadata"]["annotations"] = {"team.example/owner": "payments"}
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500m", "memory": "256Mi"}}
    core.create_namespaced_pod(namespace, manifest)
    core.patch_namespaced_pod_status(
        "checkout",
        namespace,
        {
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": True,
                        "restartCount": 3,
                        "image": "registry.local/app:1",
                        "imageID": "",
                        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                    }
                ],
            }
        },
    )

    context = await enrich(reader, "Pod", "checkout", namespace)

    assert context.pod is not None
    assert dict(context.pod.labels) == {"app": "test-app", "version": "v1.2.3"}
    assert dict(context.pod.annotations) == {"team.example/owner": "payments"}
    assert context.pod.phase == "Running"
    [container] = context.pod.container_statuses
    assert (container.name, container.ready, container.restart_count, container.state) == (
        "app",
        True,
        3,
        "Running",
    )
    assert context.namespace is not None and context.namespace.name == namespace
    assert context.degraded_mode is False


@pytest.mark.br("BR-SP-001")
async def test_deployment_context_has_its_labels_and_replicas(
    reader: kube.ApiClient, apps: client.AppsV1Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(
        namespace, deployment("web", {"app": "deploy-test", "tier": "web"}, replicas=4)
    )

    context = await enrich(reader, "Deployment", "web", namespace)

    assert context.deployment is not None
    assert dict(context.deployment.labels) == {"app": "deploy-test", "tier": "web"}
    assert context.deployment.replicas == 4
    assert context.pod is None and context.owner_chain == ()


@pytest.mark.br("BR-SP-001")
async def test_statefulset_context_has_its_labels_and_replicas(
    reader: kube.ApiClient, apps: client.AppsV1Api, namespace: str
) -> None:
    selector = {"app": "statefulset-test"}
    apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "db", "labels": selector},
            "spec": {
                "serviceName": "test-service",
                "replicas": 3,
                "selector": {"matchLabels": selector},
                "template": pod_template(selector),
            },
        },
    )

    context = await enrich(reader, "StatefulSet", "db", namespace)

    assert context.stateful_set is not None
    assert dict(context.stateful_set.labels) == selector
    assert context.stateful_set.replicas == 3
    assert context.deployment is None


@pytest.mark.br("BR-SP-001")
async def test_service_context_has_its_labels_type_and_ports(
    reader: kube.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "api", "labels": {"app": "service-test"}},
            "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )

    context = await enrich(reader, "Service", "api", namespace)

    assert context.service is not None
    assert dict(context.service.labels) == {"app": "service-test"}
    assert context.service.type == "ClusterIP"
    assert [(p.name, p.port, p.target_port, p.protocol) for p in context.service.ports] == [
        ("http", 80, "8080", "TCP")
    ]


@pytest.mark.br("BR-SP-001")
async def test_namespace_context_has_the_namespace_labels(
    reader: kube.ApiClient, unwatched_namespace: Callable[..., str]
) -> None:
    namespace = unwatched_namespace({"env": "staging", "team": "platform"})

    context = await enrich(reader, "Pod", "not-created", namespace)

    assert context.namespace is not None
    assert context.namespace.name == namespace
    assert {"env": "staging", "team": "platform"}.items() <= dict(context.namespace.labels).items()


@pytest.mark.br("BR-SP-001")
async def test_missing_target_gives_degraded_context_with_the_namespace(
    reader: kube.ApiClient, namespace: str
) -> None:
    context = await enrich(reader, "Pod", "non-existent-pod", namespace)

    assert context.degraded_mode is True
    assert context.pod is None
    assert context.namespace is not None and context.namespace.name == namespace


@pytest.mark.br("BR-SP-001")
async def test_missing_target_namespace_is_a_permanent_error_naming_it(reader: kube.ApiClient) -> None:
    absent = f"absent-{secrets.token_hex(4)}"

    with pytest.raises(NamespaceMissing) as missing:
        await read_kubernetes_context(
            reader, TargetResource(kind="Pod", name="app", namespace=absent), EnrichmentCaches.create()
        )

    assert missing.value.namespace == absent


@pytest.mark.br("BR-SP-001")
async def test_namespace_cache_keeps_each_namespace_apart(
    reader: kube.ApiClient, unwatched_namespace: Callable[..., str]
) -> None:
    first = unwatched_namespace({"team": "first"})
    second = unwatched_namespace({"team": "second"})
    caches = EnrichmentCaches.create()

    one = await read_kubernetes_context(reader, TargetResource("Pod", "x", first), caches)
    two = await read_kubernetes_context(reader, TargetResource("Pod", "x", second), caches)
    gets_before = reader.calls["get"]
    again = await read_kubernetes_context(reader, TargetResource("Pod", "x", first), caches)

    assert (one.namespace_labels["team"], two.namespace_labels["team"]) == ("first", "second")
    assert again.namespace_labels["team"] == "first"
    assert reader.calls["get"] == gets_before + 1, (
        "the namespace should come from the cache, only the pod is read"
    )


# --- Classifiers over the shipped policies, fed by real reads ----------------------------------


async def classified(
    reader: kube.ApiClient, policies: ActivePolicies, namespace: str, signal: Signal
) -> classify.SignalVerdict:
    target = TargetResource("Pod", "app", namespace)
    context = await enrich(reader, target.kind, target.name, namespace)
    return await classify.classify_signal(policies, context, target, signal)


async def classify_environment_of(
    reader: kube.ApiClient, policies: ActivePolicies, namespace: str
) -> EnvironmentClassification:
    signal = Signal("critical", "prometheus", labels={"kubernaut.ai/environment": "production"})
    return (await classified(reader, policies, namespace, signal)).environment


@pytest.mark.br("BR-SP-052")
async def test_namespace_name_alone_does_not_decide_the_environment(
    reader: kube.ApiClient,
    shipped_policies: ActivePolicies,
    make_namespace: NamespaceFactory,
    worker_id: str,
) -> None:
    # The original fell back to a `prod-*` name pattern; only the label is trusted now,
    # and the signal's own environment label is ignored too.
    namespace = make_namespace(prefix=f"prod-configmap-test-{worker_id}-")

    environment = await classify_environment_of(reader, shipped_policies, namespace)

    assert (environment.environment, environment.source) == ("Unknown", "default")


@pytest.mark.br("BR-SP-051")
async def test_namespace_label_wins_over_a_production_looking_name(
    reader: kube.ApiClient,
    shipped_policies: ActivePolicies,
    make_namespace: NamespaceFactory,
    worker_id: str,
) -> None:
    namespace = make_namespace(
        {"kubernaut.ai/environment": "staging"}, prefix=f"prod-but-staging-{worker_id}-"
    )

    verdict = await classified(reader, shipped_policies, namespace, Signal("critical", "prometheus"))

    assert (verdict.environment.environment, verdict.environment.source) == ("Staging", "namespace-labels")
    assert verdict.policy_hash == read_policy(SHIPPED_POLICIES).sha256


async def priority_of(
    reader: kube.ApiClient, policies: ActivePolicies, namespace: str, severity: str
) -> PriorityAssignment:
    return (await classified(reader, policies, namespace, Signal(severity, "prometheus"))).priority


@pytest.mark.br("BR-SP-070")
async def test_critical_signal_in_production_is_p0_from_the_rego_policy(
    reader: kube.ApiClient, shipped_policies: ActivePolicies, unwatched_namespace: Callable[..., str]
) -> None:
    namespace = unwatched_namespace({"kubernaut.ai/environment": "production"})

    priority = await priority_of(reader, shipped_policies, namespace, "critical")

    assert (priority.priority, priority.policy_name, priority.source) == (
        "P0",
        "critical-production",
        "rego-policy",
    )


@pytest.mark.br("BR-SP-071")
async def test_unknown_environment_falls_to_the_policy_default_not_a_go_fallback(
    reader: kube.ApiClient, shipped_policies: ActivePolicies, unwatched_namespace: Callable[..., str]
) -> None:
    # The severity-only fallback matrix of the original (critical -> P1) was removed: the
    # policy's own default decides, and a namespace tier label can still escalate.
    plain = unwatched_namespace()
    tiered = unwatched_namespace({"tier": "critical"})

    default = await priority_of(reader, shipped_policies, plain, "critical")
    escalated = await priority_of(reader, shipped_policies, tiered, "critical")

    assert (default.priority, default.policy_name) == ("P2", "default-catch-all")
    assert (escalated.priority, escalated.policy_name) == ("P0", "critical-tier-label")


@pytest.mark.br("BR-SP-072")
async def test_priority_policy_is_loaded_from_its_mounted_file(
    reader: kube.ApiClient,
    shipped_policies: ActivePolicies,
    unwatched_namespace: Callable[..., str],
    tmp_path: Path,
) -> None:
    namespace = unwatched_namespace({"kubernaut.ai/environment": "staging"})
    mounted = tmp_path / "policies"
    mounted.mkdir()
    shipped_text = (SHIPPED_POLICIES / POLICY_FILE_NAME).read_text()
    everything_p1 = 'default priority := {"priority": "P1", "policy_name": "mounted-everything-p1"}'
    # The priority rows are gone and the default answers every signal.
    rows = slice(shipped_text.index('priority := {"priority": "P0"'), shipped_text.index("# --- labels"))
    mounted_text = shipped_text[: rows.start] + shipped_text[rows.stop :]
    default = 'default priority := {"priority": "P2", "policy_name": "default-catch-all"}'
    (mounted / POLICY_FILE_NAME).write_text(mounted_text.replace(default, everything_p1))
    engine = patient_embedded()
    mounted_policies = ActivePolicies(engine, classify.smoke_check)
    signal = Signal("warning", "prometheus")
    try:
        active = await mounted_policies.start(mounted)
        from_mount = await classified(reader, mounted_policies, namespace, signal)
    finally:
        await engine.close()
    shipped = await classified(reader, shipped_policies, namespace, signal)

    assert (shipped.priority.priority, shipped.priority.policy_name) == ("P2", "warning-staging")
    assert (from_mount.priority.priority, from_mount.priority.policy_name) == ("P1", "mounted-everything-p1")
    assert from_mount.policy_hash == active.sha256 != shipped.policy_hash


async def business_of(
    reader: kube.ApiClient, policies: ActivePolicies, kind: str, name: str, namespace: str
) -> BusinessClassification:
    context = await enrich(reader, kind, name, namespace)
    target = TargetResource(kind, name, namespace)
    business, _ = await classify.classify_business(policies, context, target, Signal("warning", "prometheus"))
    return business


@pytest.mark.br("BR-SP-002")
async def test_business_unit_comes_from_the_namespace_team_label(
    reader: kube.ApiClient, shipped_policies: ActivePolicies, unwatched_namespace: Callable[..., str]
) -> None:
    namespace = unwatched_namespace(
        {"kubernaut.ai/team": "payments", "kubernaut.ai/environment": "production"}
    )

    business = await business_of(reader, shipped_policies, "Pod", "app", namespace)

    assert (business.business_unit, business.service_owner) == ("payments", "unknown")
    assert (business.criticality, business.sla_requirement) == ("High", "Gold")


@pytest.mark.br("BR-SP-002")
async def test_business_labels_on_namespace_then_deployment_win_over_name_and_policy(
    reader: kube.ApiClient,
    shipped_policies: ActivePolicies,
    apps: client.AppsV1Api,
    make_namespace: NamespaceFactory,
    worker_id: str,
) -> None:
    # A `finance-app-*` name says nothing; declared labels do, the namespace's first.
    namespace = make_namespace(
        {
            "kubernaut.ai/environment": "production",
            "kubernaut.ai/team": "platform",
            "kubernaut.ai/criticality": "low",
        },
        prefix=f"finance-app-{worker_id}-",
    )
    apps.create_namespaced_deployment(
        namespace,
        deployment(
            "ledger",
            {
                "kubernaut.ai/business-unit": "finance",
                "kubernaut.ai/service-owner": "ledger-team",
                "kubernaut.ai/criticality": "critical",
                "kubernaut.ai/sla-tier": "platinum",
            },
        ),
    )

    business = await business_of(reader, shipped_policies, "Deployment", "ledger", namespace)

    assert business.business_unit == "finance"  # workload (deployment) label over the policy's team
    assert business.service_owner == "ledger-team"
    assert business.criticality == "Low"  # namespace label over the deployment label
    assert business.sla_requirement == "Platinum"  # deployment label over production's Gold


# --- Owner chain ---------------------------------------------------------------------------------


@pytest.mark.br("BR-SP-100")
async def test_owner_chain_follows_controller_references_pod_to_deployment(
    reader: kube.ApiClient, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> None:
    create_pod_of_deployment(core, apps, namespace, "api-7d9f-x2", replica_set="api-7d9f", deployment="api")

    context = await enrich(reader, "Pod", "api-7d9f-x2", namespace)

    assert context.owner_chain == (
        OwnerRef("ReplicaSet", "api-7d9f", namespace),
        OwnerRef("Deployment", "api", namespace),
    )


@pytest.mark.br("BR-SP-100")
async def test_owner_references_without_controller_flag_are_not_followed(
    reader: kube.ApiClient, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> None:
    rs = apps.create_namespaced_replica_set(namespace, replica_set("loose", None))
    core.create_namespaced_pod(namespace, pod("loose-pod", owner=controller_ref(rs, controller=False)))
    source = await reader.get(kube.PODS, "loose-pod", namespace=namespace)
    assert source is not None

    chain = await read_owner_chain(reader, source)
    context = await enrich(reader, "Pod", "loose-pod", namespace)

    assert chain == () == context.owner_chain


@pytest.mark.br("BR-SP-100")
async def test_owner_chain_stops_after_five_owners(
    reader: kube.ApiClient, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> None:
    owner = None
    for level in range(MAX_OWNERS + 2, 0, -1):  # rs-7 owns rs-6 ... owns rs-1
        ref = controller_ref(owner) if owner is not None else None
        owner = apps.create_namespaced_replica_set(namespace, replica_set(f"rs-{level}", ref))
    core.create_namespaced_pod(namespace, pod("deep", owner=controller_ref(owner)))

    context = await enrich(reader, "Pod", "deep", namespace)

    assert [o.name for o in context.owner_chain] == [f"rs-{level}" for level in range(1, MAX_OWNERS + 1)]


# --- Detected labels: PDB, HPA, NetworkPolicy ----------------------------------------------------


@pytest.mark.br("BR-SP-101")
async def test_pdb_selecting_the_pod_is_detected(
    reader: kube.ApiClient, core: client.CoreV1Api, disruption: client.PolicyV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("guarded", labels={"app": "pdb-protected"}))
    disruption.create_namespaced_pod_disruption_budget(namespace, pdb("guard", {"app": "pdb-protected"}))

    labels = detected(await enrich(reader, "Pod", "guarded", namespace))

    assert labels.has_pdb is True
    assert labels.failed_detections == ()


@pytest.mark.br("BR-SP-101")
async def test_hpa_targeting_the_deployment_is_detected(
    reader: kube.ApiClient, apps: client.AppsV1Api, autoscaling: client.AutoscalingV2Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("scaled"))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa("scaler", "Deployment", "scaled"))

    labels = detected(await enrich(reader, "Deployment", "scaled", namespace))

    assert labels.has_hpa is True


@pytest.mark.br("BR-SP-101")
async def test_hpa_on_the_pods_deployment_is_found_through_the_owner_chain(
    reader: kube.ApiClient,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    autoscaling: client.AutoscalingV2Api,
    namespace: str,
) -> None:
    create_pod_of_deployment(core, apps, namespace, "web-5c8-a", replica_set="web-5c8", deployment="web")
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa("web-scaler", "Deployment", "web"))

    context = await enrich(reader, "Pod", "web-5c8-a", namespace)

    assert detected(context).has_hpa is True
    assert [o.kind for o in context.owner_chain] == ["ReplicaSet", "Deployment"]


@pytest.mark.br("BR-SP-101")
async def test_network_policy_in_the_namespace_means_network_isolated(
    reader: kube.ApiClient, core: client.CoreV1Api, api_client: client.ApiClient, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("isolated"))
    before = detected(await enrich(reader, "Pod", "isolated", namespace))
    client.NetworkingV1Api(api_client).create_namespaced_network_policy(
        namespace, {"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    )

    after = detected(await enrich(reader, "Pod", "isolated", namespace))

    assert (before.network_isolated, after.network_isolated) == (False, True)


# --- Detected labels: GitOps ---------------------------------------------------------------------


@pytest.mark.br("BR-SP-101")
@pytest.mark.parametrize(
    ("annotation", "kind"),
    [
        pytest.param({"fluxcd.io/sync-status": "True"}, "Deployment", id="flux-deployment"),
        pytest.param({"argocd.argoproj.io/managed": "true"}, "Pod", id="argocd-pod"),
    ],
)
async def test_gitops_namespace_annotation_marks_the_target_gitops_managed(
    reader: kube.ApiClient,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
    annotation: dict[str, str],
    kind: str,
) -> None:
    if kind == "Pod":
        core.create_namespaced_pod(namespace, pod("synced"))
    else:
        apps.create_namespaced_deployment(namespace, deployment("synced"))
    core.patch_namespace(namespace, {"metadata": {"annotations": annotation}})

    labels = detected(await enrich(reader, kind, "synced", namespace))

    assert labels.git_ops_managed is True


@pytest.mark.br("BR-SP-101")
async def test_no_gitops_marks_means_not_gitops_managed(
    reader: kube.ApiClient, apps: client.AppsV1Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(
        namespace, deployment("manual", {"app.kubernetes.io/managed-by": "Helm"})
    )

    labels = detected(await enrich(reader, "Deployment", "manual", namespace))

    assert labels.git_ops_managed is False
    assert labels.helm_managed is True


# --- Detected labels: PDB and HPA edge cases -----------------------------------------------------


@pytest.mark.br("BR-SP-101")
async def test_pdb_with_another_selector_is_not_detected(
    reader: kube.ApiClient, core: client.CoreV1Api, disruption: client.PolicyV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("plain", labels={"app": "plain"}))
    disruption.create_namespaced_pod_disruption_budget(namespace, pdb("other", {"app": "something-else"}))

    labels = detected(await enrich(reader, "Pod", "plain", namespace))

    assert labels.has_pdb is False
    assert labels.failed_detections == ()


@pytest.mark.br("BR-SP-101")
async def test_one_matching_pdb_among_several_is_detected(
    reader: kube.ApiClient, core: client.CoreV1Api, disruption: client.PolicyV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("payments", labels={"app": "payments", "tier": "backend"}))
    disruption.create_namespaced_pod_disruption_budget(namespace, pdb("frontend", {"tier": "frontend"}))
    disruption.create_namespaced_pod_disruption_budget(namespace, pdb("backend", {"tier": "backend"}))

    labels = detected(await enrich(reader, "Pod", "payments", namespace))

    assert labels.has_pdb is True


@pytest.mark.br("BR-SP-101")
async def test_hpa_on_another_deployment_is_not_detected(
    reader: kube.ApiClient, apps: client.AppsV1Api, autoscaling: client.AutoscalingV2Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("mine"))
    apps.create_namespaced_deployment(namespace, deployment("theirs"))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa("theirs", "Deployment", "theirs"))

    labels = detected(await enrich(reader, "Deployment", "mine", namespace))

    assert labels.has_hpa is False


@pytest.mark.br("BR-SP-101")
async def test_one_matching_hpa_among_several_is_detected(
    reader: kube.ApiClient, apps: client.AppsV1Api, autoscaling: client.AutoscalingV2Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("mine"))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace, hpa("unrelated", "Deployment", "unrelated")
    )
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa("mine", "Deployment", "mine"))

    labels = detected(await enrich(reader, "Deployment", "mine", namespace))

    assert labels.has_hpa is True


@pytest.mark.br("BR-SP-101")
async def test_hpa_on_the_deployment_directly_owning_the_pod_is_detected(
    reader: kube.ApiClient,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    autoscaling: client.AutoscalingV2Api,
    namespace: str,
) -> None:
    owner = apps.create_namespaced_deployment(namespace, deployment("direct"))
    core.create_namespaced_pod(namespace, pod("direct-pod", owner=controller_ref(owner)))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa("direct", "Deployment", "direct"))

    context = await enrich(reader, "Pod", "direct-pod", namespace)

    assert detected(context).has_hpa is True
    assert context.owner_chain == (OwnerRef("Deployment", "direct", namespace),)


# --- Recovery context from the parent RemediationRequest ----------------------------------------


def remediation_request(
    custom_objects: client.CustomObjectsApi, namespace: str, name: str, status: dict[str, Any]
) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RemediationRequest", "metadata": {"name": name}}
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, RR_PLURAL, body)
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, RR_PLURAL, name, {"status": status}
    )


@pytest.mark.br("BR-SP-003")
async def test_retried_remediation_gives_a_recovery_context(
    reader: kube.ApiClient, custom_objects: client.CustomObjectsApi, namespace: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    started = now - timedelta(minutes=5)
    remediation_request(
        custom_objects,
        namespace,
        "rr-retry",
        {
            "recoveryAttempts": 3,
            "failureReason": "PreviousExecutionTimedOut",
            "startTime": started.isoformat(),
        },
    )

    recovery = await read_recovery_context(
        reader, RemediationRequestRef("rr-retry"), sp_namespace=namespace, now=now
    )

    assert recovery is not None
    assert recovery.to_raw() == {
        "previousRemediationId": "rr-retry",
        "attemptCount": 3,
        "lastFailureReason": "PreviousExecutionTimedOut",
        "timeSinceFirstFailure": "5m0s",
    }


@pytest.mark.br("BR-SP-003")
async def test_first_attempt_gives_no_recovery_context_until_an_attempt_is_recorded(
    reader: kube.ApiClient, custom_objects: client.CustomObjectsApi, namespace: str
) -> None:
    remediation_request(custom_objects, namespace, "rr-first", {"recoveryAttempts": 0})
    ref = RemediationRequestRef("rr-first", namespace)

    first = await read_recovery_context(reader, ref, sp_namespace="elsewhere", now=datetime.now(UTC))
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, RR_PLURAL, "rr-first", {"status": {"recoveryAttempts": 1}}
    )
    retried = await read_recovery_context(reader, ref, sp_namespace="elsewhere", now=datetime.now(UTC))

    assert first is None
    assert retried is not None and (retried.previous_remediation_id, retried.attempt_count) == ("rr-first", 1)
    assert retried.time_since_first_failure is None  # no startTime: not measured from year 1


@pytest.mark.br("BR-SP-003")
async def test_missing_remediation_request_gives_no_recovery_context(
    reader: kube.ApiClient, namespace: str
) -> None:
    recovery = await read_recovery_context(
        reader, RemediationRequestRef("non-existent-rr"), sp_namespace=namespace, now=datetime.now(UTC)
    )

    assert recovery is None
