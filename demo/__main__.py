"""Starts the stack, OPA and the controller, creates demo signals, prints their classification.

Everything runs on loopback with its own temp directories; Ctrl-C (or
SIGTERM) stops it all. With `--node` the controller and DataStorage run as
Pods instead: the two charts installed onto a one-node cluster (envtest.node)
with the images built from deploy/Containerfile. The servers die with this process even if it is
killed (PR_SET_PDEATHSIG and the stack supervisor's watch on this pid). The
terminal shows the run's steps and the table; what libraries in this process
log (the Kubernetes client, urllib3), and the warnings they raise, go to
`demo.log` among the run's other logs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import client, config

from devstack import charts
from devstack.controller_process import ControllerProcess
from devstack.launch import supervised_stack
from devstack.opa_server import OpaServer
from envtest import assets

REPOSITORY = Path(__file__).resolve().parent.parent
DEMO_SIGNALS = [
    # (namespace, name, severity, target kind, target name)
    ("demo-production", "checkout-oom", "critical", "Pod", "checkout-7d9f-abcde"),
    ("demo-production", "checkout-latency", "warning", "Deployment", "checkout"),
    ("demo-staging", "search-crashloop", "critical", "Pod", "search-5c4b-fghij"),
    ("demo-staging", "search-disk", "info", "Deployment", "search"),
]
# Where `--node` installs the two charts.
_SYSTEM = "kubernaut-system"
_COLUMNS = ("NAMESPACE", "NAME", "PHASE", "ENVIRONMENT", "PRIORITY", "CRITICALITY", "SLA")


def _workloads(
    namespace: str, app: str, pod_name: str, image: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """A Deployment -> ReplicaSet -> Pod chain, as a cluster with controllers would have made it. On a
    node (`image` given) its Pods run that image, idle, so that nothing is pulled."""
    labels = {"app": app, "kubernaut.ai/team": "payments" if "checkout" in app else "discovery"}
    container: dict[str, Any] = {"name": app, "image": f"registry.local/{app}:1"}
    if image is not None:
        container = {
            "name": app,
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["sleep", "infinity"],
        }
    template = {"metadata": {"labels": labels}, "spec": {"containers": [container]}}
    return [
        (
            "deployment",
            {
                "metadata": {"name": app, "namespace": namespace, "labels": labels},
                "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template},
            },
        ),
        (
            "replicaset",
            {
                "metadata": {"name": f"{app}-7d9f", "namespace": namespace, "labels": labels},
                "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template},
            },
        ),
        (
            "pod",
            {
                "metadata": {"name": pod_name, "namespace": namespace, "labels": labels},
                "spec": template["spec"],
            },
        ),
    ]


def _create_demo(api: client.ApiClient, image: str | None = None) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    for namespace, environment in (("demo-production", "production"), ("demo-staging", "staging")):
        core.create_namespace(
            {
                "metadata": {
                    "name": namespace,
                    "labels": {"kubernaut.ai/environment": environment, "kubernaut.ai/team": "sre"},
                }
            }
        )
    owners: dict[tuple[str, str], dict[str, Any]] = {}
    for namespace, app, pod_name in (
        ("demo-production", "checkout", "checkout-7d9f-abcde"),
        ("demo-staging", "search", "search-5c4b-fghij"),
    ):
        for kind, body in _workloads(namespace, app, pod_name, image):
            owner = owners.get((namespace, {"replicaset": "deployment", "pod": "replicaset"}.get(kind, "")))
            if owner is not None:
                body["metadata"]["ownerReferences"] = [owner]
            if kind == "deployment":
                made = apps.create_namespaced_deployment(namespace, body)
            elif kind == "replicaset":
                made = apps.create_namespaced_replica_set(namespace, body)
            else:
                made = core.create_namespaced_pod(namespace, body)
            owners[(namespace, kind)] = {
                "apiVersion": made.api_version,
                "kind": made.kind,
                "name": made.metadata.name,
                "uid": made.metadata.uid,
                "controller": True,
            }
    objects = client.CustomObjectsApi(api)
    for namespace, name, severity, kind, target in DEMO_SIGNALS:
        objects.create_namespaced_custom_object(
            "kubernaut.ai",
            "v1alpha1",
            namespace,
            "signalprocessings",
            {
                "apiVersion": "kubernaut.ai/v1alpha1",
                "kind": "SignalProcessing",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "remediationRequestRef": {"name": f"rr-{name}", "namespace": namespace},
                    "signal": {
                        "fingerprint": hashlib.sha256(name.encode()).hexdigest(),
                        "name": name,
                        "severity": severity,
                        "type": "prometheus",
                        "source": "prometheus",
                        "targetType": "kubernetes",
                        "targetResource": {"kind": kind, "name": target, "namespace": namespace},
                        "receivedTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                },
            },
        )


def _print_table(api: client.ApiClient, timeout: float = 60.0) -> bool:
    objects = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while True:
        rows = []
        for namespace, name, *_ in DEMO_SIGNALS:
            status = (
                objects.get_namespaced_custom_object(
                    "kubernaut.ai", "v1alpha1", namespace, "signalprocessings", name
                ).get("status")
                or {}
            )
            business = status.get("businessClassification") or {}
            rows.append(
                (
                    namespace,
                    name,
                    status.get("phase", ""),
                    (status.get("environmentClassification") or {}).get("environment", ""),
                    (status.get("priorityAssignment") or {}).get("priority", ""),
                    business.get("criticality", ""),
                    business.get("slaRequirement", ""),
                )
            )
        if all(row[2] in ("Completed", "Failed") for row in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    widths = [max(len(str(row[i])) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    for row in [_COLUMNS, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    return all(row[2] == "Completed" for row in rows)


def _log_to_file(path: Path) -> None:
    """Every logger of this process, and `warnings`, write to `path` instead of the terminal."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument(
        "--node", action="store_true", help="the controller and DataStorage as Pods on a node"
    )
    arguments = parser.parse_args()
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    workdir = Path(tempfile.mkdtemp(prefix="kubernaut-run-"))
    _log_to_file(workdir / "demo.log")
    if arguments.node:
        return _run_on_node(workdir, stopping)
    print(f"==> starting control plane, PostgreSQL, Redis and DataStorage (logs in {workdir})", flush=True)
    with ExitStack() as running:
        state = running.enter_context(supervised_stack(workdir))
        print(f"    started in {state.start_seconds} seconds", flush=True)
        opa = running.enter_context(OpaServer(assets.OPA.path, log_path=workdir / "opa.log"))
        print(f"==> OPA at {opa.url}; starting the controller", flush=True)
        running.enter_context(
            ControllerProcess(
                settings={
                    "KUBECONFIG": state.kubeconfig,
                    "DATA_STORAGE_URL": state.datastorage_url,
                    "POLICY_DIR": str(REPOSITORY / "policies"),
                    "OPA_URL": opa.url,
                    "WATCH_NAMESPACES": "demo-*",
                },
                log_path=workdir / "controller.log",
            )
        )
        api = config.new_client_from_config(config_file=state.kubeconfig)
        running.callback(api.close)
        print("==> creating demo namespaces, workloads and SignalProcessings", flush=True)
        _create_demo(api)
        completed = _print_table(api)
        print(
            "==> all demo SignalProcessings completed"
            if completed
            else "==> some demo signals did not complete"
        )
        print(
            f"\nPoint kubectl at it:  export KUBECONFIG={state.kubeconfig}\n"
            f"                      kubectl get sp -A\n"
            f"Audit events:         curl '{state.datastorage_url}/api/v1/audit/events?limit=20'\n"
            f"Logs:                 {workdir} (demo.log, controller.log, stack.log, and the servers' logs "
            f"under {state.logs})\nCtrl-C stops everything.",
            flush=True,
        )
        stopping.wait()
        print("==> stopping", flush=True)
    print("==> stopped", flush=True)
    return 0


def _run_on_node(workdir: Path, stopping: threading.Event) -> int:
    print(f"==> starting a one-node cluster, PostgreSQL and Redis (logs in {workdir})", flush=True)
    with supervised_stack(workdir, components=("node",)) as state:
        print(f"    started in {state.start_seconds} seconds", flush=True)
        kubeconfig = state.node_kubeconfig
        print("==> helm install datastorage (namespace kubernaut-system)", flush=True)
        charts.install(
            state, "datastorage", charts.DATASTORAGE_CHART, _SYSTEM, charts.datastorage_values(state), workdir
        )
        charts.rollout(state, _SYSTEM, "datastorage")
        datastorage_url = charts.service_url(state, _SYSTEM, "datastorage")
        print(f"==> helm install signalprocessing, DataStorage at {datastorage_url}", flush=True)
        values = charts.controller_values(state, datastorage_url, watchNamespaces=["demo-*"])
        charts.install(state, "signalprocessing", charts.SIGNALPROCESSING_CHART, _SYSTEM, values, workdir)
        charts.rollout(state, _SYSTEM, "signalprocessing")
        api = config.new_client_from_config(config_file=kubeconfig)
        try:
            print("==> creating demo namespaces, workloads and SignalProcessings", flush=True)
            _create_demo(api, image=state.node_images["application"])
            # A step retried on a busy machine waits its backoff (30 s at first) in a Pod as anywhere.
            completed = _print_table(api, timeout=240)
        finally:
            api.close()
        print(
            "==> all demo SignalProcessings completed"
            if completed
            else "==> some demo signals did not complete"
        )
        print(
            f"\nPoint kubectl at it:  export KUBECONFIG={kubeconfig}\n"
            f"                      kubectl get pods -n {_SYSTEM}; kubectl get sp -A\n"
            f"Controller logs:      kubectl logs -n {_SYSTEM} deploy/signalprocessing -c controller\n"
            f"Logs:                 {workdir} (demo.log, stack.log; the servers' under {state.logs})\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stopping.wait()
        print("==> stopping", flush=True)
    print("==> stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
