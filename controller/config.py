"""Controller configuration: one optional YAML file, overridden by environment variables.

Every setting is validated at start; a bad one stops the controller with a
message naming the setting (the YAML key or the environment variable).
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    data_storage_url: str
    policy_dir: Path
    kubeconfig: str | None = None
    opa_url: str | None = None
    watch_namespaces: tuple[str, ...] = ()  # names or globs; empty means every namespace
    deadline_seconds: float = 300.0
    backoff_base_seconds: float = 30.0
    backoff_cap_seconds: float = 300.0
    audit_batch_size: int = 100
    max_concurrent_reconciles: int = 32  # SPs whose steps run at once; the others wait their turn
    audit_flush_interval: float = 1.0
    metrics_port: int = 9090
    health_port: int = 8081
    peering: str | None = None  # a kopf peering name: one active controller among replicas
    peering_priority: int | None = None  # the highest live one is active; None: random per process
    peering_lifetime: int = 60  # seconds a silent peer still counts as alive: the takeover time after a crash
    signal_mode_config_path: Path | None = None  # None: proactive-signal-mappings.yaml in policy_dir
    cluster_registry_path: Path | None = None  # None: cluster-registry.yaml in policy_dir
    cluster_id: str = ""  # the hub's own id in the fleet; signals naming it are local
    readiness_port: int = 8082  # /readyz: the readiness gates
    data_storage_ready_url: str | None = None  # None: <data_storage_url>/readyz
    readiness_interval_seconds: float = 15.0  # between two probes of every readiness gate
    readiness_timeout_seconds: float = 5.0  # one probe's budget; longer is a failure
    # Sharding (README, "Replicas: peering or shards"): every replica works, each on its shards.
    sharding_enabled: bool = False
    shard_count: int = 256  # an SP's shard: a stable hash of its shard key, modulo this (more: evener shares)
    shard_key: str = "uid"  # "uid" (spreads evenly) or "namespace" (one namespace, one replica)
    shard_lease_seconds: float = 15.0  # a replica silent this long is gone; its shards are taken over
    shard_lease_namespace: str | None = None  # where the replicas' Leases live; required with sharding
    shard_group: str = "signalprocessing"  # the replicas that share the shards (the Leases' label)
    replica_name: str = ""  # this replica's name, unique in its group; "" is the host name

    def __post_init__(self) -> None:
        if self.sharding_enabled and self.peering:
            raise ConfigError(
                "settings shardingEnabled (SHARDING_ENABLED) and peering (PEERING) exclude each other:"
                " with shards every replica works, with peering one does"
            )
        if self.sharding_enabled and not self.shard_lease_namespace:
            raise ConfigError(
                "setting shardLeaseNamespace (SHARD_LEASE_NAMESPACE) is required with sharding:"
                " the namespace of the replicas' Leases"
            )

    @property
    def kopf_namespaces(self) -> tuple[str, ...]:
        """The namespaces kopf itself watches: exact names only; none (cluster-wide) with any glob.

        For globs kopf lists the namespaces and only then starts a namespace watch
        whose own initial listing it ignores, so a namespace created in between is
        never watched. With a glob the controller therefore watches cluster-wide
        and the SignalProcessing handler filters by `watches`.
        """
        if any(any(char in pattern for char in "*?[") for pattern in self.watch_namespaces):
            return ()
        return self.watch_namespaces

    @property
    def datastorage_readiness_url(self) -> str:
        """What the datastorage readiness gate GETs: the configured URL, else DataStorage's `/readyz`."""
        return self.data_storage_ready_url or f"{self.data_storage_url.rstrip('/')}/readyz"

    @property
    def replica(self) -> str:
        """This replica's name: the configured one, else the host name (a Pod's name) made valid."""
        if self.replica_name:
            return self.replica_name
        name = re.sub(r"[^-a-z0-9.]+", "-", socket.gethostname().lower())[:63].strip("-.")
        return name or "replica"

    def watches(self, namespace: str) -> bool:
        return not self.watch_namespaces or any(
            fnmatch.fnmatchcase(namespace, pattern) for pattern in self.watch_namespaces
        )


# YAML key -> (field, environment variable)
_FIELDS = {
    "dataStorageUrl": ("data_storage_url", "DATA_STORAGE_URL"),
    "policyDir": ("policy_dir", "POLICY_DIR"),
    "kubeconfig": ("kubeconfig", "KUBECONFIG"),
    "opaUrl": ("opa_url", "OPA_URL"),
    "watchNamespaces": ("watch_namespaces", "WATCH_NAMESPACES"),
    "deadlineSeconds": ("deadline_seconds", "SP_DEADLINE_SECONDS"),
    "backoffBaseSeconds": ("backoff_base_seconds", "SP_BACKOFF_BASE_SECONDS"),
    "backoffCapSeconds": ("backoff_cap_seconds", "SP_BACKOFF_CAP_SECONDS"),
    "auditBatchSize": ("audit_batch_size", "AUDIT_BATCH_SIZE"),
    "maxConcurrentReconciles": ("max_concurrent_reconciles", "MAX_CONCURRENT_RECONCILES"),
    "auditFlushInterval": ("audit_flush_interval", "AUDIT_FLUSH_INTERVAL"),
    "metricsPort": ("metrics_port", "METRICS_PORT"),
    "healthPort": ("health_port", "HEALTH_PORT"),
    "peering": ("peering", "PEERING"),
    "peeringPriority": ("peering_priority", "PEERING_PRIORITY"),
    "peeringLifetime": ("peering_lifetime", "PEERING_LIFETIME"),
    "signalModeConfigPath": ("signal_mode_config_path", "SIGNAL_MODE_CONFIG_PATH"),
    "clusterRegistryPath": ("cluster_registry_path", "CLUSTER_REGISTRY_PATH"),
    "clusterID": ("cluster_id", "CLUSTER_ID"),
    "readinessPort": ("readiness_port", "READINESS_PORT"),
    "dataStorageReadyUrl": ("data_storage_ready_url", "DATA_STORAGE_READY_URL"),
    "readinessIntervalSeconds": ("readiness_interval_seconds", "READINESS_INTERVAL_SECONDS"),
    "readinessTimeoutSeconds": ("readiness_timeout_seconds", "READINESS_TIMEOUT_SECONDS"),
    "shardingEnabled": ("sharding_enabled", "SHARDING_ENABLED"),
    "shardCount": ("shard_count", "SHARD_COUNT"),
    "shardKey": ("shard_key", "SHARD_KEY"),
    "shardLeaseSeconds": ("shard_lease_seconds", "SHARD_LEASE_SECONDS"),
    "shardLeaseNamespace": ("shard_lease_namespace", "SHARD_LEASE_NAMESPACE"),
    "shardGroup": ("shard_group", "SHARD_GROUP"),
    "replicaName": ("replica_name", "REPLICA_NAME"),
}


_HIGHEST_PORT: Final = 65535  # ports are 16-bit; 0 lets the OS pick a free one
_MAX_CLUSTER_ID_LENGTH: Final = 253  # as spec.signal.clusterID
_MAX_SHARDS: Final = 4096
SHARD_KEYS: Final = ("uid", "namespace")
# A label value (the group) and a name part (the replica): the Lease is named "<group>-<replica>".
_NAME_PART: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")


def _convert(key: str, value: Any) -> Any:
    name = _FIELDS[key][0]
    try:
        if name == "watch_namespaces":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ValueError("expected names or globs, as a list or separated by commas")
            return tuple(item.strip() for item in items if item.strip())
        if name == "sharding_enabled":
            text = str(value).lower()
            if text not in ("true", "false"):
                raise ValueError("expected true or false")
            return text == "true"
        if name == "shard_key":
            if value not in SHARD_KEYS:
                raise ValueError(f"expected one of {', '.join(SHARD_KEYS)}")
            return value
        if name in ("shard_group", "replica_name"):
            if not isinstance(value, str) or not _NAME_PART.fullmatch(value):
                raise ValueError("expected up to 63 lowercase letters, digits, '-' or '.'")
            return value
        if name == "cluster_id":
            if not isinstance(value, str) or len(value) > _MAX_CLUSTER_ID_LENGTH:
                raise ValueError(f"expected text of at most {_MAX_CLUSTER_ID_LENGTH} characters")
            return value
        if name in ("policy_dir", "signal_mode_config_path", "cluster_registry_path"):
            if not isinstance(value, str) or not value:
                raise ValueError("expected a path")
            return Path(value)
        if name in (
            "audit_batch_size",
            "max_concurrent_reconciles",
            "metrics_port",
            "health_port",
            "readiness_port",
            "shard_count",
        ):
            number = int(value)
            lowest, highest = (0, _HIGHEST_PORT) if name.endswith("_port") else (1, math.inf)
            if name == "shard_count":
                highest = _MAX_SHARDS
            if not lowest <= number <= highest:
                raise ValueError(f"{number} is out of range")
            return number
        if name == "peering_priority":
            return int(value)
        if name == "peering_lifetime":
            lifetime = int(value)
            if lifetime < 1:
                raise ValueError(f"{lifetime} must be at least 1")
            return lifetime
        if name.endswith("_seconds") or name == "audit_flush_interval":
            seconds = float(value)
            # NaN slips past any comparison; infinity is no wait the controller could schedule.
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{seconds} must be positive")
            return seconds
        if isinstance(value, Mapping | list):  # a YAML mapping or list where a URL or name belongs
            raise ValueError(f"expected a string, not a {type(value).__name__}")
        if name == "data_storage_ready_url" and not str(value).startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return str(value) if value not in (None, "") else None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"setting {key} ({_FIELDS[key][1]}): invalid value {value!r}: {error}") from error


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"config file {config_file}: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_file}: expected a mapping of settings")
        unknown = sorted(str(key) for key in set(loaded) - set(_FIELDS))  # YAML keys may be numbers
        if unknown:
            raise ConfigError(
                f"config file {config_file}: unknown settings {unknown}; known: {sorted(_FIELDS)}"
            )
        raw.update(loaded)
    for key, (_, variable) in _FIELDS.items():
        if environ.get(variable):
            raw[key] = environ[variable]
    values = {_FIELDS[key][0]: _convert(key, value) for key, value in raw.items()}
    if not values.get("data_storage_url"):
        raise ConfigError(
            "setting dataStorageUrl (DATA_STORAGE_URL) is required: audit events must go somewhere"
        )
    values.setdefault("policy_dir", Path("policies"))
    if not values["policy_dir"].is_dir():
        raise ConfigError(f"setting policyDir (POLICY_DIR): {values['policy_dir']} is not a directory")
    return Settings(**values)
