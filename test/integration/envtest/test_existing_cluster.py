"""USE_EXISTING_CLUSTER=true: the harness starts nothing and installs CRDs into $KUBECONFIG's cluster."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from envtest import ControlPlane, ControlPlaneError
from test.integration.envtest.processes import children

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"


def _unique_crd(directory: Path) -> tuple[str, str, str]:
    """Writes a CRD of a group no other test uses; returns (name, group, plural)."""
    group = f"it-{secrets.token_hex(4)}.example.com"
    plural = "widgets"
    manifest = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "listKind": "WidgetList", "plural": plural, "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    directory.mkdir()
    (directory / "widget.yaml").write_text(yaml.safe_dump(manifest))
    return f"{plural}.{group}", group, plural


@pytest.fixture
def existing_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("USE_EXISTING_CLUSTER", "true")
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_existing_cluster_starts_nothing_and_installs_crds(
    existing_cluster: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kubeconfig: Path,
    api_client: client.ApiClient,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    name, group, plural = _unique_crd(tmp_path / "extra-crds")
    before = children(os.getpid())
    try:
        with ControlPlane(crd_dirs=[CRDS, tmp_path / "extra-crds"]) as plane:
            assert plane.kubeconfig == kubeconfig
            assert plane.pids == [] and plane.workdir is None
            assert {str(p) for p in children(os.getpid()) - before} == set()
            assert [p for p in existing_cluster.iterdir() if p.name.startswith("envtest-")] == []
            # start() returns once discovery serves every plural, the new one included.
            served = client.CustomObjectsApi(api_client).get_api_resources(group, "v1")
            assert plural in {resource.name for resource in served.resources}
            kubernaut = client.CustomObjectsApi(api_client).get_api_resources("kubernaut.ai", "v1alpha1")
            assert {"signalprocessings", "remediationrequests"} <= {r.name for r in kubernaut.resources}
        assert kubeconfig.is_file(), "stop() must leave an existing cluster's kubeconfig alone"
        assert {str(p) for p in children(os.getpid()) - before} == set()
    finally:
        try:
            client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(name)
        except ApiException as error:
            if error.status != 404:
                raise


def test_existing_cluster_without_kubeconfig_is_a_clear_error(
    existing_cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    before = children(os.getpid())
    with pytest.raises(ControlPlaneError, match="USE_EXISTING_CLUSTER=true needs KUBECONFIG"):
        ControlPlane(crd_dirs=[CRDS]).start()
    assert {str(p) for p in children(os.getpid()) - before} == set()
    assert [p for p in existing_cluster.iterdir() if p.name.startswith("envtest-")] == []
