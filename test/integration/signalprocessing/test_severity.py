"""Severity normalised by the policy (kubernaut 2026), through a running controller.

`spec.signal.severity` is free text; the policy's `severity` rule maps it onto
critical/high/warning/info/unknown, the status records the answer in
`status.signalClassification.severity` (the `Severity` printer column), and
priority is decided on it. A policy that answers outside the five fails the
SP (`test_failures` covers that path). The last specs run a policy written for
kubernaut 2026 (`test/integration/kubernaut2026/policy.rego`) on a controller
of their own: it classifies as the reference describes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from controller.policies import POLICY_FILE_NAME
from devstack.controller_process import ControllerProcess
from devstack.manifests import GROUP, SP_PLURAL, VERSION
from devstack.state import StackState
from test.integration.signalprocessing.conftest import REPOSITORY, NamespaceFactory, pod
from test.integration.signalprocessing.own_controller import OwnController, own_controller
from test.integration.signalprocessing.support import completed_status, process_signal

PRODUCTION = {"kubernaut.ai/environment": "production"}
USER_POLICY = REPOSITORY / "test" / "integration" / "kubernaut2026" / POLICY_FILE_NAME


@pytest.mark.parametrize(
    ("raw", "severity", "priority", "policy_name"),
    [
        pytest.param("Sev1", "critical", "P0", "critical-production", id="Sev1"),
        pytest.param("P0", "critical", "P0", "critical-production", id="P0"),
        pytest.param("CRITICAL", "critical", "P0", "critical-production", id="upper-case"),
        pytest.param("P1", "high", "P1", "high-production", id="P1-is-high-here"),
        pytest.param("sev2", "high", "P1", "high-production", id="sev2"),
        pytest.param("medium", "warning", "P1", "warning-production", id="medium"),
        pytest.param("low", "info", "P2", "info-production", id="low"),
        pytest.param("error", "unknown", "P2", "default-catch-all", id="unmapped"),
    ],
)
def test_the_shipped_policy_normalises_the_severity_and_ranks_on_it(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
    raw: str,
    severity: str,
    priority: str,
    policy_name: str,
) -> None:
    namespace = make_namespace(PRODUCTION)
    core.create_namespaced_pod(namespace, pod("app"))

    status = completed_status(custom_objects, namespace, severity=raw)

    classified = status["signalClassification"]
    assert (classified["severity"], len(classified["policyHash"])) == (severity, 64)
    assignment = status["priorityAssignment"]
    assert (assignment["priority"], assignment["policyName"]) == (priority, policy_name)


def printed_row(custom_objects: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    """The SP as `kubectl get` prints it: its printer columns by name (the API server's Table form)."""
    table = custom_objects.get_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        SP_PLURAL,
        name,
        _headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"},
    )
    columns = [column["name"] for column in table["columnDefinitions"]]
    return dict(zip(columns, table["rows"][0]["cells"], strict=True))


def test_the_severity_column_shows_the_normalised_severity(
    custom_objects: client.CustomObjectsApi,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace(PRODUCTION)

    done = process_signal(custom_objects, namespace, "Completed", severity="Sev1")

    row = printed_row(custom_objects, namespace, done["metadata"]["name"])
    assert (row["Severity"], row["Environment"], row["Priority"]) == ("critical", "Production", "P0")


# --- A policy written for kubernaut 2026 ---------------------------------------------------------


@pytest.fixture(scope="module")
def kubernaut_policy_controller(
    stack: StackState, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[OwnController]:
    work_dir = tmp_path_factory.mktemp("kubernaut2026")
    policies = work_dir / "user-policies"
    policies.mkdir()
    shutil.copy(USER_POLICY, policies / POLICY_FILE_NAME)
    with own_controller(
        stack, api_client, work_dir / "controller", worker_id, POLICY_DIR=str(policies)
    ) as own:
        yield own


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        pytest.param("Sev1", PRODUCTION, ("critical", "Production", "P0"), id="Sev1-production"),
        pytest.param("P0", PRODUCTION, ("critical", "Production", "P0"), id="P0-production"),
        pytest.param("Critical", PRODUCTION, ("critical", "Production", "P0"), id="Critical-production"),
        pytest.param("error", PRODUCTION, ("unknown", "Production", "P3"), id="error-is-unknown"),
        pytest.param("P1", PRODUCTION, ("unknown", "Production", "P3"), id="P1-unmapped-by-that-policy"),
        pytest.param("medium", PRODUCTION, ("warning", "Production", "P1"), id="medium-production"),
        pytest.param(
            "critical", {"kubernaut.ai/environment": "staging"}, ("critical", "Staging", "P1"), id="staging"
        ),
        pytest.param(
            "sev3", {"kubernaut.ai/environment": "staging"}, ("warning", "Staging", "P2"), id="sev3"
        ),
    ],
)
def test_a_kubernaut_2026_policy_classifies_as_the_reference_describes(
    custom_objects: client.CustomObjectsApi,
    kubernaut_policy_controller: OwnController,
    raw: str,
    labels: dict[str, str],
    expected: tuple[str, str, str],
) -> None:
    namespace = kubernaut_policy_controller.make_namespace(labels)

    status = completed_status(custom_objects, namespace, severity=raw)

    assert (
        status["signalClassification"]["severity"],
        status["environmentClassification"]["environment"],
        status["priorityAssignment"]["priority"],
    ) == expected
    # The policy has no business and no cluster rule: defaults, and no cluster classification.
    assert "clusterClassification" not in status["signalClassification"]
    business = status["businessClassification"]
    assert (business["criticality"], business["slaRequirement"]) == ("Medium", "Bronze")


def test_a_kubernaut_2026_policy_s_custom_labels_see_the_workload(
    custom_objects: client.CustomObjectsApi, kubernaut_policy_controller: OwnController
) -> None:
    own = kubernaut_policy_controller
    namespace = own.make_namespace({**PRODUCTION, "kubernaut.ai/team": "web"})
    own.core.create_namespaced_pod(namespace, pod("checkout"))

    status = completed_status(custom_objects, namespace, target_name="checkout")

    assert status["kubernetesContext"]["customLabels"] == {
        "app": ["checkout"],
        "kind": ["pod"],
        "team": ["web"],
    }
