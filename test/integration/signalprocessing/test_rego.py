"""Rego decisions: the shipped policies through the real controller, custom ones through the engines.

Where the behaviour is what an SP ends up with (environment, priority,
business classification, custom labels; severity has `test_severity`), the spec creates SignalProcessings
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
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller import classify
from controller.policies import MODULE_ID, PACKAGE, ActivePolicies, CandidateVerdict, Rule
from controller.policy_engine import (
    OpaServerEngine,
    PolicyEngine,
    PolicyEngineUnavailable,
)
from controller.signalprocessing import (
    KubernetesContext,
    NamespaceContext,
    PodDetails,
    Signal,
    TargetResource,
)
from devstack.controller_process import ControllerProcess
from devstack.opa_server import OpaServer
from devstack.state import StackState
from envtest import assets
from test.integration.patient_engines import patient_embedded, patient_opa
from test.integration.signalprocessing.conftest import NamespaceFactory, pod
from test.integration.signalprocessing.own_controller import own_controller
from test.integration.signalprocessing.support import (
    SHIPPED_POLICY,
    completed_status,
    create_signals,
    labels_policy,
    policy_with_labels,
    process_signal,
    wait_for_phase,
    write_policy,
)

ENVIRONMENT_LABEL = "kubernaut.ai/environment"
ALERT = Signal("critical", "prometheus", "prometheus-alert")
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
    [
        ("production", "Production"),
        ("Staging", "Staging"),
        ("DEVELOPMENT", "Development"),
        ("test", "Test"),
        ("UAT", "uat"),  # none of the five: the policy's answer (lower-cased by it), as it is
    ],
)
def test_environment_is_the_namespace_label_normalised(
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

    assert status["environmentClassification"]["environment"] == "Unknown"
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
    } == {("Production", "P0")}


@pytest.mark.br("BR-SP-081")
@pytest.mark.parametrize(
    ("labels", "criticality", "sla"),
    [
        pytest.param({ENVIRONMENT_LABEL: "production"}, "High", "Gold", id="production"),
        pytest.param({ENVIRONMENT_LABEL: "staging"}, "Medium", "Silver", id="staging"),
        pytest.param({ENVIRONMENT_LABEL: "development"}, "Low", "Bronze", id="development"),
        pytest.param({}, "Medium", "Bronze", id="unknown"),
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
        "criticality": "Critical",  # any case on the label, the CRD's PascalCase in the status
        "slaRequirement": "Silver",
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
    opened: PolicyEngine = patient_opa(private_opa.url) if request.param == "opa" else patient_embedded()
    yield opened
    await opened.close()


def policy_dir(tmp_path: Path, text: str = SHIPPED_POLICY) -> Path:
    """A directory whose policy.rego is `text` (by default the shipped policy)."""
    return write_policy(tmp_path / "policies", text)


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
    policies = await started(engine, policy_dir(tmp_path, labels_policy(produced)))

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
async def test_empty_custom_labels_fall_back_to_namespace_then_workload_labels(
    engine: PolicyEngine, tmp_path: Path
) -> None:
    policies = await started(engine, policy_dir(tmp_path, labels_policy({"system/only": ["x"]})))
    namespace = NamespaceContext(
        "payments",
        {
            "kubernaut.ai/team": "payments",
            "kubernaut.ai/cost-center": "cc-7",
            "kubernaut.ai/other": "ignored",
        },
    )
    workload = PodDetails(labels={"kubernaut.ai/team": "not-this", "kubernaut.ai/region": "eu-west-1"})

    custom = await classify.extract_custom_labels(
        policies, KubernetesContext(namespace=namespace, pod=workload), TARGET, ALERT
    )

    assert custom.source == "label-fallback"
    assert dict(custom.labels) == {"team": ("payments",), "cost": ("cc-7",), "region": ("eu-west-1",)}


# Each label is a rule of its own, so a fact missing from the input drops its label, not all of them.
WORKLOAD_FACTS_LABELS = policy_with_labels(
    """labels["kind"] := [input.workload.kind]

labels["name"] := [input.workload.name]

labels["app"] := [input.workload.labels.app]

labels["note"] := [input.workload.annotations.note]

labels["namespace"] := [input.namespace.name]"""
)


@pytest.mark.br("BR-SP-102")
def test_a_custom_labels_policy_sees_the_target_workload(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    policies = policy_dir(tmp_path, WORKLOAD_FACTS_LABELS)
    with own_controller(
        stack, api_client, tmp_path / "controller", worker_id, POLICY_DIR=str(policies)
    ) as own:
        namespace = own.make_namespace({ENVIRONMENT_LABEL: "production"})
        manifest = pod("checkout")
        manifest["metadata"]["annotations"] = {"note": "canary"}
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
    # The policy saw the pod as the workload, and the CRD keeps the pod's facts in the status (they are
    # not pruned), so the later steps see the same workload.
    assert (
        status["phase"],
        context.get("customLabels"),
        context.get("pod", {}).get("creationTimestamp"),
    ) == (
        "Completed",
        {
            "kind": ["Pod"],
            "name": ["checkout"],
            "app": ["checkout"],
            "note": ["canary"],
            "namespace": [namespace],
        },
        created_at,
    ), status.get("error")


BROKEN_POLICY = (
    SHIPPED_POLICY
    + """
broken := value if {
	value := input.signal[
}
"""
)


@pytest.mark.br("BR-SP-072")
async def test_a_policy_that_fails_to_load_is_refused_with_file_and_line(
    engine: PolicyEngine, tmp_path: Path
) -> None:
    directory = policy_dir(tmp_path)
    policies = await started(engine, directory)
    good = policies.current
    write_policy(directory, BROKEN_POLICY)

    outcome = await policies.reload(directory)

    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.error is not None and re.search(r"policy\.rego:\d+", outcome.error), outcome.error
    assert policies.current is good
    verdict = await classify.classify_signal(
        policies,
        KubernetesContext(namespace=NamespaceContext("payments", {ENVIRONMENT_LABEL: "production"})),
        TARGET,
        ALERT,
    )
    assert verdict.priority.priority == "P0"


SLOW_LABELS_RULE = """labels := {"slow": ["done"]} if {
	every i in numbers.range(1, 2000) {
		every j in numbers.range(1, 2000) {
			i + j > 1
		}
	}
}"""


@pytest.mark.br("BR-SP-102")
@pytest.mark.parametrize("rule", [Rule.LABELS, Rule.SEVERITY])
async def test_a_policy_evaluation_is_bounded_by_its_rule_s_time_limit(
    private_opa: OpaServer, rule: Rule
) -> None:
    """OPA stops being waited for at the limit (plus the transport allowance), whatever the policy does;
    without an answer it counts as unavailable (retried), since a starved OPA looks the same."""
    allowance = 0.2
    engine = OpaServerEngine(private_opa.url, transport_allowance=allowance)
    slow = SLOW_LABELS_RULE.replace("labels :=", f"{rule} :=")
    waited = rule.time_limit + allowance
    try:
        await engine.load(MODULE_ID, f"package {PACKAGE}\n\n{slow}\n")
        # Waiting for OPA to finish would end in its answer over the limit, a PolicyEvaluationError.
        with pytest.raises(
            PolicyEngineUnavailable, match=rf"within {waited:.1f} s \(time limit {rule.time_limit} s\)"
        ):
            await engine.evaluate(PACKAGE, rule, {}, time_limit=rule.time_limit)
    finally:
        await engine.close()


START_ATTEMPTS = 5


@pytest.mark.br("BR-SP-102")
async def test_a_policy_too_slow_for_an_ordinary_input_is_never_activated(
    private_opa: OpaServer, tmp_path: Path
) -> None:
    engine = OpaServerEngine(private_opa.url, transport_allowance=0.2)
    directory = policy_dir(tmp_path)
    policies = ActivePolicies(engine, classify.smoke_check)
    try:
        # With this short allowance a loaded machine's stall is no answer, and the shipped policy is
        # refused at start; asked again, as kopf retries the controller's failed start.
        for _ in range(START_ATTEMPTS):
            if (await policies.reload(directory)).status is CandidateVerdict.ACTIVATED:
                break
        else:
            pytest.fail(f"the shipped policy was not activated in {START_ATTEMPTS} attempts")
        good = policies.current
        write_policy(directory, policy_with_labels(SLOW_LABELS_RULE))

        outcome = await asyncio.wait_for(policies.reload(directory), timeout=10)

        assert (outcome.status, outcome.changed) == (CandidateVerdict.REJECTED, True)
        assert policies.current is good
        namespace = NamespaceContext("payments", {"kubernaut.ai/team": "payments"})
        custom = await classify.extract_custom_labels(
            policies, KubernetesContext(namespace=namespace), TARGET, ALERT
        )
        assert dict(custom.labels) == {"team": ("payments",)}
    finally:
        await engine.close()
