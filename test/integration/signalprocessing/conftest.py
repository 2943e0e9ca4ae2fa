"""Worker layer: each xdist worker runs its own controller, OPA and policy directory.

The controller watches only `sp-<worker>-*` namespaces, so workers never see
each other's SignalProcessings, and each test gets a fresh namespace inside
that pattern. Backoff is shortened so transient-error specs finish in
seconds; everything else is the controller's real configuration.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devstack.controller_process import ControllerProcess
from devstack.opa_server import OpaServer
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from envtest import assets
from processes.child import log_tail
from test.integration.conftest import request_deletion
from test.integration.polling import depending_on

REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def worker_opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    with OpaServer(assets.OPA.path, log_path=tmp_path_factory.mktemp("opa") / "opa.log") as opa:
        yield opa


@pytest.fixture(scope="session")
def worker_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shipped policies, which hot-reload specs may rewrite."""
    return copy_shipped_policies(tmp_path_factory.mktemp("policies"))


def controller_settings(
    stack: StackState, *, namespaces: str, policy_dir: Path, opa_url: str | None, **overrides: str
) -> dict[str, str]:
    settings = {
        "KUBECONFIG": stack.kubeconfig,
        "DATA_STORAGE_URL": stack.datastorage_url,
        "POLICY_DIR": str(policy_dir),
        "WATCH_NAMESPACES": namespaces,
        "SP_BACKOFF_BASE_SECONDS": "0.5",
        "SP_BACKOFF_CAP_SECONDS": "2",
        "AUDIT_FLUSH_INTERVAL": "0.2",
    }
    if opa_url:
        settings["OPA_URL"] = opa_url
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def namespace_prefix(worker_id: str) -> str:
    return f"sp-{worker_id}-"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing spec that used the worker's controller shows the last lines of its and its OPA's logs."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    if report.failed and isinstance(funcargs.get("operator"), ControllerProcess):
        servers = {"controller": funcargs["operator"], "OPA": funcargs.get("worker_opa")}
        for name, server in servers.items():
            if server is not None:
                report.sections.append(
                    (f"worker {name} log {server.log_path} (last lines)", log_tail(server.log_path))
                )
    return report


@pytest.fixture(scope="session")
def worker_controller(
    stack: StackState,
    worker_opa: OpaServer,
    worker_policy_dir: Path,
    namespace_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControllerProcess]:
    settings = controller_settings(
        stack, namespaces=f"{namespace_prefix}*", policy_dir=worker_policy_dir, opa_url=worker_opa.url
    )
    log = tmp_path_factory.mktemp("controller") / "controller.log"
    with ControllerProcess(settings=settings, log_path=log) as process:
        yield process


@pytest.fixture
def operator(worker_controller: ControllerProcess, worker_opa: OpaServer) -> Iterator[ControllerProcess]:
    """The worker's controller and OPA, running: a spec's waits fail at once if either dies, and the
    next spec gets fresh ones (on the same ports, so the controller finds its OPA again)."""
    if worker_opa.death_report() is not None:
        worker_opa.start()
        worker_controller.stop()
    if not worker_controller.is_running:
        worker_controller.start()
    with depending_on(worker_controller.death_report, worker_opa.death_report):
        yield worker_controller


NamespaceFactory = Callable[..., str]


@pytest.fixture
def make_namespace(api_client: client.ApiClient, namespace_prefix: str) -> Iterator[NamespaceFactory]:
    """Creates namespaces the worker's controller watches; deletion is requested, never awaited."""
    core = client.CoreV1Api(api_client)
    created: list[str] = []

    def make(labels: dict[str, str] | None = None, *, prefix: str | None = None) -> str:
        name = f"{prefix or namespace_prefix}{secrets.token_hex(4)}"
        core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
        created.append(name)
        return name

    yield make
    request_deletion(core.delete_namespace, created)


@pytest.fixture
def sp_namespace(make_namespace: NamespaceFactory, operator: ControllerProcess) -> str:
    """A watched namespace labelled production, with the worker's controller running."""
    return make_namespace({"kubernaut.ai/environment": "production"})


@pytest.fixture
def custom_objects(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


# --- objects a signal is about -------------------------------------------------------------------
# The control plane runs no controller-manager and no kubelet: what exists, who owns it and what
# state it is in is only ever what a spec wrote.


def pod_template(labels: dict[str, str]) -> dict[str, Any]:
    """The pod of every workload the specs create: one container, whose image nothing ever pulls."""
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
    }


def pod(
    name: str, *, labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    manifest = pod_template(labels or {"app": name})
    manifest["metadata"]["name"] = name
    if owner is not None:
        manifest["metadata"]["ownerReferences"] = [owner]
    return manifest


def workload(
    name: str, labels: dict[str, str], *, owner: dict[str, Any] | None = None, replicas: int = 2
) -> dict[str, Any]:
    """A Deployment, StatefulSet or ReplicaSet body (they share this shape), selecting `labels`."""
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": pod_template(labels),
        },
    }


def controller_ref(created: Any, *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to an object a create call returned (it carries the kind, apiVersion and uid)."""
    return {
        "apiVersion": created.api_version,
        "kind": created.kind,
        "name": created.metadata.name,
        "uid": created.metadata.uid,
        "controller": controller,
    }


def create_pod_of_deployment(
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
    pod_name: str,
    *,
    replica_set: str,
    deployment: str,
    labels: dict[str, str] | None = None,
) -> None:
    """Deployment -> ReplicaSet -> Pod, each controlled by the next, as a controller-manager would leave
    them. All three carry `labels` (by default `app: <deployment>`), which the workloads select."""
    labels = labels or {"app": deployment}
    owner = apps.create_namespaced_deployment(namespace, workload(deployment, labels))
    replicas = apps.create_namespaced_replica_set(
        namespace, workload(replica_set, labels, owner=controller_ref(owner))
    )
    core.create_namespaced_pod(namespace, pod(pod_name, labels=labels, owner=controller_ref(replicas)))
