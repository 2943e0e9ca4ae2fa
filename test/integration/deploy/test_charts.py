"""The Helm charts: they lint, render, refuse bad values by name, install into and uninstall from a cluster.

The control plane has no kubelet, so the installed pods never run; what is
checked is what helm creates and removes, cluster-scoped objects included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from controller.clusters import REGISTRY_FILE_NAME, parse_registry
from controller.config import load_settings as load_controller_settings
from datastorage.config import RetentionSettings, load_settings
from devstack.policies import shipped_policy_texts
from devstack.state import StackState
from test.integration.deploy.charts import (
    DATASTORAGE_CHART,
    REPOSITORY,
    SIGNALPROCESSING_CHART,
    helm,
    install,
    render,
)
from test.integration.deploy.peering import ensure_peering_crd
from test.integration.polling import eventually

SP_VALUES = ("dataStorageUrl=http://datastorage:8080",)
DS_VALUES = ("database.url=postgresql://audit:secret@postgres:5432/audit", "redis.url=redis://redis:6379/0")


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for manifest in manifests:
        kinds.setdefault(manifest["kind"], []).append(manifest)
    return kinds


@pytest.mark.br("BR-SP-008")
@pytest.mark.parametrize(
    ("chart", "values"),
    [(SIGNALPROCESSING_CHART, SP_VALUES), (DATASTORAGE_CHART, DS_VALUES)],
    ids=["sp", "ds"],
)
def test_chart_lints_and_renders(chart: Path, values: tuple[str, ...]) -> None:
    sets = [argument for value in values for argument in ("--set", value)]
    helm("lint", "--strict", str(chart), *sets)

    kinds = by_kind(render(chart, *values))

    assert {"Deployment", "Service"} <= set(kinds)
    for deployment in kinds["Deployment"]:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, container["name"]
            assert security["readOnlyRootFilesystem"] is True, container["name"]
            assert security["allowPrivilegeEscalation"] is False, container["name"]
            assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        main = deployment["spec"]["template"]["spec"]["containers"][0]
        assert main["livenessProbe"]["httpGet"]["port"] in {port["name"] for port in main["ports"]}
        assert main["readinessProbe"]["httpGet"]["port"] in {port["name"] for port in main["ports"]}
    service_ports = {port["targetPort"] for service in kinds["Service"] for port in service["spec"]["ports"]}
    assert service_ports <= {port["name"] for port in main["ports"]}


@pytest.mark.br("BR-SP-072")
def test_policy_configmap_is_byte_identical_to_the_shipped_policies() -> None:
    kinds = by_kind(render(SIGNALPROCESSING_CHART, *SP_VALUES))
    (configmap,) = kinds["ConfigMap"]
    assert configmap["data"] == shipped_policy_texts()
    (deployment,) = kinds["Deployment"]
    controller = deployment["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in controller["volumeMounts"] if m["name"] == "policies")
    # Mounted as a directory (no subPath): the kubelet's ..data swap then reaches the hot reload.
    assert mount == {"name": "policies", "mountPath": "/etc/signalprocessing/policies", "readOnly": True}
    env = {variable["name"]: variable.get("value") for variable in controller["env"]}
    assert env["POLICY_DIR"] == "/etc/signalprocessing/policies"
    assert env["OPA_URL"] == "http://127.0.0.1:8181"
    opa = deployment["spec"]["template"]["spec"]["containers"][1]
    assert opa["args"][:4] == ["run", "--server", "--addr", "127.0.0.1:8181"]


@pytest.mark.br("BR-SP-008")
def test_several_replicas_peer_and_one_replica_runs_standalone() -> None:
    single = by_kind(render(SIGNALPROCESSING_CHART, *SP_VALUES))
    double = by_kind(render(SIGNALPROCESSING_CHART, *SP_VALUES, "replicaCount=2"))

    def env(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        container = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
        return {variable["name"]: variable.get("value") for variable in container["env"]}

    assert "PEERING" not in env(single)
    assert "ClusterKopfPeering" not in single
    (peering,) = double["ClusterKopfPeering"]
    assert env(double)["PEERING"] == peering["metadata"]["name"]


@pytest.mark.br("BR-SP-001")
def test_namespaced_rbac_puts_namespaced_rules_in_a_role_per_watched_namespace() -> None:
    kinds = by_kind(
        render(SIGNALPROCESSING_CHART, *SP_VALUES, "rbac.namespaced=true", "watchNamespaces={team-a,team-b}")
    )

    roles = {role["metadata"]["namespace"]: role for role in kinds["Role"]}
    bindings = {binding["metadata"]["namespace"] for binding in kinds["RoleBinding"]}
    assert set(roles) == bindings == {"team-a", "team-b"}
    for role in roles.values():
        resources = {resource for rule in role["rules"] for resource in rule["resources"]}
        assert {"pods", "signalprocessings", "signalprocessings/status", "events"} <= resources
        assert not resources & {"namespaces", "nodes", "customresourcedefinitions"}
    (cluster_role,) = kinds["ClusterRole"]
    cluster_resources = {resource for rule in cluster_role["rules"] for resource in rule["resources"]}
    assert cluster_resources == {"namespaces", "nodes", "customresourcedefinitions"}


@pytest.mark.br("BR-SP-008")
@pytest.mark.parametrize(
    ("chart", "values", "named"),
    [
        (SIGNALPROCESSING_CHART, ("replicaCount=0", *SP_VALUES), "/replicaCount"),
        (SIGNALPROCESSING_CHART, ("dataStorageUrl=datastorage:8080",), "/dataStorageUrl"),
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "config.deadlineSeconds=0"), "/config/deadlineSeconds"),
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "metrics.port=70000"), "/metrics/port"),
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "replicas=2"), "replicas"),
        (
            SIGNALPROCESSING_CHART,
            (*SP_VALUES, "rbac.namespaced=true", "watchNamespaces={team-*}"),
            "/watchNamespaces/0",
        ),
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "rbac.namespaced=true"), "/watchNamespaces"),
        (
            DATASTORAGE_CHART,
            ("database.url=mysql://db/audit", "redis.url=redis://redis:6379/0"),
            "/database/url",
        ),
        (DATASTORAGE_CHART, ("database.url=postgresql://db/audit",), "/redis"),
        (DATASTORAGE_CHART, (*DS_VALUES, "rateLimit.burst=0"), "/rateLimit/burst"),
        (
            DATASTORAGE_CHART,
            (*DS_VALUES, "auditHashKey.existingSecret.key="),
            "/auditHashKey/existingSecret/key",
        ),
        (
            DATASTORAGE_CHART,
            (*DS_VALUES, "rateLimit.trustedProxies={proxy.local}"),
            "/rateLimit/trustedProxies/0",
        ),
        (DATASTORAGE_CHART, (*DS_VALUES, "retention.defaultDays=2556"), "/retention/defaultDays"),
        (
            SIGNALPROCESSING_CHART,
            (*SP_VALUES, "config.maxConcurrentReconciles=0"),
            "/config/maxConcurrentReconciles",
        ),
    ],
    ids=[
        "replicas-0",
        "url-no-scheme",
        "deadline-0",
        "port-range",
        "typo",
        "glob-in-role-mode",
        "role-mode-without-namespaces",
        "db-scheme",
        "no-redis",
        "rate-burst-0",
        "hash-key-secret-without-key",
        "proxy-not-a-cidr",
        "retention-beyond-7-years",
        "no-reconciles-at-once",
    ],
)
def test_invalid_values_are_rejected_naming_the_value(
    chart: Path, values: tuple[str, ...], named: str
) -> None:
    sets = [argument for value in values for argument in ("--set", value)]
    result = helm("template", "release", str(chart), *sets, check=False)

    assert result.returncode != 0
    assert named in result.stderr, result.stderr


def test_controller_chart_ships_the_fleet_values_as_a_registry_the_controller_reads() -> None:
    (configmap,) = by_kind(
        render(
            SIGNALPROCESSING_CHART,
            *SP_VALUES,
            "fleet.clusterID=hub-1",
            "fleet.clusters.prod-eu-1.labels.region=eu-west-1",
            "fleet.clusters.edge-7.labels.tier=bronze",
        )
    )["ConfigMap"]
    (deployment,) = by_kind(render(SIGNALPROCESSING_CHART, *SP_VALUES, "fleet.clusterID=hub-1"))["Deployment"]
    env = {
        variable["name"]: variable.get("value")
        for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }

    registry = parse_registry(configmap["data"][REGISTRY_FILE_NAME])

    assert {cluster: dict(labels) for cluster, labels in registry.clusters.items()} == {
        "prod-eu-1": {"region": "eu-west-1"},
        "edge-7": {"tier": "bronze"},
    }
    assert env["CLUSTER_ID"] == "hub-1"


@pytest.mark.br("BR-SP-090")
def test_controller_chart_config_reaches_the_controller_settings() -> None:
    values = {
        "deadlineSeconds": ("600", "deadline_seconds", 600.0),
        "backoffBaseSeconds": ("7", "backoff_base_seconds", 7.0),
        "backoffCapSeconds": ("70", "backoff_cap_seconds", 70.0),
        "auditBatchSize": ("250", "audit_batch_size", 250),
        "auditFlushInterval": ("2", "audit_flush_interval", 2.0),
        "maxConcurrentReconciles": ("8", "max_concurrent_reconciles", 8),
    }
    sets = [f"config.{key}={value}" for key, (value, _, _) in values.items()]
    (deployment,) = by_kind(render(SIGNALPROCESSING_CHART, *SP_VALUES, *sets))["Deployment"]
    environ = {
        variable["name"]: variable["value"]
        for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in variable
    }

    settings = load_controller_settings(None, {**environ, "POLICY_DIR": str(REPOSITORY / "policies")})

    assert {key: getattr(settings, field) for key, (_, field, _) in values.items()} == {
        key: expected for key, (_, _, expected) in values.items()
    }


def test_datastorage_chart_turns_rate_limiting_on_in_settings_the_service_accepts() -> None:
    (deployment,) = by_kind(
        render(DATASTORAGE_CHART, *DS_VALUES, "rateLimit.trustedProxies={10.42.0.0/16,fd00::/8}")
    )["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    environ = {variable["name"]: variable["value"] for variable in container["env"] if "value" in variable}
    urls = {
        "DATABASE_URL": "postgresql://audit:secret@postgres:5432/audit",
        "REDIS_URL": "redis://redis:6379/0",
    }

    limits = load_settings({}, {**environ, **urls}).rate_limit

    assert limits.enabled
    assert (limits.rps, limits.burst) == (50, 100)
    assert [str(network) for network in limits.trusted_proxies] == ["10.42.0.0/16", "fd00::/8"]


def test_datastorage_chart_turns_retention_on_in_settings_the_service_accepts() -> None:
    (deployment,) = by_kind(render(DATASTORAGE_CHART, *DS_VALUES, "retention.batchSize=500"))["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    environ = {variable["name"]: variable["value"] for variable in container["env"] if "value" in variable}
    urls = {
        "DATABASE_URL": "postgresql://audit:secret@postgres:5432/audit",
        "REDIS_URL": "redis://redis:6379/0",
    }

    retention = load_settings({}, {**environ, **urls}).retention

    assert retention == RetentionSettings(enabled=True, interval=86400.0, batch_size=500, default_days=2555)


def test_datastorage_chart_mounts_the_hash_key_secret_as_the_file_the_service_reads() -> None:
    plain = by_kind(render(DATASTORAGE_CHART, *DS_VALUES))["Deployment"][0]["spec"]["template"]["spec"]
    keyed = by_kind(render(DATASTORAGE_CHART, *DS_VALUES, "auditHashKey.existingSecret.name=ds-hash-key"))[
        "Deployment"
    ][0]["spec"]["template"]["spec"]
    container = keyed["containers"][0]
    environ = {variable["name"]: variable["value"] for variable in container["env"] if "value" in variable}
    urls = {
        "DATABASE_URL": "postgresql://audit:secret@postgres:5432/audit",
        "REDIS_URL": "redis://redis:6379/0",
    }

    key_file = load_settings({}, {**environ, **urls}).audit_hash_key_file

    assert "audit-hash-key" not in {volume["name"] for volume in plain["volumes"]}
    [volume] = [volume for volume in keyed["volumes"] if volume["name"] == "audit-hash-key"]
    [mount] = [mount for mount in container["volumeMounts"] if mount["name"] == "audit-hash-key"]
    assert volume["secret"]["secretName"] == "ds-hash-key"
    assert volume["secret"]["items"] == [{"key": "hmacKey", "path": "key"}]
    assert mount["readOnly"] is True
    assert key_file == Path(mount["mountPath"]) / "key"


@pytest.mark.br("BR-SP-008")
def test_controller_chart_installs_its_objects_and_uninstall_removes_them(
    stack: StackState, api_client: client.ApiClient
) -> None:
    ensure_peering_crd(stack.kubeconfig)
    release = install(
        SIGNALPROCESSING_CHART, kubeconfig=stack.kubeconfig, values=(*SP_VALUES, "replicaCount=2")
    )
    kinds = by_kind(release.manifests())
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    rbac, custom = client.RbacAuthorizationV1Api(api_client), client.CustomObjectsApi(api_client)
    ns = release.namespace
    readers = {
        "Deployment": lambda name: apps.read_namespaced_deployment(name, ns),
        "ServiceAccount": lambda name: core.read_namespaced_service_account(name, ns),
        "ConfigMap": lambda name: core.read_namespaced_config_map(name, ns),
        "Service": lambda name: core.read_namespaced_service(name, ns),
        "ClusterRole": rbac.read_cluster_role,
        "ClusterRoleBinding": rbac.read_cluster_role_binding,
        "ClusterKopfPeering": lambda name: custom.get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", name
        ),
    }
    assert set(kinds) == set(readers)
    try:
        for kind, manifests in kinds.items():
            for manifest in manifests:
                readers[kind](manifest["metadata"]["name"])  # raises 404 if helm did not create it
    finally:
        release.uninstall()

    for kind, manifests in kinds.items():
        for manifest in manifests:
            assert_gone(readers[kind], manifest["metadata"]["name"], kind)
    core.delete_namespace(ns)


@pytest.mark.br("BR-SP-090")
def test_datastorage_chart_installs_its_objects_and_uninstall_removes_them(
    stack: StackState, api_client: client.ApiClient
) -> None:
    release = install(DATASTORAGE_CHART, kubeconfig=stack.kubeconfig, values=DS_VALUES)
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    ns = release.namespace
    name = f"{release.name}-datastorage"
    try:
        deployment = apps.read_namespaced_deployment(name, ns)
        service = core.read_namespaced_service(name, ns)
        secret = core.read_namespaced_secret(f"{name}-connections", ns)
    finally:
        release.uninstall()

    env = {variable.name: variable for variable in deployment.spec.template.spec.containers[0].env}
    assert env["DATABASE_URL"].value_from.secret_key_ref.name == secret.metadata.name
    assert env["REDIS_URL"].value_from.secret_key_ref.name == secret.metadata.name
    assert service.spec.ports[0].port == 8080
    assert_gone(lambda gone: apps.read_namespaced_deployment(gone, ns), name, "Deployment")
    assert_gone(lambda gone: core.read_namespaced_service(gone, ns), name, "Service")
    assert_gone(lambda gone: core.read_namespaced_secret(gone, ns), f"{name}-connections", "Secret")
    core.delete_namespace(ns)


def assert_gone(read: Callable[[str], object], name: str, kind: str) -> None:
    """Waits until reading the object answers 404."""
    what = f"{kind} {name}"

    def probe() -> bool:
        try:
            read(name)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        raise AssertionError(f"{what} still exists")

    eventually(probe, timeout=30, message=f"{what} was not removed by helm uninstall")
