"""Fixtures of the node specs: the suite's one-node cluster, and a DataStorage release on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from devstack import charts
from devstack.charts import DATASTORAGE_CHART
from devstack.state import StackState
from test.integration.deploy.charts import Release
from test.integration.node.cluster import (
    NodeCluster,
    cluster_ip_url,
    install,
    pod_url,
    wait_available,
)


@pytest.fixture(scope="session")
def node_cluster(stack: StackState) -> NodeCluster:
    return NodeCluster.of(stack)


@pytest.fixture(scope="session")
def node_custom_objects(node_cluster: NodeCluster) -> Iterator[client.CustomObjectsApi]:
    api = config.new_client_from_config(config_file=node_cluster.kubeconfig)
    yield client.CustomObjectsApi(api)
    api.close()


@dataclass(frozen=True)
class DataStorageOnNode:
    release: Release
    in_cluster_url: str  # what a Pod on the node is given: the Service's ClusterIP
    url: str  # what the spec reads the trails from: a ready Pod's address


@pytest.fixture
def datastorage_on_node(node_cluster: NodeCluster, tmp_path: Path) -> Iterator[DataStorageOnNode]:
    """A DataStorage release in a namespace of its own, Available; uninstalled afterwards."""
    release = install(
        node_cluster, DATASTORAGE_CHART, charts.datastorage_values(node_cluster.state), tmp_path
    )
    wait_available(node_cluster, release)
    yield DataStorageOnNode(
        release, cluster_ip_url(node_cluster, release), pod_url(node_cluster, release, 8080)
    )
    release.uninstall()
