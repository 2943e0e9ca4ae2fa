"""Rendering and installing the charts on the suite's control plane, and logging in as a chart's
ServiceAccount (helm and kubectl run as devstack.charts runs them)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.charts import helm, kubectl
from devstack.policies import copy_shipped_policies
from devstack.state import StackState


def render(chart: Path, *values: str, namespace: str = "rendered") -> list[dict[str, Any]]:
    """`helm template` of the chart with `--set` values: the manifests it would install."""
    sets = [argument for value in values for argument in ("--set", value)]
    output = helm("template", "release", str(chart), "--namespace", namespace, *sets).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: Path
    kubeconfig: str

    def manifests(self) -> list[dict[str, Any]]:
        """The objects helm installed for this release, as it recorded them."""
        output = helm("get", "manifest", self.name, "-n", self.namespace, kubeconfig=self.kubeconfig).stdout
        return [document for document in yaml.safe_load_all(output) if document]

    def uninstall(self) -> None:
        helm(
            "uninstall",
            self.name,
            "-n",
            self.namespace,
            "--wait",
            "--timeout",
            "60s",
            kubeconfig=self.kubeconfig,
        )


def install(chart: Path, *, kubeconfig: str, values: Sequence[str] = ()) -> Release:
    """`helm install` into a fresh namespace; the release and namespace names are unique per call."""
    release = Release(unique_name("rel"), unique_name("dep"), chart, kubeconfig)
    sets = [argument for value in values for argument in ("--set", value)]
    helm(
        "install",
        release.name,
        str(chart),
        "--namespace",
        release.namespace,
        "--create-namespace",
        *sets,
        kubeconfig=kubeconfig,
    )
    return release


def service_account_kubeconfig(
    admin_kubeconfig: str, *, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a token from the TokenRequest API."""
    token = kubectl(
        "create", "token", service_account, "-n", namespace, "--duration", "1h", kubeconfig=admin_kubeconfig
    ).stdout.strip()
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    cluster = admin["clusters"][0]
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def controller_service_account(release: Release) -> str:
    """The ServiceAccount that a release of the SignalProcessing chart runs its controller as."""
    return f"{release.name}-signalprocessing"


def service_account_controller_settings(
    stack: StackState, release: Release, work_dir: Path, *, watch_namespaces: str
) -> dict[str, str]:
    """The environment of a controller that logs in with a token of the release's controller
    ServiceAccount and watches `watch_namespaces`, on a copy of the shipped policies in `work_dir`."""
    kubeconfig = service_account_kubeconfig(
        stack.kubeconfig,
        namespace=release.namespace,
        service_account=controller_service_account(release),
        path=work_dir / "service-account.kubeconfig",
    )
    return {
        "KUBECONFIG": str(kubeconfig),
        "DATA_STORAGE_URL": stack.datastorage_url,
        "POLICY_DIR": str(copy_shipped_policies(work_dir / "policies")),
        "WATCH_NAMESPACES": watch_namespaces,
        "AUDIT_FLUSH_INTERVAL": "0.2",
    }


def can_i(kubeconfig: str, user: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    """`kubectl auth can-i --as=<user>`: the API server's own answer.

    `resource/sub` asks about a subresource (`signalprocessings.kubernaut.ai/status`).
    """
    scope = ["-n", namespace] if namespace else []
    resource, _, subresource = resource.partition("/")
    sub = ["--subresource", subresource] if subresource else []
    result = kubectl(
        "auth", "can-i", "--as", user, verb, resource, *sub, *scope, kubeconfig=kubeconfig, check=False
    )
    answer = result.stdout.strip()
    if answer not in ("yes", "no"):
        raise AssertionError(f"kubectl auth can-i {verb} {resource}: {result.stdout}{result.stderr}")
    return answer == "yes"
