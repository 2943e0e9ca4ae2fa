"""Classification: the input each policy sees, and what its answer may mean.

For each of the four policies this module builds the Rego input from the
SignalProcessing's own typed values (`Signal`, the `KubernetesContext` sections;
never `None`, which strict builtins refuse: absent maps are `{}`),
evaluates it through the `PolicyEvaluator` passed in, and turns the answer
into a frozen result carrying the hash of the policy text that decided it.
Answers that break the contract raise `PolicyOutputError`, which fails the
SP instead of writing a made-up value.

- Environment: `{environment, source}`; no result or no environment is an error.
- Priority: `{priority: P0..P3, policy_name}`; the status source is `rego-policy`.
- Business: per field, the `kubernaut.ai/*` labels first (namespace, then
  deployment), then the policy, then `unknown`/`unknown`/`medium`/`bronze`.
  The label precedence lives here, not in Rego, so no policy edit can
  override what a team declared on its objects.
- Custom labels: sanitised (reserved prefixes, at most 10 keys in sorted
  order, 5 values, 63/100 characters cut at a character boundary), with a
  fallback to the namespace's team/cost-center/region labels.

Boundary: pure functions plus the evaluator call; no Kubernetes API, no files.
`smoke_check` is what `policies.ActivePolicies` runs before activating texts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from controller.policies import Decision, Policy, PolicyEvaluator
from controller.policy_engine import PolicyError
from controller.signalprocessing import (
    BusinessClassification,
    DeploymentDetails,
    EnvironmentClassification,
    KubernetesContext,
    NamespaceContext,
    PodDetails,
    PriorityAssignment,
    Signal,
    TargetResource,
)

PRIORITIES: Final = frozenset({"P0", "P1", "P2", "P3"})
CRITICALITIES: Final = frozenset({"critical", "high", "medium", "low"})
SLA_TIERS: Final = frozenset({"platinum", "gold", "silver", "bronze"})

# DD-WORKFLOW-001 v1.9 limits for custom labels.
MAX_CUSTOM_LABEL_KEYS: Final = 10
MAX_CUSTOM_LABEL_VALUES: Final = 5
MAX_CUSTOM_LABEL_KEY_LENGTH: Final = 63
MAX_CUSTOM_LABEL_VALUE_LENGTH: Final = 100
RESERVED_LABEL_PREFIXES: Final = ("kubernaut.ai/", "system/")

_BUSINESS_DEFAULTS: Final = {
    "business_unit": "unknown",
    "service_owner": "unknown",
    "criticality": "medium",
    "sla": "bronze",
}
_BUSINESS_LABELS: Final = {
    "business_unit": "kubernaut.ai/business-unit",
    "service_owner": "kubernaut.ai/service-owner",
    "criticality": "kubernaut.ai/criticality",
    "sla": "kubernaut.ai/sla-tier",
}
_BUSINESS_ALLOWED: Final = {"criticality": CRITICALITIES, "sla": SLA_TIERS}
_FALLBACK_LABELS: Final = (
    ("kubernaut.ai/team", "team"),
    ("kubernaut.ai/cost-center", "cost"),
    ("kubernaut.ai/region", "region"),
)


class PolicyOutputError(PolicyError):
    """A policy answered with something outside its contract; names the policy."""

    def __init__(self, policy: Policy, message: str) -> None:
        super().__init__(f"{policy.file_name}: {message}")
        self.policy = policy


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CustomLabels:
    """Sanitised custom labels; `source` says whether the policy or the namespace fallback gave them."""

    labels: Mapping[str, tuple[str, ...]]
    source: Literal["policy", "namespace-fallback"]
    policy_hash: str
    reserved_dropped: tuple[str, ...] = ()

    def to_status(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.labels.items()}


# --------------------------------------------------------------------------------------------------
# Inputs


def _labels(section: NamespaceContext | DeploymentDetails | PodDetails | None) -> dict[str, str]:
    return dict(section.labels) if section is not None else {}


def environment_input(namespace: NamespaceContext | None, signal: Signal) -> dict[str, object]:
    return {
        "namespace": {"name": namespace.name if namespace else "", "labels": _labels(namespace)},
        "signal": {"labels": dict(signal.labels)},
    }


def priority_input(
    signal: Signal,
    environment: str,
    namespace: NamespaceContext | None,
    deployment: DeploymentDetails | None,
) -> dict[str, object]:
    return {
        "signal": {"severity": signal.severity, "source": signal.source},
        "environment": environment,
        "namespace_labels": _labels(namespace),
        "deployment_labels": _labels(deployment),
    }


def business_input(
    environment: str, namespace: NamespaceContext | None, deployment: DeploymentDetails | None
) -> dict[str, object]:
    return {
        "environment": environment,
        "namespace": {
            "name": namespace.name if namespace else "",
            "labels": _labels(namespace),
            "annotations": dict(namespace.annotations) if namespace else {},
        },
        "deployment": {
            "labels": _labels(deployment),
            "annotations": dict(deployment.annotations) if deployment else {},
        },
    }


def customlabels_input(
    kubernetes: KubernetesContext, target: TargetResource, signal: Signal
) -> dict[str, object]:
    """The shape of the original `RegoInput`; `podDetails`/`deploymentDetails` only for those targets.

    The context has a pod or deployment section only when the target is that pod or deployment,
    so the target names it.
    """
    namespace = kubernetes.namespace
    context: dict[str, object] = {
        "namespace": namespace.name if namespace else "",
        "namespaceLabels": _labels(namespace),
        "namespaceAnnotations": dict(namespace.annotations) if namespace else {},
    }
    if (pod := kubernetes.pod) is not None:
        context["podDetails"] = {
            "name": target.name,
            "phase": pod.phase,
            "labels": dict(pod.labels),
            "annotations": dict(pod.annotations),
            "restartCount": pod.restart_count,
            "creationTimestamp": pod.creation_timestamp,
        }
    if (deployment := kubernetes.deployment) is not None:
        context["deploymentDetails"] = {
            "name": target.name,
            "replicas": deployment.replicas,
            "readyReplicas": deployment.ready_replicas,
            "availableReplicas": deployment.available_replicas,
            "strategy": deployment.strategy,
            "labels": dict(deployment.labels),
        }
    return {
        "kubernetes": context,
        "signal": {"type": signal.type, "severity": signal.severity, "source": signal.source},
    }


# --------------------------------------------------------------------------------------------------
# Reading answers


def _object(policy: Policy, value: object) -> Mapping[str, object]:
    """The answer as an object; an undefined answer reads as an empty one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyOutputError(policy, f"result must be an object, got {type(value).__name__}")
    return value


def _required_object(policy: Policy, value: object) -> Mapping[str, object]:
    if value is None:
        raise PolicyOutputError(policy, "returned no result - add a default rule")
    return _object(policy, value)


def _optional_string(policy: Policy, result: Mapping[str, object], key: str) -> str:
    value = result.get(key, "")
    if not isinstance(value, str):
        raise PolicyOutputError(policy, f"{key} must be a string, got {value!r}")
    return value


def interpret_environment(decision: Decision) -> EnvironmentClassification:
    policy = Policy.ENVIRONMENT
    result = _required_object(policy, decision.value)
    environment = _optional_string(policy, result, "environment")
    if not environment:
        raise PolicyOutputError(policy, f"result has no environment: {dict(result)!r}")
    source = _optional_string(policy, result, "source") or "default"
    return EnvironmentClassification(environment, source, decision.policy_hash)


def interpret_priority(decision: Decision) -> PriorityAssignment:
    policy = Policy.PRIORITY
    result = _required_object(policy, decision.value)
    priority = result.get("priority")
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise PolicyOutputError(policy, f"invalid priority value: {priority!r} (expected P0..P3)")
    return PriorityAssignment(priority, _optional_string(policy, result, "policy_name"), decision.policy_hash)


def _from_labels(
    key: str, namespace: NamespaceContext | None, deployment: DeploymentDetails | None
) -> str | None:
    """The first usable label value, namespace before deployment; invalid tiers are skipped."""
    allowed = _BUSINESS_ALLOWED.get(key)
    for labels in (_labels(namespace), _labels(deployment)):
        value = labels.get(_BUSINESS_LABELS[key], "").strip()
        if allowed is not None:
            value = value.lower()
            if value in allowed:
                return value
        elif value:
            return value
    return None


def decide_business(
    decision: Decision, namespace: NamespaceContext | None, deployment: DeploymentDetails | None
) -> BusinessClassification:
    """Labels, then the policy's answer (an empty string or a missing key means no opinion), then defaults."""
    policy = Policy.BUSINESS
    result = _object(policy, decision.value)
    decided = {}
    for key, default in _BUSINESS_DEFAULTS.items():
        from_labels = _from_labels(key, namespace, deployment)
        if from_labels is not None:
            decided[key] = from_labels
            continue
        from_policy = _optional_string(policy, result, key)
        allowed = _BUSINESS_ALLOWED.get(key)
        if allowed is not None and from_policy:
            from_policy = from_policy.lower()
            if from_policy not in allowed:
                raise PolicyOutputError(policy, f"{key} {from_policy!r} is not one of {sorted(allowed)}")
        decided[key] = from_policy or default
    return BusinessClassification(
        business_unit=decided["business_unit"],
        service_owner=decided["service_owner"],
        criticality=decided["criticality"],
        sla_requirement=decided["sla"],
        policy_hash=decision.policy_hash,
    )


_ZERO_WIDTH_JOINER: Final = "\u200d"


def _is_regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _extends_previous(char: str) -> bool:
    """Code points that belong to the character before them (combining marks, emoji modifiers)."""
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char == _ZERO_WIDTH_JOINER
        or "\ufe00" <= char <= "\ufe0f"  # variation selectors
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # skin tones
        or "\U000e0020" <= char <= "\U000e007f"  # tags (subdivision flags)
    )


def _is_boundary(text: str, index: int) -> bool:
    if index == 0:
        return True
    if _extends_previous(text[index]) or text[index - 1] == _ZERO_WIDTH_JOINER:
        return False
    if _is_regional_indicator(text[index]):
        run = 0
        while index - run > 0 and _is_regional_indicator(text[index - run - 1]):
            run += 1
        return run % 2 == 0  # flags are pairs; an odd run means we are inside one
    return True


def truncate_text(text: str, limit: int) -> str:
    """At most `limit` code points, cut at a user-perceived character boundary.

    The original cut bytes and could split a UTF-8 sequence. Code points alone
    would still strip an accent from its letter or halve a flag, so the cut
    moves back over combining marks, ZWJ sequences, variation selectors, skin
    tones and regional-indicator pairs (an approximation of Unicode grapheme
    clusters that covers what label values contain).
    """
    if len(text) <= limit:
        return text
    cut = limit
    while not _is_boundary(text, cut):
        cut -= 1
    return text[:cut]


def _string_values(raw: object) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return [item for item in raw if isinstance(item, str)]
    return []


def sanitise_custom_labels(value: object) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """The policy's `labels` under the v1.9 limits, and the keys dropped for a reserved prefix.

    Keys are visited in sorted order, so which 10 survive is deterministic.
    Arrays keep their string elements, a string becomes a one-element list,
    anything else (and a key left with no values) is skipped. A key whose
    truncation collides with an earlier key is skipped too.
    """
    labels: dict[str, tuple[str, ...]] = {}
    reserved: list[str] = []
    result = _object(Policy.CUSTOMLABELS, value)
    for key in sorted(result):
        if key.startswith(RESERVED_LABEL_PREFIXES):
            reserved.append(key)
            continue
        if len(labels) == MAX_CUSTOM_LABEL_KEYS:
            continue  # keep looking for reserved keys, which are all reported
        values = _string_values(result[key])
        name = truncate_text(key, MAX_CUSTOM_LABEL_KEY_LENGTH)
        if not values or not name or name in labels:
            continue
        labels[name] = tuple(
            truncate_text(item, MAX_CUSTOM_LABEL_VALUE_LENGTH) for item in values[:MAX_CUSTOM_LABEL_VALUES]
        )
    return labels, tuple(reserved)


def interpret_custom_labels(decision: Decision, namespace: NamespaceContext | None) -> CustomLabels:
    labels, reserved = sanitise_custom_labels(decision.value)
    if labels:
        return CustomLabels(MappingProxyType(labels), "policy", decision.policy_hash, reserved)
    namespace_labels = _labels(namespace)
    fallback = {
        name: (truncate_text(namespace_labels[label], MAX_CUSTOM_LABEL_VALUE_LENGTH),)
        for label, name in _FALLBACK_LABELS
        if namespace_labels.get(label)
    }
    return CustomLabels(MappingProxyType(fallback), "namespace-fallback", decision.policy_hash, reserved)


# --------------------------------------------------------------------------------------------------
# Classifying: input, evaluation, reading


async def classify_environment(
    evaluator: PolicyEvaluator, namespace: NamespaceContext | None, signal: Signal
) -> EnvironmentClassification:
    decision = await evaluator.evaluate(Policy.ENVIRONMENT, environment_input(namespace, signal))
    return interpret_environment(decision)


async def assign_priority(
    evaluator: PolicyEvaluator,
    signal: Signal,
    environment: str,
    namespace: NamespaceContext | None,
    deployment: DeploymentDetails | None,
) -> PriorityAssignment:
    inputs = priority_input(signal, environment, namespace, deployment)
    return interpret_priority(await evaluator.evaluate(Policy.PRIORITY, inputs))


async def classify_business(
    evaluator: PolicyEvaluator,
    environment: str,
    namespace: NamespaceContext | None,
    deployment: DeploymentDetails | None,
) -> BusinessClassification:
    inputs = business_input(environment, namespace, deployment)
    return decide_business(await evaluator.evaluate(Policy.BUSINESS, inputs), namespace, deployment)


async def extract_custom_labels(
    evaluator: PolicyEvaluator, kubernetes: KubernetesContext, target: TargetResource, signal: Signal
) -> CustomLabels:
    decision = await evaluator.evaluate(Policy.CUSTOMLABELS, customlabels_input(kubernetes, target, signal))
    return interpret_custom_labels(decision, kubernetes.namespace)


SMOKE_NAMESPACE: Final = NamespaceContext(
    "smoke-check",
    MappingProxyType({"kubernaut.ai/environment": "production", "kubernaut.ai/team": "platform"}),
)
SMOKE_SIGNAL: Final = Signal(
    "critical", "prometheus", "prometheus-alert", MappingProxyType({"alertname": "Smoke"})
)
SMOKE_DEPLOYMENT: Final = DeploymentDetails(replicas=2, labels=MappingProxyType({"app": "smoke"}))
SMOKE_TARGET: Final = TargetResource("Deployment", "smoke-check", "smoke-check")


async def smoke_check(evaluator: PolicyEvaluator) -> None:
    """Classify one typical production signal with every policy; raises if any answer is unusable."""
    environment = await classify_environment(evaluator, SMOKE_NAMESPACE, SMOKE_SIGNAL)
    await assign_priority(evaluator, SMOKE_SIGNAL, environment.environment, SMOKE_NAMESPACE, SMOKE_DEPLOYMENT)
    await classify_business(evaluator, environment.environment, SMOKE_NAMESPACE, SMOKE_DEPLOYMENT)
    kubernetes = KubernetesContext(namespace=SMOKE_NAMESPACE, deployment=SMOKE_DEPLOYMENT)
    await extract_custom_labels(evaluator, kubernetes, SMOKE_TARGET, SMOKE_SIGNAL)
