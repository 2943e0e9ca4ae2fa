"""The shipped policy decides the same on OPA and on regorus, and decides what the spec says.

Inputs are built by `classify.policy_input`, so these are the documents the
controller really sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest
import pytest_asyncio

from controller.classify import policy_input
from controller.policies import MODULE_ID, PACKAGE, PolicyText, Rule
from controller.policy_engine import PolicyEngine
from controller.signalprocessing import (
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    PodDetails,
    Signal,
    TargetResource,
)
from devstack.opa_server import OpaServer
from test.integration.patient_engines import patient_embedded, patient_opa


@dataclass(frozen=True)
class Case:
    rule: Rule
    input: Mapping[str, object]
    expected: object


def ns(labels: Mapping[str, str] | None = None, name: str = "payments") -> NamespaceContext:
    return NamespaceContext(name, dict(labels or {}))


ALERT = Signal("critical", "prometheus", "prometheus-alert")
# The target names the workload section; with none read, the workload is its kind and name only.
APP = TargetResource("Pod", "app", "payments")


def document(
    namespace: NamespaceContext | None, signal: Signal = ALERT, kubernetes: KubernetesContext | None = None
) -> dict[str, object]:
    context = kubernetes or KubernetesContext(namespace=namespace)
    return policy_input(context, APP, signal)


def sev(raw: str, expected: str) -> Case:
    return Case(Rule.SEVERITY, document(ns(), Signal(raw, "prometheus")), expected)


def env(namespace: NamespaceContext | None, expected: tuple[str, str], signal: Signal = ALERT) -> Case:
    environment, source = expected
    return Case(Rule.ENVIRONMENT, document(namespace, signal), {"environment": environment, "source": source})


def prio(severity: str, environment: str, expected: tuple[str, str], tier: str | None = None) -> Case:
    labels = {"kubernaut.ai/environment": environment} | ({"tier": tier} if tier is not None else {})
    # The workload's tier label never escalates.
    kubernetes = KubernetesContext(namespace=ns(labels), pod=PodDetails(labels={"tier": "critical"}))
    priority, name = expected
    return Case(
        Rule.PRIORITY,
        document(None, Signal(severity, "prometheus"), kubernetes),
        {"priority": priority, "policy_name": name},
    )


def biz(
    environment: str, expected: tuple[str, str], unit: str = "", labels: Mapping[str, str] | None = None
) -> Case:
    criticality, sla = expected
    namespace = ns({"kubernaut.ai/environment": environment} | dict(labels or {}))
    return Case(
        Rule.BUSINESS,
        document(namespace),
        {"business_unit": unit, "service_owner": "", "criticality": criticality, "sla": sla},
    )


def labels(
    kubernetes: KubernetesContext, expected: Mapping[str, list[str]], target: TargetResource = APP
) -> Case:
    return Case(Rule.LABELS, policy_input(kubernetes, target, ALERT), expected)


UNKNOWN = ("unknown", "default")

CASES = {
    # severity: kubernaut's example mapping, p1 added
    **{
        f"sev-{raw}": sev(raw, expected)
        for raw, expected in [
            ("critical", "critical"),
            ("Critical", "critical"),
            ("Sev1", "critical"),
            ("P0", "critical"),
            ("high", "high"),
            ("sev2", "high"),
            ("P1", "high"),
            ("p2", "high"),
            ("warning", "warning"),
            ("medium", "warning"),
            ("SEV3", "warning"),
            ("info", "info"),
            ("low", "info"),
            ("sev4", "info"),
            ("error", "unknown"),
            ("p3", "unknown"),
            ("", "unknown"),
        ]
    },
    # environment
    "env-label": env(ns({"kubernaut.ai/environment": "production"}), ("production", "namespace-labels")),
    "env-label-lowered": env(ns({"kubernaut.ai/environment": "Staging"}), ("staging", "namespace-labels")),
    "env-label-any-value": env(ns({"kubernaut.ai/environment": "UAT"}), ("uat", "namespace-labels")),
    "env-label-non-ascii": env(
        ns({"kubernaut.ai/environment": "PRODUÇÃO-Ä"}), ("produção-ä", "namespace-labels")
    ),
    "env-no-label": env(ns({"team": "payments"}), UNKNOWN),
    "env-empty-label": env(ns({"kubernaut.ai/environment": ""}), UNKNOWN),
    "env-no-name-inference": env(ns(name="prod-payments"), UNKNOWN),
    "env-no-namespace-read": env(None, UNKNOWN),
    "env-signal-labels-untrusted": env(
        ns(),
        UNKNOWN,
        Signal("critical", "prometheus", labels={"kubernaut.ai/environment": "production"}),
    ),
    # priority: the matrix
    "prio-critical-production": prio("critical", "production", ("P0", "critical-production")),
    "prio-critical-staging": prio("critical", "staging", ("P1", "critical-staging")),
    "prio-warning-production": prio("warning", "production", ("P1", "warning-production")),
    "prio-warning-staging": prio("warning", "staging", ("P2", "warning-staging")),
    "prio-info-production": prio("info", "production", ("P2", "info-production")),
    "prio-critical-development": prio("critical", "development", ("P2", "critical-development")),
    "prio-critical-test": prio("critical", "test", ("P2", "critical-test")),
    "prio-warning-development": prio("warning", "development", ("P3", "warning-development")),
    "prio-warning-test": prio("warning", "test", ("P3", "warning-test")),
    "prio-info-staging": prio("info", "staging", ("P3", "info-staging")),
    "prio-info-development": prio("info", "development", ("P3", "info-development")),
    "prio-info-test": prio("info", "test", ("P3", "info-test")),
    "prio-high-production": prio("high", "production", ("P1", "high-production")),
    "prio-high-staging": prio("high", "staging", ("P1", "high-staging")),
    "prio-high-development": prio("high", "development", ("P2", "high-development")),
    "prio-high-test": prio("high", "test", ("P2", "high-test")),
    "prio-case-insensitive": prio("CRITICAL", "Production", ("P0", "critical-production")),
    "prio-normalised-severity": prio("Sev1", "production", ("P0", "critical-production")),
    "prio-unknown-severity": prio("error", "production", ("P2", "default-catch-all")),
    "prio-default": prio("warning", "unknown", ("P2", "default-catch-all")),
    "prio-tier-critical": prio("critical", "unknown", ("P0", "critical-tier-label"), tier="critical"),
    "prio-tier-high": prio("critical", "unknown", ("P1", "critical-tier-high"), tier="high"),
    "prio-tier-warning-ignored": prio("warning", "unknown", ("P2", "default-catch-all"), tier="critical"),
    # priority: inputs on which the original policy failed with eval_conflict_error
    "conflict-production-tier-critical": prio(
        "critical", "production", ("P0", "critical-production"), tier="critical"
    ),
    "conflict-production-tier-high": prio(
        "critical", "production", ("P0", "critical-production"), tier="high"
    ),
    "conflict-staging-tier-critical": prio(
        "critical", "staging", ("P0", "critical-tier-label"), tier="critical"
    ),
    "conflict-staging-tier-high": prio("critical", "staging", ("P1", "critical-staging"), tier="high"),
    "conflict-development-tier-critical": prio(
        "critical", "development", ("P0", "critical-tier-label"), tier="critical"
    ),
    "conflict-development-tier-high": prio(
        "critical", "development", ("P1", "critical-tier-high"), tier="high"
    ),
    "conflict-test-tier-critical": prio("critical", "test", ("P0", "critical-tier-label"), tier="critical"),
    "conflict-test-tier-high": prio("critical", "test", ("P1", "critical-tier-high"), tier="high"),
    # business
    "biz-production": biz("production", ("High", "Gold")),
    "biz-prod": biz("prod", ("High", "Gold")),
    "biz-staging": biz("staging", ("Medium", "Silver")),
    "biz-stage": biz("stage", ("Medium", "Silver")),
    "biz-development": biz("development", ("Low", "Bronze")),
    "biz-dev": biz("dev", ("Low", "Bronze")),
    "biz-test": biz("test", ("Medium", "Bronze")),
    "biz-unknown": biz("unknown", ("Medium", "Bronze")),
    "biz-no-environment-label": Case(
        Rule.BUSINESS,
        document(ns()),
        {"business_unit": "", "service_owner": "", "criticality": "Medium", "sla": "Bronze"},
    ),
    "biz-case-insensitive": biz("Production", ("High", "Gold")),
    "biz-team-label": biz(
        "staging", ("Medium", "Silver"), unit="payments", labels={"kubernaut.ai/team": "payments"}
    ),
    # custom labels
    "labels-prefixed": labels(
        KubernetesContext(
            namespace=ns({"kubernaut.ai/team": "payments", "kubernaut.ai/region": "eu-west-1", "app": "x"})
        ),
        {"team": ["payments"], "region": ["eu-west-1"]},
    ),
    "labels-none": labels(KubernetesContext(namespace=ns({"app": "checkout"})), {}),
    "labels-bare-prefix": labels(KubernetesContext(namespace=ns({"kubernaut.ai/": "x"})), {}),
    "labels-unicode": labels(
        KubernetesContext(namespace=ns({"kubernaut.ai/owner": "Zoë 🇫🇷"})), {"owner": ["Zoë 🇫🇷"]}
    ),
    "labels-pod-target": labels(
        KubernetesContext(
            namespace=ns({"kubernaut.ai/stage": "prod"}),
            pod=PodDetails(labels={"app": "api"}, phase="Running"),
        ),
        {"stage": ["prod"]},
        TargetResource("Pod", "api-0", "payments"),
    ),
    "labels-deployment-target": labels(
        KubernetesContext(
            namespace=ns({"kubernaut.ai/cost-center": "cc-1"}), deployment=DeploymentDetails(replicas=3)
        ),
        {"cost-center": ["cc-1"]},
        TargetResource("Deployment", "api", "payments"),
    ),
    "labels-node-target": labels(KubernetesContext(), {}, TargetResource("Node", "node-1")),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines(opa_server: OpaServer, shipped: PolicyText) -> AsyncIterator[dict[str, PolicyEngine]]:
    loaded: dict[str, PolicyEngine] = {
        "opa": patient_opa(opa_server.url),
        "embedded": patient_embedded(),
    }
    try:
        for engine in loaded.values():
            await engine.load(MODULE_ID, shipped.source)
        yield loaded
    finally:
        for engine in loaded.values():
            await engine.close()


def test_the_table_covers_every_shipped_rule() -> None:
    assert len(CASES) >= 60
    assert {case.rule for case in CASES.values()} == set(Rule) - {Rule.CLUSTER}  # no cluster rule shipped


@pytest.mark.asyncio(loop_scope="module")
async def test_the_shipped_policy_has_no_cluster_rule(engines: dict[str, PolicyEngine]) -> None:
    for engine in engines.values():
        assert await engine.evaluate(PACKAGE, Rule.CLUSTER, document(ns())) is None


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_both_engines_decide_as_expected(engines: dict[str, PolicyEngine], case: Case) -> None:
    decisions = {
        name: await engine.evaluate(PACKAGE, case.rule, case.input, time_limit=case.rule.time_limit)
        for name, engine in engines.items()
    }
    assert decisions["opa"] == decisions["embedded"], "the engines disagree"
    assert decisions["opa"] == case.expected
