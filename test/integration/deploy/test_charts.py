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
from devstack.charts import DATASTORAGE_CHART, REPOSITORY, SIGNALPROCESSING_CHART, helm
from devstack.policies import shipped_policy_texts
from devstack.state import StackState
from test.integration.deploy.charts import install, render
from test.integration.deploy.peering import ensure_peering_crd
from test.integration.polling import eventually

SP_VALUES = ("dataStorageUrl=http://datastorage:8080",)
DS_VALUES = ("database.url=postgresql://audit:secret@postgres:5432/audit", "redis.url=redis://redis:6379/0")
SHARDED = (*SP_VALUES, "sharding.enabled=true", "replicaCount=3")
RELEASE_NAMESPACE = "sp-system"  # where sharded renders go: the Leases' namespace
LEASE_RULE = {
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "verbs": ["get", "list", "create", "update", "delete"],
}


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for manifest in manifests:
        kinds.setdefault(manifest["kind"], []).append(manifest)
    return kinds


def controller_env(kinds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The controller container's `env` entries, in the order the chart renders them."""
    (deployment,) = kinds["Deployment"]
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def rules(roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for role in roles for rule in role["rules"]]


def lease_rules(roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in rules(roles) if "leases" in rule["resources"]]


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


@pytest.mark.br("BR-SP-008")
def test_sharding_sets_the_shard_settings_and_no_peering_whatever_the_replicas() -> None:
    kinds = by_kind(render(SIGNALPROCESSING_CHART, *SHARDED, namespace=RELEASE_NAMESPACE))
    env = controller_env(kinds)

    shard_env = [variable for variable in env if variable["name"].startswith(("SHARD", "REPLICA"))]
    assert shard_env == [
        {"name": "SHARDING_ENABLED", "value": "true"},
        {"name": "SHARD_COUNT", "value": "256"},
        {"name": "SHARD_KEY", "value": "uid"},
        {"name": "SHARD_LEASE_SECONDS", "value": "15"},
        {"name": "SHARD_GROUP", "value": "release-signalprocessing"},
        {"name": "SHARD_LEASE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "REPLICA_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    assert not {"PEERING", "PEERING_LIFETIME"} & {variable["name"] for variable in env}
    assert kinds["Deployment"][0]["spec"]["replicas"] == 3
    assert "ClusterKopfPeering" not in kinds
    every_rule = rules(kinds["ClusterRole"]) + rules(kinds["Role"])
    assert [rule for rule in every_rule if "kopf.dev" in rule["apiGroups"]] == []


@pytest.mark.br("BR-SP-001")
def test_sharding_grants_leases_in_the_release_namespace_only() -> None:
    kinds = by_kind(render(SIGNALPROCESSING_CHART, *SHARDED, namespace=RELEASE_NAMESPACE))
    # Role mode with the release namespace watched too: the lease Role stays apart from the watch Role.
    role_mode = by_kind(
        render(
            SIGNALPROCESSING_CHART,
            *SHARDED,
            "rbac.namespaced=true",
            f"watchNamespaces={{{RELEASE_NAMESPACE},team-a}}",
            namespace=RELEASE_NAMESPACE,
        )
    )

    (role,) = kinds["Role"]
    (binding,) = kinds["RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert role["rules"] == [LEASE_RULE]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "release-signalprocessing", "namespace": RELEASE_NAMESPACE}
    ]
    assert lease_rules(kinds["ClusterRole"]) == []
    lease_roles = [each for each in role_mode["Role"] if lease_rules([each])]
    assert [(each["metadata"]["namespace"], each["rules"]) for each in lease_roles] == [
        (RELEASE_NAMESPACE, [LEASE_RULE])
    ]
    names = [(each["metadata"]["namespace"], each["metadata"]["name"]) for each in role_mode["Role"]]
    assert len(names) == len(set(names)) == 3
    assert lease_rules(role_mode["ClusterRole"]) == []


@pytest.mark.br("BR-SP-008")
def test_without_sharding_the_chart_renders_no_shard_settings_and_no_lease_role() -> None:
    for replicas, peered in ((1, False), (3, True)):
        kinds = by_kind(render(SIGNALPROCESSING_CHART, *SP_VALUES, f"replicaCount={replicas}"))

        names = [variable["name"] for variable in controller_env(kinds)]
        assert [name for name in names if name.startswith(("SHARD", "REPLICA"))] == [], replicas
        assert ("PEERING" in names) is peered, replicas
        assert "Role" not in kinds, replicas
        assert lease_rules(kinds["ClusterRole"]) == [], replicas


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
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "sharding.shardKey=name"), "/sharding/shardKey"),
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "sharding.shardCount=0"), "/sharding/shardCount"),
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "sharding.shardCount=4097"), "/sharding/shardCount"),
        (
            SIGNALPROCESSING_CHART,
            (*SP_VALUES, "sharding.leaseDurationSeconds=0"),
            "/sharding/leaseDurationSeconds",
        ),
        (SIGNALPROCESSING_CHART, (*SP_VALUES, "sharding.enable=true"), "'enable'"),
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
        "shard-key-unknown",
        "shard-count-0",
        "shard-count-beyond-4096",
        "lease-0",
        "sharding-typo",
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


@pytest.mark.br("BR-SP-008")
def test_controller_chart_sharding_reaches_the_controller_settings() -> None:
    pod = {"metadata.namespace": RELEASE_NAMESPACE, "metadata.name": "release-signalprocessing-5f7d9c-x2x4p"}
    sets = ("sharding.shardCount=128", "sharding.shardKey=namespace", "sharding.leaseDurationSeconds=10")
    kinds = by_kind(render(SIGNALPROCESSING_CHART, *SHARDED, *sets, namespace=RELEASE_NAMESPACE))
    # What the kubelet gives the container: a fieldRef resolves to that field of the pod.
    environ = {
        variable["name"]: variable["value"]
        if "value" in variable
        else pod[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        for variable in controller_env(kinds)
    }

    settings = load_controller_settings(None, {**environ, "POLICY_DIR": str(REPOSITORY / "policies")})

    assert settings.sharding_enabled is True
    assert (settings.shard_count, settings.shard_key) == (128, "namespace")
    assert settings.shard_lease_seconds == 10.0
    assert settings.shard_group == "release-signalprocessing"
    assert settings.shard_lease_namespace == RELEASE_NAMESPACE
    assert settings.replica == settings.replica_name == "release-signalprocessing-5f7d9c-x2x4p"


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
