"""Reading policy answers: what is accepted, what fails the SP, and the business label precedence."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from controller.classify import (
    PolicyOutputError,
    business_input,
    customlabels_input,
    decide_business,
    environment_input,
    interpret_environment,
    interpret_priority,
    priority_input,
)
from controller.policies import Decision
from controller.signalprocessing import (
    BusinessClassification,
    ContainerStatus,
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    PodDetails,
    Signal,
    TargetResource,
)


def test_environment_answer_is_read_with_its_hash() -> None:
    result = interpret_environment(
        Decision({"environment": "production", "source": "namespace-labels"}, "abc")
    )
    assert (result.environment, result.source, result.policy_hash) == (
        "production",
        "namespace-labels",
        "abc",
    )


def test_environment_without_source_is_default() -> None:
    assert interpret_environment(Decision({"environment": "uat", "source": ""}, "h")).source == "default"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(None, "returned no result - add a default rule", id="undefined"),
        pytest.param("production", "must be an object", id="string"),
        pytest.param({}, "no environment", id="empty-object"),
        pytest.param({"environment": "", "source": "x"}, "no environment", id="empty-environment"),
        pytest.param({"environment": 1}, "environment must be a string", id="number"),
        pytest.param({"environment": "prod", "source": 2}, "source must be a string", id="bad-source"),
    ],
)
def test_unusable_environment_answers_are_policy_errors(answer: object, message: str) -> None:
    with pytest.raises(PolicyOutputError, match=message) as failed:
        interpret_environment(Decision(answer, "h"))
    assert str(failed.value).startswith("environment.rego: ")


@pytest.mark.parametrize("priority", ["P0", "P1", "P2", "P3"])
def test_priorities_p0_to_p3_are_accepted(priority: str) -> None:
    result = interpret_priority(
        Decision({"priority": priority, "policy_name": "rule", "confidence": 0.9}, "h")
    )
    assert (result.priority, result.policy_name, result.source, result.policy_hash) == (
        priority,
        "rule",
        "rego-policy",
        "h",
    )


def test_policy_name_is_optional() -> None:
    assert interpret_priority(Decision({"priority": "P1"}, "h")).policy_name == ""


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(None, id="undefined"),
        pytest.param({"priority": "P4"}, id="P4"),
        pytest.param({"priority": "p0"}, id="lower-case"),
        pytest.param({"priority": 0}, id="number"),
        pytest.param({"policy_name": "x"}, id="missing"),
        pytest.param(["P0"], id="list"),
        pytest.param({"priority": "P0", "policy_name": 3}, id="bad-policy-name"),
    ],
)
def test_unusable_priority_answers_are_policy_errors(answer: object) -> None:
    with pytest.raises(PolicyOutputError, match=r"^priority\.rego: "):
        interpret_priority(Decision(answer, "h"))


POLICY_ANSWER = {"business_unit": "from-policy", "service_owner": "", "criticality": "high", "sla": "gold"}


def business(
    namespace_labels: Mapping[str, str] | None = None,
    deployment_labels: Mapping[str, str] | None = None,
    answer: object = POLICY_ANSWER,
) -> tuple[str, str, str, str]:
    namespace = NamespaceContext("payments", dict(namespace_labels or {}))
    deployment = DeploymentDetails(labels=dict(deployment_labels or {}))
    result = decide_business(Decision(answer, "h"), namespace, deployment)
    return result.business_unit, result.service_owner, result.criticality, result.sla_requirement


BU, OWNER, CRIT, SLA = (
    "kubernaut.ai/business-unit",
    "kubernaut.ai/service-owner",
    "kubernaut.ai/criticality",
    "kubernaut.ai/sla-tier",
)


@pytest.mark.parametrize(
    ("namespace_labels", "deployment_labels", "answer", "expected"),
    [
        pytest.param({}, {}, POLICY_ANSWER, ("from-policy", "unknown", "high", "gold"), id="policy"),
        pytest.param(
            {BU: "ns-bu", OWNER: "ns-owner", CRIT: "critical", SLA: "platinum"},
            {BU: "dep-bu", OWNER: "dep-owner", CRIT: "low", SLA: "bronze"},
            POLICY_ANSWER,
            ("ns-bu", "ns-owner", "critical", "platinum"),
            id="namespace-labels-first",
        ),
        pytest.param(
            {},
            {BU: "dep-bu", OWNER: "dep-owner", CRIT: "low", SLA: "silver"},
            POLICY_ANSWER,
            ("dep-bu", "dep-owner", "low", "silver"),
            id="deployment-labels-next",
        ),
        pytest.param(
            {CRIT: "urgent", SLA: "diamond"},
            {CRIT: "LOW"},
            POLICY_ANSWER,
            ("from-policy", "unknown", "low", "gold"),
            id="invalid-tier-labels-skipped",
        ),
        pytest.param(
            {BU: "  ", OWNER: ""},
            {},
            POLICY_ANSWER,
            ("from-policy", "unknown", "high", "gold"),
            id="blank-labels-skipped",
        ),
        pytest.param({}, {}, None, ("unknown", "unknown", "medium", "bronze"), id="undefined-policy"),
        pytest.param(
            {},
            {},
            {"business_unit": "", "criticality": ""},
            ("unknown", "unknown", "medium", "bronze"),
            id="no-opinion",
        ),
        pytest.param(
            {},
            {},
            {"criticality": "High", "sla": "SILVER"},
            ("unknown", "unknown", "high", "silver"),
            id="policy-tiers-any-case",
        ),
        pytest.param(
            {CRIT: "medium"},
            {},
            {"criticality": "not-a-tier"},
            ("unknown", "unknown", "medium", "bronze"),
            id="labels-settle-before-policy-is-read",
        ),
    ],
)
def test_business_precedence_labels_then_policy_then_defaults(
    namespace_labels: Mapping[str, str],
    deployment_labels: Mapping[str, str],
    answer: object,
    expected: tuple[str, str, str, str],
) -> None:
    assert business(namespace_labels, deployment_labels, answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"criticality": "urgent"}, id="criticality"),
        pytest.param({"sla": "tier-3"}, id="sla-of-the-original-policy"),
        pytest.param({"business_unit": 7}, id="not-a-string"),
        pytest.param("gold", id="not-an-object"),
    ],
)
def test_unusable_business_answers_are_policy_errors(answer: object) -> None:
    with pytest.raises(PolicyOutputError, match=r"^business\.rego: "):
        business(answer=answer)


def test_business_result_carries_the_policy_hash() -> None:
    result = decide_business(Decision(POLICY_ANSWER, "hash-b"), None, None)
    assert result == BusinessClassification("from-policy", "unknown", "high", "gold", "hash-b")


def contains_none(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(contains_none(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_none(item) for item in value)
    return False


SIGNAL = Signal("critical", "prometheus")


@pytest.mark.parametrize(
    "built",
    [
        pytest.param(environment_input(None, SIGNAL), id="environment"),
        pytest.param(priority_input(SIGNAL, "", None, None), id="priority"),
        pytest.param(business_input("", None, None), id="business"),
        pytest.param(
            customlabels_input(KubernetesContext(), TargetResource("Node", "node-1"), SIGNAL),
            id="customlabels",
        ),
    ],
)
def test_inputs_never_hold_none_even_for_a_node_target(built: dict[str, object]) -> None:
    assert not contains_none(built)


def test_environment_input_shape() -> None:
    namespace = NamespaceContext("payments", {"a": "b"}, {"note": "not passed"})
    assert environment_input(namespace, Signal("info", "x", labels={"s": "t"})) == {
        "namespace": {"name": "payments", "labels": {"a": "b"}},
        "signal": {"labels": {"s": "t"}},
    }


def test_priority_input_shape() -> None:
    assert priority_input(
        SIGNAL, "production", NamespaceContext("n", {"tier": "high"}), DeploymentDetails(labels={"x": "y"})
    ) == {
        "signal": {"severity": "critical", "source": "prometheus"},
        "environment": "production",
        "namespace_labels": {"tier": "high"},
        "deployment_labels": {"x": "y"},
    }


def test_customlabels_input_has_target_details_only_for_that_target() -> None:
    namespace = NamespaceContext("payments", {"a": "b"}, {"c": "d"})
    pod = PodDetails(
        labels={"app": "api"},
        annotations={},
        phase="Running",
        container_statuses=(ContainerStatus(name="app", restart_count=3),),
        creation_timestamp="2025-12-20T10:00:00Z",
    )
    built = customlabels_input(
        KubernetesContext(namespace=namespace, pod=pod),
        TargetResource("Pod", "api-0", "payments"),
        Signal("warning", "am", "alert"),
    )
    assert built == {
        "kubernetes": {
            "namespace": "payments",
            "namespaceLabels": {"a": "b"},
            "namespaceAnnotations": {"c": "d"},
            "podDetails": {
                "name": "api-0",
                "phase": "Running",
                "labels": {"app": "api"},
                "annotations": {},
                "restartCount": 3,
                "creationTimestamp": "2025-12-20T10:00:00Z",
            },
        },
        "signal": {"type": "alert", "severity": "warning", "source": "am"},
    }
    deployment = DeploymentDetails(
        labels={"app": "api"}, replicas=3, available_replicas=1, ready_replicas=2, strategy="RollingUpdate"
    )
    context = customlabels_input(
        KubernetesContext(namespace=namespace, deployment=deployment),
        TargetResource("Deployment", "api", "payments"),
        SIGNAL,
    )["kubernetes"]
    assert isinstance(context, dict)
    assert "podDetails" not in context
    assert context["deploymentDetails"] == {
        "name": "api",
        "replicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "strategy": "RollingUpdate",
        "labels": {"app": "api"},
    }
