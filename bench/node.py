"""`python -m bench.node`: what the test node costs, next to a plain control plane measured in the same run.

Prints, on this machine:

* the baseline: a plain control plane (etcd + kube-apiserver, CRDs) from nothing to ready;
* the images: `project_images()` on a warm cache (the cold build is printed by `make images` on
  an empty cache, step by step);
* the one-node cluster (the stack's `node` component: control plane, containerd with the images
  imported, controller-manager, scheduler, kube-proxy, kubelet, until the Node is Ready), and its
  PostgreSQL and Redis;
* each chart from `helm install` to its Deployment rolled out (DataStorage, then the controller
  with its OPA sidecar);
* `--signals` SignalProcessings, one at a time, from create to Completed through the in-Pod
  controller (p50 and max; `python -m bench.load` gives the same for a controller on the host).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.load import create
from devstack import charts
from devstack.launch import supervised_stack
from devstack.manifests import signal_processing
from devstack.state import StackState
from envtest import ControlPlane, images

_SYSTEM = "bench-node"
_SP_TIMEOUT_SECONDS = 120
_REPOSITORY = Path(__file__).resolve().parent.parent


def _timed(action: Callable[[], object]) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


def _sp_latencies(api: client.CustomObjectsApi, namespace: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        began = time.monotonic()
        name = create(api, signal_processing(namespace))["metadata"]["name"]
        while (phase := _phase(api, namespace, name)) not in ("Completed", "Failed"):
            if time.monotonic() - began > _SP_TIMEOUT_SECONDS:
                raise SystemExit(f"{namespace}/{name} still {phase!r} after {_SP_TIMEOUT_SECONDS} s")
            time.sleep(0.005)
        if phase != "Completed":
            raise SystemExit(f"{namespace}/{name} ended {phase}")
        latencies.append(time.monotonic() - began)
    return latencies


def _phase(api: client.CustomObjectsApi, namespace: str, name: str) -> str:
    sp = api.get_namespaced_custom_object("kubernaut.ai", "v1alpha1", namespace, "signalprocessings", name)
    return str((sp.get("status") or {}).get("phase", ""))


def _install(state: StackState, workdir: Path, release: str, chart: Path, values: dict[str, Any]) -> None:
    """Installs the chart as `release` and prints how long until it rolled out."""
    began = time.monotonic()
    charts.install(state, release, chart, _SYSTEM, values, workdir)
    charts.rollout(state, _SYSTEM, release)
    print(f"{release} chart: helm install to rolled out in {time.monotonic() - began:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.node", description=__doc__)
    parser.add_argument("--signals", type=int, default=10, help="SPs through the in-Pod controller")
    arguments = parser.parse_args()

    baseline = _timed(lambda: ControlPlane(crd_dirs=[_REPOSITORY / "crds"]).__enter__().stop())
    print(f"baseline: a plain control plane ready in {baseline:.1f} s", flush=True)
    warm = _timed(images.project_images)
    print(f"images, warm cache: {warm:.2f} s", flush=True)

    with ExitStack() as running:
        workdir = Path(running.enter_context(tempfile.TemporaryDirectory(prefix="bench-node-")))
        began = time.monotonic()
        state = running.enter_context(supervised_stack(workdir, components=("node",)))
        print(
            f"one-node cluster and its PostgreSQL and Redis ready in {time.monotonic() - began:.1f} s"
            f" ({state.start_seconds})",
            flush=True,
        )
        _install(state, workdir, "datastorage", charts.DATASTORAGE_CHART, charts.datastorage_values(state))
        url = charts.service_url(state, _SYSTEM, "datastorage")
        namespace = "bench-node-signals"
        values = charts.controller_values(state, url, watchNamespaces=[namespace])
        _install(state, workdir, "signalprocessing", charts.SIGNALPROCESSING_CHART, values)
        api_client = config.new_client_from_config(config_file=state.node_kubeconfig)
        running.callback(api_client.close)
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
        latencies = _sp_latencies(client.CustomObjectsApi(api_client), namespace, arguments.signals)
        print(
            f"{len(latencies)} SPs one at a time through the in-Pod controller, create to Completed:"
            f" p50 {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
            f" (the first {latencies[0] * 1000:.0f} ms)",
            flush=True,
        )


if __name__ == "__main__":
    main()
