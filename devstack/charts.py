"""Running helm and kubectl, and the two charts on the stack's node: their values, install, upgrade.

Both binaries run as child processes with an explicit `--kubeconfig`, so nothing depends on the
caller's environment. `make run NODE=1` installs the charts onto the node this way, and so do the
node specs. The images are the ones loaded
into the node's runtime (never pulled); DataStorage uses the node's PostgreSQL and Redis, which
listen where its Pods reach the host. There is no DNS on the node: the controller is given
DataStorage's ClusterIP.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from devstack.state import StackState
from envtest import assets

REPOSITORY = Path(__file__).resolve().parent.parent
CHARTS = REPOSITORY / "deploy" / "helm"
SIGNALPROCESSING_CHART = CHARTS / "signalprocessing"
DATASTORAGE_CHART = CHARTS / "datastorage"
KUBECTL = "/usr/bin/kubectl"
# Enough for helm's and kubectl's own API round trips on a loaded 2-core machine.
_COMMAND_TIMEOUT_SECONDS = 120


def run(command: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs helm or kubectl; a failure raises with the command's output, which is what a reader needs."""
    result = subprocess.run(
        list(command), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_SECONDS, check=False
    )
    if check and result.returncode != 0:
        raise ChartCommandError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


class ChartCommandError(AssertionError):
    """helm or kubectl failed; the message has its output. An AssertionError, so a spec fails on it."""


def helm(
    *arguments: str, kubeconfig: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    config = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return run([str(assets.HELM.path), *arguments, *config], check=check)


def kubectl(*arguments: str, kubeconfig: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([KUBECTL, "--kubeconfig", kubeconfig, *arguments], check=check)


def _image(reference: str) -> dict[str, str]:
    repository, _, tag = reference.rpartition(":")
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it, maps merged key by key, as helm merges values files."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def datastorage_values(state: StackState, **extra: Any) -> dict[str, Any]:
    return merged(
        {
            "image": _image(state.node_images["application"]),
            "database": {"url": state.node_database_url},
            "redis": {"url": state.node_redis_url},
            # Every client of a test node comes from one address: the node's.
            "rateLimit": {"enabled": False},
        },
        extra,
    )


def controller_values(state: StackState, datastorage_url: str, **extra: Any) -> dict[str, Any]:
    return merged(
        {
            "image": _image(state.node_images["application"]),
            "opa": {"image": _image(state.node_images["opa"])},
            "dataStorageUrl": datastorage_url,
        },
        extra,
    )


def install(
    state: StackState, release: str, chart: Path, namespace: str, values: dict[str, Any], directory: Path
) -> None:
    """`helm install` into `namespace` (created if missing), with a values file (URLs with passwords
    do not survive `--set`); returns without waiting for the Pods."""
    values_file = directory / f"{release}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm(
        "install", release, str(chart), "--namespace", namespace, "--create-namespace",
        "--values", str(values_file), kubeconfig=state.node_kubeconfig,
    )  # fmt: skip


def upgrade(
    state: StackState, release: str, chart: Path, namespace: str, values: dict[str, Any], directory: Path
) -> None:
    values_file = directory / f"{release}-upgrade-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm(
        "upgrade", release, str(chart), "--namespace", namespace, "--values", str(values_file),
        kubeconfig=state.node_kubeconfig,
    )  # fmt: skip


def rollout(state: StackState, namespace: str, release: str, timeout_seconds: int = 180) -> None:
    """Waits until the release's Deployment (named as the release, as both charts name it) is rolled out."""
    kubectl(
        "rollout", "status", f"deployment/{release}", "-n", namespace, f"--timeout={timeout_seconds}s",
        kubeconfig=state.node_kubeconfig,
    )  # fmt: skip


def service_url(state: StackState, namespace: str, service: str) -> str:
    """The Service's in-cluster URL by its ClusterIP and first port (there is no DNS on the node)."""
    answer = kubectl(
        "get", "service", service, "-n", namespace, "-o", "json", kubeconfig=state.node_kubeconfig
    )
    spec = json.loads(answer.stdout)["spec"]
    return f"http://{spec['clusterIP']}:{spec['ports'][0]['port']}"
