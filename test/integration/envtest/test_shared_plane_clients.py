"""The shared control plane's kubeconfig serves the official client and kubectl alike."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

from kubernetes import client

from devstack.manifests import GROUP, SP_PLURAL, VERSION, signal_processing
from envtest import versions

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"
KUBECTL = "/usr/bin/kubectl"


def kubectl(kubeconfig: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kubectl_and_python_client_use_the_kubeconfig_and_server_reports_pinned_version(
    kubeconfig: Path, api_client: client.ApiClient
) -> None:
    answer = kubectl(kubeconfig, "get", "namespace", "default", "-o", "name")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "namespace/default"

    names = {ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items}
    assert {"default", "kube-system"} <= names

    version = client.VersionApi(api_client).get_code()
    major, minor, _ = versions.KUBERNETES.split(".")
    assert (version.git_version, version.major, version.minor) == (f"v{versions.KUBERNETES}", major, minor)


def test_kubectl_apply_of_crds_and_printer_columns_of_signal_processing(
    kubeconfig: Path, api_client: client.ApiClient, namespace: str
) -> None:
    applied = kubectl(kubeconfig, "apply", "-f", str(CRDS))
    assert applied.returncode == 0, applied.stderr
    assert "customresourcedefinition.apiextensions.k8s.io/signalprocessings.kubernaut.ai" in applied.stdout

    custom = client.CustomObjectsApi(api_client)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, SP_PLURAL, signal_processing(namespace, severity="Sev2")
    )
    name = created["metadata"]["name"]
    environment = f"env-{secrets.token_hex(3)}"
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        SP_PLURAL,
        name,
        {
            "status": {
                "phase": "Categorizing",
                "environmentClassification": {
                    "environment": environment,
                    "source": "namespace-labels",
                    "classifiedAt": "2026-01-01T00:00:00Z",
                },
                "priorityAssignment": {
                    "priority": "P2",
                    "source": "rego-policy",
                    "assignedAt": "2026-01-01T00:00:00Z",
                },
                "signalClassification": {
                    "signalMode": "reactive",
                    "signalName": "HighMemoryUsage",
                    "severity": "high",
                    "policyHash": "a" * 64,
                },
            }
        },
    )

    listed = kubectl(kubeconfig, "get", "sp", "-A")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PHASE", "ENVIRONMENT", "PRIORITY", "SEVERITY", "AGE"]
    mine = [row.split() for row in rows if row.split()[:2] == [namespace, name]]
    assert len(mine) == 1, listed.stdout
    *values, age = mine[0]
    # Severity is the normalised one of the status, not the signal's own "Sev2".
    assert values == [namespace, name, "Categorizing", environment, "P2", "high"]
    assert re.fullmatch(r"\d+[smhd](\d+[smh])?", age), age


def test_kubectl_wide_shows_the_ready_reason_and_explain_documents_the_deadline(
    kubeconfig: Path, api_client: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    name = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, SP_PLURAL, signal_processing(namespace)
    )["metadata"]["name"]
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": "NotReady",
        "message": "failed",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SP_PLURAL, name, {"status": {"phase": "Failed", "conditions": [ready]}}
    )

    narrow = kubectl(kubeconfig, "get", "sp", name, "-n", namespace)
    wide = kubectl(kubeconfig, "get", "sp", name, "-n", namespace, "-o", "wide")
    explained = kubectl(kubeconfig, "explain", "signalprocessings.spec.timesOutAt")

    assert narrow.returncode == wide.returncode == explained.returncode == 0, wide.stderr + explained.stderr
    assert "REASON" not in narrow.stdout.splitlines()[0]
    header, row = wide.stdout.splitlines()
    assert header.split()[-1] == "REASON"
    assert row.split()[-1] == "NotReady"
    assert "TimedOut" in explained.stdout
    # The 2026 fields are documented where `kubectl explain` looks.
    for field, words in [
        ("status.signalClassification.severity", "normalised by the policy"),
        ("status.signalClassification.policyHash", "SHA-256"),
        ("status.failureInfo", "first failure"),
        ("status.kubernetesContext.workload", "input.workload"),
        ("spec.signal.clusterID", "fleet member cluster"),
    ]:
        field_explained = kubectl(kubeconfig, "explain", f"signalprocessings.{field}")
        assert field_explained.returncode == 0, field_explained.stderr
        assert words in " ".join(field_explained.stdout.split()), field_explained.stdout
