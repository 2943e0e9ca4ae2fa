"""Controller settings: a YAML file, the environment over it, defaults, and errors naming the setting."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import config
from controller.config import ConfigError, Settings, load_settings

DATA_STORAGE = "http://datastorage:8080"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    return directory


def config_file(tmp_path: Path, settings: dict[Any, Any] | str) -> Path:
    path = tmp_path / "controller.yaml"
    path.write_text(settings if isinstance(settings, str) else yaml.safe_dump(settings))
    return path


def test_every_setting_is_read_from_the_file(tmp_path: Path, policies: Path) -> None:
    path = config_file(
        tmp_path,
        {
            "dataStorageUrl": DATA_STORAGE,
            "policyDir": str(policies),
            "kubeconfig": "/etc/kube/config",
            "opaUrl": "http://127.0.0.1:8181",
            "watchNamespaces": ["team-a", "load-*"],
            "deadlineSeconds": 120,
            "backoffBaseSeconds": 5,
            "backoffCapSeconds": 60.5,
            "auditBatchSize": 50,
            "maxConcurrentReconciles": 8,
            "auditFlushInterval": 0.5,
            "metricsPort": 9100,
            "healthPort": 8100,
            "peering": "signalprocessing",
            "peeringPriority": -3,
            "peeringLifetime": 30,
            "readinessPort": 8102,
            "dataStorageReadyUrl": "http://datastorage:8080/health/ready",
            "readinessIntervalSeconds": 2.5,
            "readinessTimeoutSeconds": 1,
            "clusterRegistryPath": "/etc/fleet/clusters.yaml",
            "clusterID": "hub-eu-1",
            "shardingEnabled": False,
            "shardCount": 16,
            "shardKey": "namespace",
            "shardLeaseSeconds": 5,
            "shardLeaseNamespace": "kubernaut-system",
            "shardGroup": "sp-eu",
            "replicaName": "sp-0",
        },
    )

    assert load_settings(path, {}) == Settings(
        data_storage_url=DATA_STORAGE,
        policy_dir=policies,
        kubeconfig="/etc/kube/config",
        opa_url="http://127.0.0.1:8181",
        watch_namespaces=("team-a", "load-*"),
        deadline_seconds=120.0,
        backoff_base_seconds=5.0,
        backoff_cap_seconds=60.5,
        audit_batch_size=50,
        max_concurrent_reconciles=8,
        audit_flush_interval=0.5,
        metrics_port=9100,
        health_port=8100,
        peering="signalprocessing",
        peering_priority=-3,
        peering_lifetime=30,
        readiness_port=8102,
        data_storage_ready_url="http://datastorage:8080/health/ready",
        readiness_interval_seconds=2.5,
        readiness_timeout_seconds=1.0,
        cluster_registry_path=Path("/etc/fleet/clusters.yaml"),
        cluster_id="hub-eu-1",
        sharding_enabled=False,
        shard_count=16,
        shard_key="namespace",
        shard_lease_seconds=5.0,
        shard_lease_namespace="kubernaut-system",
        shard_group="sp-eu",
        replica_name="sp-0",
    )


def test_the_environment_wins_over_the_file_and_an_empty_variable_does_not(
    tmp_path: Path, policies: Path
) -> None:
    path = config_file(
        tmp_path,
        {
            "dataStorageUrl": "http://from-file",
            "policyDir": str(policies),
            "metricsPort": 9100,
            "healthPort": 8100,
        },
    )
    environ = {"DATA_STORAGE_URL": DATA_STORAGE, "METRICS_PORT": "9200", "HEALTH_PORT": ""}

    settings = load_settings(path, environ)

    assert (settings.data_storage_url, settings.metrics_port, settings.health_port) == (
        DATA_STORAGE,
        9200,
        8100,
    )


def test_the_defaults_fill_what_nobody_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policies").mkdir()  # the default policyDir, relative to the working directory

    assert load_settings(config_file(tmp_path, ""), {"DATA_STORAGE_URL": DATA_STORAGE}) == Settings(
        data_storage_url=DATA_STORAGE,
        policy_dir=Path("policies"),
        kubeconfig=None,
        opa_url=None,
        watch_namespaces=(),
        deadline_seconds=300.0,
        backoff_base_seconds=30.0,
        backoff_cap_seconds=300.0,
        audit_batch_size=100,
        audit_flush_interval=1.0,
        metrics_port=9090,
        health_port=8081,
        peering=None,
        peering_priority=None,
        peering_lifetime=60,
        readiness_port=8082,
        data_storage_ready_url=None,
        readiness_interval_seconds=15.0,
        readiness_timeout_seconds=5.0,
    )


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        pytest.param(
            "WATCH_NAMESPACES", "team-a, load-*,,", "watch_namespaces", ("team-a", "load-*"), id="namespaces"
        ),
        pytest.param(
            "WATCH_NAMESPACES", " , ", "watch_namespaces", (), id="only-separators-is-every-namespace"
        ),
        pytest.param("SP_DEADLINE_SECONDS", "0.25", "deadline_seconds", 0.25, id="seconds-may-be-fractions"),
        pytest.param("METRICS_PORT", "0", "metrics_port", 0, id="port-zero-is-any-free-port"),
        pytest.param("PEERING_PRIORITY", "-7", "peering_priority", -7, id="priority-may-be-negative"),
    ],
)
def test_environment_values_are_converted(
    policies: Path, variable: str, value: str, field: str, expected: object
) -> None:
    environ = {"DATA_STORAGE_URL": DATA_STORAGE, "POLICY_DIR": str(policies), variable: value}

    assert getattr(load_settings(None, environ), field) == expected


# Each setting with a value it refuses, given where such a value can come from: the file for what
# only YAML can express (lists, mappings, numbers), the environment otherwise.
BAD_VALUES = [
    pytest.param("dataStorageUrl", "file", {"host": "datastorage"}, id="dataStorageUrl-mapping"),
    pytest.param("policyDir", "file", ["policies", "more"], id="policyDir-list"),
    pytest.param("kubeconfig", "file", ["a", "b"], id="kubeconfig-list"),
    pytest.param("opaUrl", "file", {"url": "http://opa"}, id="opaUrl-mapping"),
    pytest.param("watchNamespaces", "file", {"team-a": True}, id="watchNamespaces-mapping"),
    pytest.param("watchNamespaces", "file", ["team-a", 2024], id="watchNamespaces-not-a-name"),
    pytest.param("deadlineSeconds", "environment", "0", id="deadlineSeconds-zero"),
    pytest.param("deadlineSeconds", "environment", "nan", id="deadlineSeconds-nan"),
    pytest.param("deadlineSeconds", "file", -1, id="deadlineSeconds-negative"),
    pytest.param("backoffBaseSeconds", "environment", "soon", id="backoffBaseSeconds-not-a-number"),
    pytest.param("backoffCapSeconds", "environment", "inf", id="backoffCapSeconds-infinite"),
    pytest.param("auditBatchSize", "environment", "0", id="auditBatchSize-zero"),
    pytest.param("auditBatchSize", "environment", "1.5", id="auditBatchSize-fraction"),
    pytest.param("maxConcurrentReconciles", "environment", "0", id="maxConcurrentReconciles-zero"),
    pytest.param("auditFlushInterval", "environment", "-0.5", id="auditFlushInterval-negative"),
    pytest.param("metricsPort", "environment", "65536", id="metricsPort-above-65535"),
    pytest.param("metricsPort", "environment", "-1", id="metricsPort-negative"),
    pytest.param("healthPort", "environment", "http", id="healthPort-not-a-number"),
    pytest.param("peering", "file", ["a"], id="peering-list"),
    pytest.param("peeringPriority", "environment", "high", id="peeringPriority-not-a-number"),
    pytest.param("peeringLifetime", "environment", "0", id="peeringLifetime-zero"),
    pytest.param("signalModeConfigPath", "file", ["a.yaml"], id="signalModeConfigPath-list"),
    pytest.param("clusterRegistryPath", "file", {"path": "a.yaml"}, id="clusterRegistryPath-mapping"),
    pytest.param("clusterID", "environment", "c" * 254, id="clusterID-too-long"),
    pytest.param("clusterID", "file", ["hub"], id="clusterID-list"),
    pytest.param("readinessPort", "environment", "70000", id="readinessPort-above-65535"),
    pytest.param("dataStorageReadyUrl", "environment", "datastorage:8080/readyz", id="readyUrl-no-scheme"),
    pytest.param("readinessIntervalSeconds", "environment", "0", id="readinessInterval-zero"),
    pytest.param("readinessTimeoutSeconds", "environment", "-1", id="readinessTimeout-negative"),
    pytest.param("shardingEnabled", "environment", "yes", id="shardingEnabled-not-a-boolean"),
    pytest.param("shardCount", "environment", "0", id="shardCount-zero"),
    pytest.param("shardCount", "environment", "5000", id="shardCount-above-4096"),
    pytest.param("shardKey", "environment", "name", id="shardKey-unknown"),
    pytest.param("shardLeaseSeconds", "environment", "0", id="shardLeaseSeconds-zero"),
    pytest.param("shardLeaseNamespace", "file", ["a"], id="shardLeaseNamespace-list"),
    pytest.param("shardGroup", "environment", "Signal_Processing", id="shardGroup-not-a-name"),
    pytest.param("replicaName", "environment", "-sp-0", id="replicaName-not-a-name"),
]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, "http://datastorage:8080/readyz", id="default-readyz-of-datastorage"),
        pytest.param(
            {"DATA_STORAGE_READY_URL": "https://ds.example/health/ready"},
            "https://ds.example/health/ready",
            id="configured",
        ),
    ],
)
def test_the_datastorage_readiness_url_defaults_to_its_readyz(
    policies: Path, environ: dict[str, str], expected: str
) -> None:
    base = {"DATA_STORAGE_URL": "http://datastorage:8080/", "POLICY_DIR": str(policies)}

    assert load_settings(None, base | environ).datastorage_readiness_url == expected


def test_every_setting_has_a_bad_value_below() -> None:
    assert {param.values[0] for param in BAD_VALUES} == set(config._FIELDS)


@pytest.mark.parametrize(("key", "source", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_key_and_the_variable(
    tmp_path: Path, policies: Path, key: str, source: str, value: object
) -> None:
    variable = config._FIELDS[key][1]
    environ = {"DATA_STORAGE_URL": DATA_STORAGE, "POLICY_DIR": str(policies)}
    environ.pop(variable, None)  # the environment would win over a bad value in the file
    path = None
    if source == "file":
        path = config_file(tmp_path, {key: value})
    else:
        environ[variable] = str(value)

    with pytest.raises(ConfigError, match=re.escape(f"setting {key} ({variable}): invalid value")):
        load_settings(path, environ)


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        pytest.param(
            "metricPort: 1\ndataStorageURL: x\n",
            {},
            "unknown settings ['dataStorageURL', 'metricPort']; known: ['auditBatchSize',",
            id="unknown-keys-named",
        ),
        pytest.param(
            "1: one\nsecond: two\n", {}, "unknown settings ['1', 'second']", id="unknown-number-key"
        ),
        pytest.param("- dataStorageUrl\n- policyDir\n", {}, "expected a mapping of settings", id="a-list"),
        pytest.param("just words\n", {}, "expected a mapping of settings", id="a-scalar"),
        pytest.param("dataStorageUrl: [\n", {}, "config file", id="not-yaml"),
        pytest.param(
            "", {}, "setting dataStorageUrl (DATA_STORAGE_URL) is required", id="dataStorageUrl-missing"
        ),
        pytest.param(
            'dataStorageUrl: ""\n',
            {"DATA_STORAGE_URL": ""},
            "setting dataStorageUrl (DATA_STORAGE_URL) is required",
            id="dataStorageUrl-empty",
        ),
        pytest.param(
            "",
            {"DATA_STORAGE_URL": DATA_STORAGE, "POLICY_DIR": "{tmp}/controller.yaml"},
            "setting policyDir (POLICY_DIR): {tmp}/controller.yaml is not a directory",
            id="policyDir-a-file",
        ),
        pytest.param(
            "shardingEnabled: true\npeering: signalprocessing\nshardLeaseNamespace: ops\n",
            {"DATA_STORAGE_URL": DATA_STORAGE, "POLICY_DIR": "{tmp}"},
            "settings shardingEnabled (SHARDING_ENABLED) and peering (PEERING) exclude each other",
            id="sharding-and-peering",
        ),
        pytest.param(
            "shardingEnabled: true\n",
            {"DATA_STORAGE_URL": DATA_STORAGE, "POLICY_DIR": "{tmp}"},
            "setting shardLeaseNamespace (SHARD_LEASE_NAMESPACE) is required with sharding",
            id="sharding-without-lease-namespace",
        ),
        pytest.param(
            "",
            {"DATA_STORAGE_URL": DATA_STORAGE, "POLICY_DIR": "{tmp}/absent"},
            "setting policyDir (POLICY_DIR): {tmp}/absent is not a directory",
            id="policyDir-missing",
        ),
    ],
)
def test_a_bad_file_or_a_missing_setting_is_refused_with_what_is_wrong(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    path = config_file(tmp_path, text)
    environ = {name: value.format(tmp=tmp_path) for name, value in environ.items()}

    with pytest.raises(ConfigError, match=re.escape(message.format(tmp=tmp_path))):
        load_settings(path, environ)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    absent = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"config file {absent}:")):
        load_settings(absent, {"DATA_STORAGE_URL": DATA_STORAGE})


@pytest.mark.parametrize(
    ("patterns", "kopf_namespaces", "watched", "unwatched"),
    [
        pytest.param((), (), ("anything",), (), id="none-is-every-namespace"),
        pytest.param(("team-a", "team-b"), ("team-a", "team-b"), ("team-b",), ("team-c",), id="exact-names"),
        # With a glob kopf watches cluster-wide and the handler filters (see Settings.kopf_namespaces).
        pytest.param(("team-a", "load-*"), (), ("team-a", "load-7"), ("loader", "team-b"), id="a-glob"),
        pytest.param(("sp-[ab]?",), (), ("sp-a1",), ("sp-c1", "sp-a12"), id="a-character-class"),
    ],
)
def test_watched_namespaces(
    policies: Path,
    patterns: tuple[str, ...],
    kopf_namespaces: tuple[str, ...],
    watched: tuple[str, ...],
    unwatched: tuple[str, ...],
) -> None:
    settings = Settings(data_storage_url=DATA_STORAGE, policy_dir=policies, watch_namespaces=patterns)

    assert settings.kopf_namespaces == kopf_namespaces
    assert [namespace for namespace in watched + unwatched if settings.watches(namespace)] == list(watched)


def test_the_replica_is_named_by_the_setting_or_else_by_the_host(
    policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"DATA_STORAGE_URL": DATA_STORAGE, "POLICY_DIR": str(policies)}
    monkeypatch.setattr(socket, "gethostname", lambda: "SP_Controller-7d9f.cluster.local")

    assert load_settings(None, environ | {"REPLICA_NAME": "sp-0"}).replica == "sp-0"
    assert load_settings(None, environ).replica == "sp-controller-7d9f.cluster.local"
