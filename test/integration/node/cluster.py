"""The suite's one-node cluster: installing the charts onto it and watching their Pods for real.

Every release gets a namespace of its own. The DataStorage releases share the
node's PostgreSQL database and Redis, as replicas of one service would: every
spec reads back only its own SignalProcessings' events. Services are reached
from here at their Pods' addresses, which the host routes to the node.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devstack import charts
from devstack.charts import kubectl
from devstack.state import StackState
from test.integration.deploy.charts import Release, unique_name
from test.integration.polling import ConditionNotMet, eventually

# A Pod's start on a loaded 2-core machine: image already loaded, Python imports, the probes' periods.
POD_START_SECONDS = 180.0
T = TypeVar("T")


@dataclass(frozen=True)
class NodeCluster:
    state: StackState

    @classmethod
    def of(cls, stack: StackState) -> NodeCluster:
        if not stack.node_kubeconfig:
            raise AssertionError(
                "the stack has no node: a `node` spec must be collected when the stack starts"
            )
        return cls(stack)

    @property
    def kubeconfig(self) -> str:
        return self.state.node_kubeconfig

    def kubectl(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl(*arguments, kubeconfig=self.kubeconfig, check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout))


def install(
    cluster: NodeCluster,
    chart: Path,
    values: dict[str, Any],
    directory: Path,
    *,
    namespace: str | None = None,
) -> Release:
    """A release in a namespace of its own (`namespace`, or a fresh one); no waiting for its Pods."""
    release = Release(unique_name("rel"), namespace or unique_name("node"), chart, cluster.kubeconfig)
    charts.install(cluster.state, release.name, chart, release.namespace, values, directory)
    return release


def upgrade(cluster: NodeCluster, release: Release, values: dict[str, Any], directory: Path) -> None:
    charts.upgrade(cluster.state, release.name, release.chart, release.namespace, values, directory)


def deployment_name(release: Release) -> str:
    deployments = [m for m in release.manifests() if m["kind"] == "Deployment"]
    assert len(deployments) == 1, f"expected one Deployment in {release.name}, got {deployments}"
    return str(deployments[0]["metadata"]["name"])


def service_of(release: Release) -> dict[str, Any]:
    services = [m for m in release.manifests() if m["kind"] == "Service"]
    assert services, f"no Service in {release.name}"
    return services[0]


def wait_available(
    cluster: NodeCluster, release: Release, timeout: float = POD_START_SECONDS
) -> dict[str, Any]:
    """Polls until the release's Deployment is Available with every replica updated and ready."""
    name = deployment_name(release)

    def available() -> dict[str, Any] | None:
        deployment = cluster.get("deployment", name, release.namespace)
        status = deployment.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        wanted = deployment["spec"]["replicas"]
        done = (
            conditions.get("Available") == "True"
            and status.get("updatedReplicas") == wanted
            and status.get("readyReplicas") == wanted
            and status.get("replicas") == wanted
            and status.get("observedGeneration") == deployment["metadata"]["generation"]
        )
        return deployment if done else None

    return eventually_on_node(
        cluster,
        release.namespace,
        available,
        timeout=timeout,
        message=f"Deployment {release.namespace}/{name} Available",
    )


def eventually_on_node(
    cluster: NodeCluster,
    namespace: str,
    probe: Callable[[], T | None],
    *,
    message: str,
    timeout: float = POD_START_SECONDS,
    interval: float = 1.0,
) -> T:
    """`eventually`, whose failure also shows the namespace's Pods and Events as they are then."""
    try:
        return eventually(probe, timeout=timeout, interval=interval, message=message)
    except ConditionNotMet as error:
        raise ConditionNotMet(f"{error}\n{describe(cluster, namespace)}") from None


def describe(cluster: NodeCluster, namespace: str) -> str:
    """What a failed wait shows: the namespace's Pods, their recent Events and their containers' last
    log lines (of the previous run, for a container that restarted)."""
    listing = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    logs = []
    for name in cluster.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split():
        for previous in ("--previous=true", "--previous=false"):
            answer = cluster.kubectl(
                "logs",
                name,
                "-n",
                namespace,
                "--all-containers",
                "--prefix",
                "--tail=15",
                previous,
                check=False,
            )
            if answer.returncode == 0 and answer.stdout.strip():
                logs.append(f"{name} ({previous}):\n{answer.stdout}")
    return f"pods:\n{listing}\nevents:\n{events[-3000:]}\nlogs:\n" + "\n".join(logs)


def pods(cluster: NodeCluster, release: Release) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in selector_of(cluster, release).items())
    listing = cluster.kubectl("get", "pods", "-n", release.namespace, "-l", selector, "-o", "json").stdout
    return list(json.loads(listing)["items"])


def selector_of(cluster: NodeCluster, release: Release) -> dict[str, str]:
    """The labels of the release Deployment's Pods."""
    deployment = cluster.get("deployment", deployment_name(release), release.namespace)
    return dict(deployment["spec"]["selector"]["matchLabels"])


def pod_url(cluster: NodeCluster, release: Release, port: int) -> str:
    """http://<a ready Pod's address>:port — the host routes the node's Pod subnet to it."""
    ready = [
        pod
        for pod in pods(cluster, release)
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        and not pod["metadata"].get("deletionTimestamp")
    ]
    assert ready, f"no ready Pod in {release.namespace}\n{describe(cluster, release.namespace)}"
    return f"http://{ready[0]['status']['podIP']}:{port}"


def cluster_ip_url(cluster: NodeCluster, release: Release) -> str:
    """The release Service's in-cluster URL by its ClusterIP (there is no DNS on the node)."""
    return charts.service_url(cluster.state, release.namespace, service_of(release)["metadata"]["name"])
