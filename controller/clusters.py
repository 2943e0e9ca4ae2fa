"""The fleet as the SignalProcessing controller sees it: which cluster a signal came from, and that
cluster's labels for the policies.

A signal names its cluster in `spec.signal.clusterID`; empty means the hub's own cluster. The hub
may have an id of its own (the `clusterID` setting, default ""): a signal naming it is local too,
and an empty `clusterID` is looked up under it. Any other id is a remote cluster. This controller
has no reader for remote clusters (kubernaut 2026 reads them through an MCP gateway), so the
pipeline reads nothing of a remote cluster and enriches in degraded mode.

The registry gives a registered cluster's labels to the policy input (`input.cluster.labels`), so
a policy can classify by region, tier or owner of the cluster a signal came from. An unregistered
cluster has no labels; that is no error.

`ClusterRegistry` is what the pipeline asks. `FileClusterRegistry` reads `cluster-registry.yaml`,
by default beside the policies (the same ConfigMap), and is reloaded with them by
`controller.hotreload`, as `controller.watchedfile` says:

    clusters:
      prod-eu-1:
        labels: {region: eu-west-1, tier: gold}
      edge-7: {}            # registered, no labels

A missing file is an empty registry. A file that is not such a registry is refused with a message
naming the problem (unknown keys included, so a misspelt `labels` is not silently no labels): at
start the controller does not start; on a reload the last good registry stays. Another
implementation of `ClusterRegistry` could ask a gateway instead.

Boundary: the file, the lookup and the local/remote decision; no Kubernetes API.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from controller.watchedfile import FileRejected, WatchedFile, yaml_document

REGISTRY_FILE_NAME: Final = "cluster-registry.yaml"
# As `spec.signal.clusterID`; label keys (a 253-character prefix, "/", a 63-character name) and
# values as Kubernetes allows them.
MAX_CLUSTER_ID_LENGTH: Final = 253
MAX_LABEL_KEY_LENGTH: Final = 317
MAX_LABEL_VALUE_LENGTH: Final = 63
_KEY: Final = "clusters"
_ENTRY_KEYS: Final = frozenset({"labels"})

logger = logging.getLogger(__name__)

_NO_LABELS: Final[Mapping[str, str]] = MappingProxyType({})


class RegistryError(FileRejected):
    """The registry file is not a mapping of cluster ids to their labels."""


class ClusterRegistry(Protocol):
    def labels(self, cluster_id: str) -> Mapping[str, str]:
        """The labels of a registered cluster; none for an unregistered one."""
        ...


@dataclass(frozen=True)
class RegisteredClusters:
    """One version of the registry: cluster id -> labels."""

    clusters: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))

    def labels(self, cluster_id: str) -> Mapping[str, str]:
        return self.clusters.get(cluster_id, _NO_LABELS)


def parse_registry(text: str) -> RegisteredClusters:
    """The registry in a file's text; raises `RegistryError` (or `FileRejected`) naming the problem."""
    document = yaml_document(text)
    if document is None:
        return RegisteredClusters()
    if not isinstance(document, dict):
        raise RegistryError(f"expected a mapping with the key {_KEY!r}, got {type(document).__name__}")
    if unknown := sorted(str(key) for key in document if key != _KEY):
        raise RegistryError(f"unknown keys {unknown}; the registry has only {_KEY!r}")
    clusters = document.get(_KEY)
    if clusters is None:
        return RegisteredClusters()
    if not isinstance(clusters, dict):
        raise RegistryError(f"{_KEY} must map cluster ids to entries, got {type(clusters).__name__}")
    registry = {}
    for cluster_id, entry in clusters.items():
        if not isinstance(cluster_id, str) or not 0 < len(cluster_id) <= MAX_CLUSTER_ID_LENGTH:
            raise RegistryError(
                f"{_KEY}: {cluster_id!r} is not a cluster id "
                f"(text of 1 to {MAX_CLUSTER_ID_LENGTH} characters)"
            )
        registry[cluster_id] = MappingProxyType(_labels_of(cluster_id, entry))
    return RegisteredClusters(MappingProxyType(registry))


def _labels_of(cluster_id: str, entry: object) -> dict[str, str]:
    where = f"{_KEY}.{cluster_id}"
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping with labels, got {type(entry).__name__}")
    if unknown := sorted(str(key) for key in entry if key not in _ENTRY_KEYS):
        raise RegistryError(f"{where}: unknown keys {unknown}; an entry has only {sorted(_ENTRY_KEYS)}")
    labels = entry.get("labels")
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise RegistryError(f"{where}.labels: expected a mapping, got {type(labels).__name__}")
    for key, value in labels.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_LABEL_KEY_LENGTH:
            raise RegistryError(f"{where}.labels: {key!r} is not a label key")
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE_LENGTH:
            raise RegistryError(
                f"{where}.labels.{key}: {value!r} is not a label value "
                f"(text of at most {MAX_LABEL_VALUE_LENGTH} characters; quote numbers and booleans)"
            )
    return dict(labels)


class FileClusterRegistry(WatchedFile[RegisteredClusters]):
    """The registry in force (`current`, with its hash); `reload` swaps it only for a file that reads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, parse_registry, absent=RegisteredClusters())
        if not self.current.sha256:
            logger.info("no %s: no cluster is registered", self.path)

    def labels(self, cluster_id: str) -> Mapping[str, str]:
        return self.current.content.labels(cluster_id)


@dataclass(frozen=True)
class ClusterMember:
    """The cluster a signal came from, as far as the hub knows it."""

    id: str  # the signal's clusterID, else the hub's own id; "" for an unnamed hub
    labels: Mapping[str, str]
    remote: bool  # not the hub: nothing of it can be read here


@dataclass(frozen=True)
class Fleet:
    """The hub's own id and the registry: decides, per signal, which cluster it is about."""

    registry: ClusterRegistry
    hub_id: str = ""

    def member(self, cluster_id: str) -> ClusterMember:
        """The cluster of a signal whose `spec.signal.clusterID` is `cluster_id` ("" for the hub)."""
        effective = cluster_id or self.hub_id
        remote = bool(cluster_id) and cluster_id != self.hub_id
        return ClusterMember(effective, self.registry.labels(effective) if effective else _NO_LABELS, remote)


class _NoRegistry:
    def labels(self, cluster_id: str) -> Mapping[str, str]:
        return _NO_LABELS


def hub_only() -> Fleet:
    """A fleet of the hub alone: no registered cluster, every named cluster remote."""
    return Fleet(_NoRegistry())
