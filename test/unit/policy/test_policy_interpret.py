"""Reading policy answers: what is accepted, what fails the SP, the business label precedence, and
the one input document every rule sees."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from controller.classify import (
    SEVERITIES,
    PolicyOutputError,
    decide_business,
    interpret_cluster,
    interpret_environment,
    interpret_priority,
    interpret_severity,
    normalise_environment,
    policy_input,
)
from controller.signalprocessing import (
    BusinessClassification,
    ClusterContext,
    DaemonSetDetails,
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    NodeDetails,
    PodDetails,
    ServiceDetails,
    Signal,
    StatefulSetDetails,
    TargetResource,
)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_the_five_severities_are_accepted(severity: str) -> None:
    assert interpret_severity(severity) == severity


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(None, "returned no result - add a default rule", id="undefined"),
        pytest.param(
            "Critical", "'Critical' is not one of critical, high, warning, info, unknown", id="case"
        ),
        pytest.param("medium", "'medium' is not one of", id="pre-2026-value"),
        pytest.param("", "'' is not one of", id="empty"),
        pytest.param({"severity": "critical"}, "must be a string, got dict", id="object"),
        pytest.param(1, "must be a string, got int", id="number"),
    ],
)
def test_unusable_severity_answers_are_policy_errors(answer: object, message: str) -> None:
    with pytest.raises(PolicyOutputError, match=message) as failed:
        interpret_severity(answer)
    assert str(failed.value).startswith("severity rule: ")


def test_environment_answer_is_read_and_normalised() -> None:
    result = interpret_environment({"environment": "production", "source": "namespace-labels"})
    assert (result.environment, result.source) == ("Production", "namespace-labels")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("production", "Production"),
        ("PRODUCTION", "Production"),
        ("Staging", "Staging"),
        ("development", "Development"),
        ("test", "Test"),
        ("unknown", "Unknown"),
        ("uat", "uat"),  # outside the five: kept as written
        ("Prod-EU", "Prod-EU"),
    ],
)
def test_environment_normalisation(answer: str, expected: str) -> None:
    assert normalise_environment(answer) == expected
    assert interpret_environment({"environment": answer, "source": "x"}).environment == expected


def test_environment_without_source_is_default() -> None:
    assert interpret_environment({"environment": "uat", "source": ""}).source == "default"


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
        interpret_environment(answer)
    assert str(failed.value).startswith("environment rule: ")


@pytest.mark.parametrize("priority", ["P0", "P1", "P2", "P3"])
def test_priorities_p0_to_p3_are_accepted(priority: str) -> None:
    result = interpret_priority({"priority": priority, "policy_name": "rule", "confidence": 0.9})
    assert (result.priority, result.policy_name, result.source) == (priority, "rule", "rego-policy")


def test_policy_name_is_optional() -> None:
    assert interpret_priority({"priority": "P1"}).policy_name == ""


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
    with pytest.raises(PolicyOutputError, match=r"^priority rule: "):
        interpret_priority(answer)


@pytest.mark.parametrize(("answer", "expected"), [(None, ""), ("edge-eu", "edge-eu"), ("", "")])
def test_cluster_answers(answer: object, expected: str) -> None:
    assert interpret_cluster(answer) == expected


@pytest.mark.parametrize(
    "answer", [pytest.param({"class": "edge"}, id="object"), pytest.param("c" * 254, id="too-long")]
)
def test_unusable_cluster_answers_are_policy_errors(answer: object) -> None:
    with pytest.raises(PolicyOutputError, match=r"^cluster rule: "):
        interpret_cluster(answer)


POLICY_ANSWER = {"business_unit": "from-policy", "service_owner": "", "criticality": "high", "sla": "gold"}


def business(
    namespace_labels: Mapping[str, str] | None = None,
    deployment_labels: Mapping[str, str] | None = None,
    answer: object = POLICY_ANSWER,
) -> tuple[str, str, str, str]:
    result = decide_business(answer, dict(namespace_labels or {}), dict(deployment_labels or {}))
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
        pytest.param({}, {}, POLICY_ANSWER, ("from-policy", "unknown", "High", "Gold"), id="policy"),
        pytest.param(
            {BU: "ns-bu", OWNER: "ns-owner", CRIT: "critical", SLA: "platinum"},
            {BU: "dep-bu", OWNER: "dep-owner", CRIT: "low", SLA: "bronze"},
            POLICY_ANSWER,
            ("ns-bu", "ns-owner", "Critical", "Platinum"),
            id="namespace-labels-first",
        ),
        pytest.param(
            {},
            {BU: "dep-bu", OWNER: "dep-owner", CRIT: "low", SLA: "silver"},
            POLICY_ANSWER,
            ("dep-bu", "dep-owner", "Low", "Silver"),
            id="workload-labels-next",
        ),
        pytest.param(
            {CRIT: "urgent", SLA: "diamond"},
            {CRIT: "LOW"},
            POLICY_ANSWER,
            ("from-policy", "unknown", "Low", "Gold"),
            id="invalid-tier-labels-skipped",
        ),
        pytest.param(
            {BU: "  ", OWNER: ""},
            {},
            POLICY_ANSWER,
            ("from-policy", "unknown", "High", "Gold"),
            id="blank-labels-skipped",
        ),
        pytest.param({}, {}, None, ("unknown", "unknown", "Medium", "Bronze"), id="undefined-policy"),
        pytest.param(
            {},
            {},
            {"business_unit": "", "criticality": ""},
            ("unknown", "unknown", "Medium", "Bronze"),
            id="no-opinion",
        ),
        pytest.param(
            {},
            {},
            {"criticality": "high", "sla": "SILVER"},
            ("unknown", "unknown", "High", "Silver"),
            id="policy-tiers-any-case",
        ),
        pytest.param(
            {CRIT: "medium"},
            {},
            {"criticality": "not-a-tier"},
            ("unknown", "unknown", "Medium", "Bronze"),
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
        pytest.param({"criticality": "P1"}, id="criticality-not-a-2026-value"),
        pytest.param({"business_unit": 7}, id="not-a-string"),
        pytest.param("gold", id="not-an-object"),
    ],
)
def test_unusable_business_answers_are_policy_errors(answer: object) -> None:
    with pytest.raises(PolicyOutputError, match=r"^business rule: "):
        business(answer=answer)


def test_business_result_from_the_policy_alone() -> None:
    result = decide_business(POLICY_ANSWER, {}, {})
    assert result == BusinessClassification("from-policy", "unknown", "High", "Gold")


def contains_none(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(contains_none(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_none(item) for item in value)
    return False


SIGNAL = Signal("critical", "prometheus")


def test_the_input_never_holds_none_even_for_a_node_target_with_nothing_read() -> None:
    built = policy_input(KubernetesContext(), TargetResource("Node", "node-1"), SIGNAL)
    assert not contains_none(built)
    assert built == {
        "namespace": {"name": "", "labels": {}, "annotations": {}},
        "signal": {"severity": "critical", "type": "", "source": "prometheus", "labels": {}},
        "workload": {"kind": "Node", "name": "node-1", "labels": {}, "annotations": {}},
        "cluster": {"labels": {}},
    }


def test_the_input_has_the_labels_enrichment_recorded_for_the_signals_cluster() -> None:
    member = KubernetesContext(cluster_id="prod-eu-1", cluster=ClusterContext({"tier": "gold"}))
    unregistered = KubernetesContext(cluster_id="nowhere")

    assert policy_input(member, TargetResource("Pod", "p", "ns"), SIGNAL)["cluster"] == {
        "labels": {"tier": "gold"}
    }
    assert policy_input(unregistered, TargetResource("Pod", "p", "ns"), SIGNAL)["cluster"] == {"labels": {}}


def test_the_input_document_shape() -> None:
    namespace = NamespaceContext("payments", {"a": "b"}, {"c": "d"})
    pod = PodDetails(labels={"app": "api"}, annotations={"note": "n"}, phase="Running")
    built = policy_input(
        # The pod's node is read too; the workload is the pod, the target.
        KubernetesContext(namespace=namespace, pod=pod, node=NodeDetails(labels={"zone": "z"})),
        TargetResource("Pod", "api-0", "payments"),
        Signal("Sev1", "alertmanager", "prometheus-alert", {"alertname": "Down"}),
    )
    assert built == {
        "namespace": {"name": "payments", "labels": {"a": "b"}, "annotations": {"c": "d"}},
        "signal": {
            "severity": "Sev1",
            "type": "prometheus-alert",
            "source": "alertmanager",
            "labels": {"alertname": "Down"},
        },
        "workload": {"kind": "Pod", "name": "api-0", "labels": {"app": "api"}, "annotations": {"note": "n"}},
        "cluster": {"labels": {}},
    }


@pytest.mark.parametrize(
    ("kubernetes", "kind", "labels", "annotations"),
    [
        pytest.param(
            KubernetesContext(deployment=DeploymentDetails(labels={"k": "d"}, annotations={"a": "1"})),
            "Deployment",
            {"k": "d"},
            {"a": "1"},
            id="deployment",
        ),
        pytest.param(
            KubernetesContext(stateful_set=StatefulSetDetails(labels={"k": "s"})),
            "StatefulSet",
            {"k": "s"},
            {},
            id="statefulset",
        ),
        pytest.param(
            KubernetesContext(daemon_set=DaemonSetDetails(labels={"k": "ds"})),
            "DaemonSet",
            {"k": "ds"},
            {},
            id="daemonset",
        ),
        pytest.param(
            KubernetesContext(service=ServiceDetails(labels={"k": "svc"}, annotations={"a": "2"})),
            "Service",
            {"k": "svc"},
            {"a": "2"},
            id="service",
        ),
        pytest.param(
            KubernetesContext(node=NodeDetails(labels={"k": "n"})), "Node", {"k": "n"}, {}, id="node"
        ),
        pytest.param(
            KubernetesContext(node=NodeDetails(labels={"k": "n"})),
            "Pod",
            {},
            {},
            id="pod-not-read-its-node-is-not-the-workload",
        ),
    ],
)
def test_the_workload_is_the_section_of_the_target_kind(
    kubernetes: KubernetesContext, kind: str, labels: dict[str, str], annotations: dict[str, str]
) -> None:
    workload = policy_input(kubernetes, TargetResource(kind, "w"), SIGNAL)["workload"]
    assert workload == {"kind": kind, "name": "w", "labels": labels, "annotations": annotations}
