"""Rego decisions: the shipped policies through the real controller, custom ones through the engines.

Where the behaviour is what an SP ends up with (environment, priority,
business classification, custom labels), the spec creates SignalProcessings
in the worker controller's namespaces and reads their status. Where it is
about the policy machinery (loading, sanitising what a custom policy
returns, bounding an evaluation in time), the spec loads its own policies
into an OPA server of this module's own: the worker's OPA serves the
worker's controller, so loading other texts into it would change that
controller's decisions. A custom policy whose effect on an SP's status is
the point runs on a controller (and OPA) of the spec's own.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller import classify
from controller.policies import ActivePolicies, CandidateVerdict, Policy
from controller.policy_engine import EmbeddedEngine, OpaServerEngine, PolicyEngine, PolicyEvaluationError
from controller.signalprocessing import KubernetesContext, NamespaceContext, Signal, TargetResource
from devstack.controller_process import ControllerProcess
from devstack.opa_server import OpaServer
from devstack.state import StackState
from envtest import assets
from test.integration.signalprocessing.conftest import REPOSITORY, NamespaceFactory, pod
from test.integration.signalprocessing.own_controller import own_controller
from test.integration.signalprocessing.support import (
    completed_status,
    create_signals,
    process_signal,
    wait_for_phase,
)

SHIPPED_POLICIES = REPOSITORY / "policies"
ENVIRONMENT_LABEL = "kubernaut.ai/environment"
ALERT = Signal("critical", "prometheus", "prometheus-alert")
# The custom-labels input has no pod or deployment section here, so the target's name is not in it.
TARGET = TargetResource("Pod", "app", "payments")


# --- through the worker's controller ------------------------------------------------------------


def process(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
    *,
    severity: str = "critical",
) -> dict[str, Any]:
    """Creates a Pod and an SP about it in `namespace`; returns the status once the SP is Completed."""
    core.create_namespaced_pod(namespace, pod("app"))
    return completed_status(custom_objects, namespace, severity=severity)


@pytest.mark.br("BR-SP-051")
@pytest.mark.parametrize(
    ("label", "environment"),
    [("production", "production"), ("Staging", "staging"), ("DEVELOPMENT", "development")],
)
def test_environment_is_the_namespace_label_lower_cased(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
    label: str,
    environment: str,
) -> None:
    namespace = make_namespace({ENVIRONMENT_LABEL: label})

    status = process(custom_objects, core, namespace)

    classification = status["environmentClassification"]
    assert (classification["environment"], classification["source"]) == (environment, "namespace-labels")


@pytest.mark.br("BR-SP-053")
def test_unlabelled_namespace_completes_as_unknown_environment_with_default_priority(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace()

    status = process(custom_objects, core, namespace)

    assert status["environmentClassification"]["environment"] == "unknown"
    assert status["environmentClassification"]["source"] == "default"
    assert (status["priorityAssignment"]["priority"], status["priorityAssignment"]["policyName"]) == (
        "P2",
        "default-catch-all",
    )


@pytest.mark.br("BR-SP-070")
@pytest.mark.parametrize(
    ("environment", "severity", "tier", "priority", "policy_name"),
    [
        pytest.param("production", "critical", None, "P0", "critical-production", id="production-critical"),
        pytest.param("staging", "warning", None, "P2", "warning-staging", id="staging-warning"),
        pytest.param("development", "warning", None, "P3", "warning-development", id="development-warning"),
        # These inputs made two rules of the original policy fire at once (an eval conflict).
        pytest.param(
            "production", "critical", "critical", "P0", "critical-production", id="conflict-tier-critical"
        ),
        pytest.param("staging", "critical", "high", "P1", "critical-staging", id="conflict-tier-high"),
    ],
)
def test_priority_matrix_decides_the_completed_sp(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
    environment: str,
    severity: str,
    tier: str | None,
    priority: str,
    policy_name: str,
) -> None:
    labels = {ENVIRONMENT_LABEL: environment, **({"tier": tier} if tier else {})}
    namespace = make_namespace(labels)

    status = process(custom_objects, core, namespace, severity=severity)

    assignment = status["priorityAssignment"]
    assert (assignment["priority"], assignment["policyName"], assignment["source"]) == (
        priority,
        policy_name,
        "rego-policy",
    )


@pytest.mark.br("BR-SP-070")
def test_ten_concurrent_sps_are_all_classified(
    custom_objects: client.CustomObjectsApi, core: client.CoreV1Api, sp_namespace: str
) -> None:
    core.create_namespaced_pod(sp_namespace, pod("app"))
    names = create_signals(custom_objects, sp_namespace, 10)

    finished = [wait_for_phase(custom_objects, sp_namespace, name)["status"] for name in names]

    assert [s["phase"] for s in finished] == ["Completed"] * 10
    assert {
        (s["environmentClassification"]["environment"], s["priorityAssignment"]["priority"]) for s in finished
    } == {("production", "P0")}


@pytest.mark.br("BR-SP-081")
@pytest.mark.parametrize(
    ("labels", "criticality", "sla"),
    [
        pytest.param({ENVIRONMENT_LABEL: "production"}, "high", "gold", id="production"),
        pytest.param({ENVIRONMENT_LABEL: "staging"}, "medium", "silver", id="staging"),
        pytest.param({ENVIRONMENT_LABEL: "development"}, "low", "bronze", id="development"),
        pytest.param({}, "medium", "bronze", id="unknown"),
    ],
)
def test_business_defaults_follow_the_environment(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
    labels: dict[str, str],
    criticality: str,
    sla: str,
) -> None:
    namespace = make_namespace(labels)

    status = process(custom_objects, core, namespace)

    business = status["businessClassification"]
    assert (business["businessUnit"], business["serviceOwner"]) == ("unknown", "unknown")
    assert (business["criticality"], business["slaRequirement"]) == (criticality, sla)


@pytest.mark.br("BR-SP-002")
def test_declared_business_labels_take_precedence_over_the_policy(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace(
        {
            ENVIRONMENT_LABEL: "production",
            "kubernaut.ai/team": "platform",
            "kubernaut.ai/business-unit": "payments",
            "kubernaut.ai/service-owner": "checkout-team",
            "kubernaut.ai/criticality": "Critical",
            "kubernaut.ai/sla-tier": "silver",
        }
    )

    status = process(custom_objects, core, namespace)

    business = status["businessClassification"]
    assert {k: business[k] for k in ("businessUnit", "serviceOwner", "criticality", "slaRequirement")} == {
        "businessUnit": "payments",
        "serviceOwner": "checkout-team",
        "criticality": "critical",
        "slaRequirement": "silver",
    }


@pytest.mark.br("BR-SP-102")
def test_custom_labels_are_extracted_from_kubernaut_namespace_labels(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace(
        {
            ENVIRONMENT_LABEL: "production",
            "kubernaut.ai/team": "platform",
            "kubernaut.ai/tier": "backend",
            "kubernaut.ai/cost-center": "cc-42",
            "app.example/ignored": "yes",
        }
    )

    status = process(custom_objects, core, namespace)

    assert status["kubernetesContext"]["customLabels"] == {
        "cost-center": ["cc-42"],
        "environment": ["production"],
        "team": ["platform"],
        "tier": ["backend"],
    }


@pytest.mark.br("BR-SP-102")
def test_custom_labels_keep_the_first_ten_keys_in_sorted_order(
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_namespace: NamespaceFactory,
    operator: ControllerProcess,
) -> None:
    namespace = make_namespace({f"kubernaut.ai/k{i:02d}": f"v{i}" for i in range(12)})

    status = process(custom_objects, core, namespace)

    assert status["kubernetesContext"]["customLabels"] == {f"k{i:02d}": [f"v{i}"] for i in range(10)}


# --- custom policies on this module's own engines ------------------------------------------------


@pytest.fixture(scope="module")
def private_opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    """An OPA no controller uses, so specs may load any policy into it."""
    with OpaServer(assets.OPA.path, log_path=tmp_path_factory.mktemp("opa") / "opa.log") as opa:
        yield opa


@pytest.fixture(params=["opa", "embedded"])
async def engine(request: pytest.FixtureRequest, private_opa: OpaServer) -> AsyncIterator[PolicyEngine]:
    opened: PolicyEngine = OpaServerEngine(private_opa.url) if request.param == "opa" else EmbeddedEngine()
    yield opened
    await opened.close()


def policy_dir(tmp_path: Path, **replacements: str) -> Path:
    """A copy of the shipped policies, with some files' texts replaced (keyed by policy name)."""
    directory = tmp_path / "policies"
    directory.mkdir(exist_ok=True)
    for policy in Policy:
        source = replacements.get(policy.value) or (SHIPPED_POLICIES / policy.file_name).read_text()
        (directory / policy.file_name).write_text(source)
    return directory


def labels_policy(produced: dict[str, Any]) -> str:
    return f"package signalprocessing.labels\n\nlabels := {json.dumps(produced)}\n"


async def started(engine: PolicyEngine, directory: Path) -> ActivePolicies:
    policies = ActivePolicies(engine, classify.smoke_check)
    await policies.start(directory)
    return policies


@pytest.mark.br("BR-SP-102")
async def test_custom_labels_from_a_policy_are_sanitised(engine: PolicyEngine, tmp_path: Path) -> None:
    accented = "a" * 99 + "e\u0301"  # the cut at 100 would split the accent from its letter
    produced: dict[str, Any] = {
        "a" + "k" * 69: ["long-key"],
        "b-long-value": ["x" * 200],
        "c-many-values": [f"v{i}" for i in range(7)],
        "d-accented": [accented],
        "e-not-strings": [1, 2],
        **{f"key{i:02d}": [f"v{i}"] for i in range(11)},
        "kubernaut.ai/severity": ["critical"],
        "system/owner": ["root"],
    }
    policies = await started(engine, policy_dir(tmp_path, customlabels=labels_policy(produced)))

    custom = await classify.extract_custom_labels(
        policies, KubernetesContext(namespace=NamespaceContext("payments")), TARGET, ALERT
    )

    assert custom.source == "policy"
    assert dict(custom.labels) == {
        "a" + "k" * 62: ("long-key",),
        "b-long-value": ("x" * 100,),
        "c-many-values": tuple(f"v{i}" for i in range(5)),
        "d-accented": ("a" * 99,),
        **{f"key{i:02d}": (f"v{i}",) for i in range(6)},
    }
    assert custom.reserved_dropped == ("kubernaut.ai/severity", "system/owner")


@pytest.mark.br("BR-SP-102")
async def test_empty_custom_labels_fall_back_to_namespace_labels(
    engine: PolicyEngine, tmp_path: Path
) -> None:
    policies = await started(engine, policy_dir(tmp_path, customlabels=labels_policy({"system/only": ["x"]})))
    namespace = NamespaceContext(
        "payments",
        {
            "kubernaut.ai/team": "payments",
            "kubernaut.ai/cost-center": "cc-7",
            "kubernaut.ai/region": "eu-west-1",
            "kubernaut.ai/other": "ignored",
        },
    )

    custom = await classify.extract_custom_labels(
        policies, KubernetesContext(namespace=namespace), TARGET, ALERT
    )

    assert custom.source == "namespace-fallback"
    assert dict(custom.labels) == {"team": ("payments",), "cost": ("cc-7",), "region": ("eu-west-1",)}


# Each label is a rule of its own, so a fact missing from the input drops its label, not all of them.
POD_FACTS_LABELS = """package signalprocessing.labels

labels["pod"] := [input.kubernetes.podDetails.name]

labels["restarts"] := [sprintf("%d", [input.kubernetes.podDetails.restartCount])]

labels["created"] := [input.kubernetes.podDetails.creationTimestamp]
"""


@pytest.mark.br("BR-SP-102")
def test_a_custom_labels_policy_sees_the_target_pods_name_restarts_and_age(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    policies = policy_dir(tmp_path, customlabels=POD_FACTS_LABELS)
    with own_controller(
        stack, api_client, tmp_path / "controller", worker_id, POLICY_DIR=str(policies)
    ) as own:
        namespace = own.make_namespace({ENVIRONMENT_LABEL: "production"})
        manifest = pod("checkout")
        manifest["spec"]["containers"].append({"name": "sidecar", "image": "registry.local/sidecar:1"})
        created = own.core.create_namespaced_pod(namespace, manifest)
        # No kubelet runs here: the pod's status is what the spec says it is.
        own.core.patch_namespaced_pod_status(
            "checkout",
            namespace,
            {
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {
                            "name": name,
                            "ready": True,
                            "restartCount": restarts,
                            "image": "registry.local/app:1",
                            "imageID": "",
                            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                        }
                        for name, restarts in (("app", 2), ("sidecar", 1))
                    ],
                }
            },
        )
        status = process_signal(custom_objects, namespace, target_name="checkout")["status"]

    created_at = created.metadata.creation_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")  # as the API wrote it
    context = status.get("kubernetesContext") or {}
    # The policy saw the pod's name, restarts and creation time, and the CRD keeps the time in the
    # status (it is not pruned), so the later steps' facts have it too.
    assert (
        status["phase"],
        context.get("customLabels"),
        context.get("pod", {}).get("creationTimestamp"),
    ) == (
        "Completed",
        {"pod": ["checkout"], "restarts": ["3"], "created": [created_at]},
        created_at,
    ), status.get("error")


BROKEN_PRIORITY = """package signalprocessing.priority

default result := {"priority": "P2", "policy_name": "default"}

result := value if {
	value := input.signal[
}
"""


@pytest.mark.br("BR-SP-072")
async def test_a_policy_that_fails_to_load_is_refused_with_file_and_line(
    engine: PolicyEngine, tmp_path: Path
) -> None:
    directory = policy_dir(tmp_path)
    policies = await started(engine, directory)
    good = policies.current
    (directory / "priority.rego").write_text(BROKEN_PRIORITY)

    outcome = await policies.reload(directory)

    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.error is not None and re.search(r"priority\.rego:\d+", outcome.error), outcome.error
    assert policies.current is good
    assignment = await classify.assign_priority(
        policies, ALERT, "production", NamespaceContext("payments"), None
    )
    assert assignment.priority == "P0"


SLOW_LABELS = """package signalprocessing.labels

labels := {"slow": ["done"]} if {
	every i in numbers.range(1, 2000) {
		every j in numbers.range(1, 2000) {
			i + j > 1
		}
	}
}
"""


@pytest.mark.br("BR-SP-102")
async def test_a_policy_evaluation_is_bounded_in_time(private_opa: OpaServer) -> None:
    bound = 0.5
    engine = OpaServerEngine(private_opa.url, timeout=bound)
    try:
        await engine.load(Policy.CUSTOMLABELS.module_id, SLOW_LABELS)
        began = time.monotonic()
        with pytest.raises(PolicyEvaluationError, match=r"within 0\.5 s"):
            await engine.evaluate(Policy.CUSTOMLABELS.package, Policy.CUSTOMLABELS.rule, {})
        elapsed = time.monotonic() - began
    finally:
        await engine.close()

    assert elapsed < bound + 1.0


@pytest.mark.br("BR-SP-102")
async def test_a_policy_too_slow_for_an_ordinary_input_is_never_activated(
    private_opa: OpaServer, tmp_path: Path
) -> None:
    engine = OpaServerEngine(private_opa.url, timeout=0.5)
    directory = policy_dir(tmp_path)
    try:
        policies = await started(engine, directory)
        good = policies.current
        (directory / "customlabels.rego").write_text(SLOW_LABELS)

        outcome = await asyncio.wait_for(policies.reload(directory), timeout=5)

        assert outcome.status is CandidateVerdict.REJECTED
        assert outcome.changed == (Policy.CUSTOMLABELS,)
        assert policies.current is good
        namespace = NamespaceContext("payments", {"kubernaut.ai/team": "payments"})
        custom = await classify.extract_custom_labels(
            policies, KubernetesContext(namespace=namespace), TARGET, ALERT
        )
        assert dict(custom.labels) == {"team": ("payments",)}
    finally:
        await engine.close()
