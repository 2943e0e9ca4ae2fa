"""Classification: the input document every rule of the policy sees, and what each answer may mean.

The input is kubernaut 2026's, built from the SignalProcessing's own typed
values (`Signal`, the `KubernetesContext` sections; never `None`, which strict
builtins refuse: a missing part is `{}` or `""`):

    namespace{name, labels, annotations}
    signal{severity, type, source, labels}
    workload{kind, name, labels, annotations}   the target itself
    cluster{labels}                             the signal's cluster's, from the registry (enrichment
                                                records them in the context; `controller.clusters`)

Each step asks the rules it needs through the `PolicyEvaluator` passed in and
turns the answers into frozen results; answers that break a rule's contract
raise `PolicyOutputError`, which fails the SP instead of writing a made-up
value.

- severity (required): a plain string, one of `SEVERITIES`.
- environment (required): `{environment, source}`; the value is mapped onto
  Production/Staging/Development/Test/Unknown case-insensitively, any other
  string is kept as written; an empty source is `default`.
- priority (required): `{priority: P0..P3, policy_name}`; source `rego-policy`.
- cluster (optional): a string, recorded as the cluster classification.
  Undefined records nothing; a failure never fails the SP (`ClusterOutcome`).
- labels (optional): custom labels, sanitised (reserved prefixes, at most 10
  keys in sorted order, 5 values, 63/100 characters cut at a character
  boundary); when they come out empty, per key the namespace's, else the
  target workload's `kubernaut.ai/{team,tier,cost-center,region}` labels.
- business (optional, this controller's own rule): per field, the
  `kubernaut.ai/*` labels first (namespace, then the target workload), then
  the policy, then `unknown`/`unknown`/`Medium`/`Bronze`; criticality and
  SLA are matched case-insensitively and written PascalCase. The label
  precedence lives here, not in Rego, so no policy edit can override what a
  team declared on its objects.

Boundary: pure functions plus the evaluator call; no Kubernetes API, no files.
`smoke_check` is what `policies.ActivePolicies` runs before activating a text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from controller.policies import Decisions, PolicyEvaluator, Rule
from controller.policy_engine import PolicyError
from controller.signalprocessing import (
    BusinessClassification,
    DeploymentDetails,
    EnvironmentClassification,
    KubernetesContext,
    NamespaceContext,
    PriorityAssignment,
    Signal,
    TargetResource,
    WorkloadContext,
)

SEVERITIES: Final = ("critical", "high", "warning", "info", "unknown")
PRIORITIES: Final = frozenset({"P0", "P1", "P2", "P3"})
# kubernaut 2026's business tiers, PascalCase as the CRD has them; labels and the policy's answers are
# matched case-insensitively (keys: lower case) and written as these values.
CRITICALITIES: Final = MappingProxyType(
    {name.lower(): name for name in ("Critical", "High", "Medium", "Low")}
)
SLA_TIERS: Final = MappingProxyType({name.lower(): name for name in ("Platinum", "Gold", "Silver", "Bronze")})
# kubernaut 2026's environment values; the policy's answer is matched case-insensitively.
ENVIRONMENTS: Final = MappingProxyType(
    {name.lower(): name for name in ("Production", "Staging", "Development", "Test", "Unknown")}
)
MAX_CLUSTER_CLASSIFICATION_LENGTH: Final = 253

# DD-WORKFLOW-001 v1.9 limits for custom labels.
MAX_CUSTOM_LABEL_KEYS: Final = 10
MAX_CUSTOM_LABEL_VALUES: Final = 5
MAX_CUSTOM_LABEL_KEY_LENGTH: Final = 63
MAX_CUSTOM_LABEL_VALUE_LENGTH: Final = 100
RESERVED_LABEL_PREFIXES: Final = ("kubernaut.ai/", "system/")

_BUSINESS_DEFAULTS: Final = {
    "business_unit": "unknown",
    "service_owner": "unknown",
    "criticality": "Medium",
    "sla": "Bronze",
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
    ("kubernaut.ai/tier", "tier"),
    ("kubernaut.ai/cost-center", "cost"),
    ("kubernaut.ai/region", "region"),
)


class PolicyOutputError(PolicyError):
    """A rule answered with something outside its contract; names the rule."""

    def __init__(self, rule: Rule, message: str) -> None:
        super().__init__(f"{rule} rule: {message}")
        self.rule = rule


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CustomLabels:
    """Sanitised custom labels; `source` says whether the policy or the label fallback gave them."""

    labels: Mapping[str, tuple[str, ...]]
    source: Literal["policy", "label-fallback"]
    reserved_dropped: tuple[str, ...] = ()

    def to_status(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.labels.items()}


@dataclass(frozen=True)
class ClusterOutcome:
    """The optional cluster rule: its classification (empty when undefined), or why it failed.

    A failure is reported, never raised: kubernaut never fails an SP for its cluster rule.
    """

    classification: str = ""
    error: str = ""


@dataclass(frozen=True)
class SignalVerdict:
    """What the Classifying step decides, all from the policy text whose hash it carries."""

    severity: str
    environment: EnvironmentClassification
    priority: PriorityAssignment
    cluster: ClusterOutcome
    policy_hash: str


# --------------------------------------------------------------------------------------------------
# The input document


def target_workload(kubernetes: KubernetesContext, target: TargetResource) -> WorkloadContext:
    """The target as the policies see it: as enrichment recorded it in `kubernetesContext.workload`,
    else (a context recorded before that field existed) from the section read for its kind."""
    if kubernetes.workload is not None:
        return kubernetes.workload
    return kubernetes.workload_of(target.kind, target.name)


def workload_labels(kubernetes: KubernetesContext, target: TargetResource) -> Mapping[str, str]:
    """The target's own labels, as the policy sees them in `input.workload.labels`."""
    return target_workload(kubernetes, target).labels


def policy_input(kubernetes: KubernetesContext, target: TargetResource, signal: Signal) -> dict[str, object]:
    """The one input document of every rule (kubernaut 2026's `evaluator/types.go` shape)."""
    namespace = kubernetes.namespace
    workload = target_workload(kubernetes, target)
    return {
        "namespace": {
            "name": namespace.name if namespace else "",
            "labels": dict(namespace.labels) if namespace else {},
            "annotations": dict(namespace.annotations) if namespace else {},
        },
        "signal": {
            "severity": signal.severity,
            "type": signal.type,
            "source": signal.source,
            "labels": dict(signal.labels),
        },
        "workload": {
            "kind": workload.kind,
            "name": workload.name,
            "labels": dict(workload.labels),
            "annotations": dict(workload.annotations),
        },
        "cluster": {"labels": dict(kubernetes.cluster.labels) if kubernetes.cluster else {}},
    }


# --------------------------------------------------------------------------------------------------
# Reading answers


def _object(rule: Rule, value: object) -> Mapping[str, object]:
    """The answer as an object; an undefined answer reads as an empty one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyOutputError(rule, f"result must be an object, got {type(value).__name__}")
    return value


def _required_object(rule: Rule, value: object) -> Mapping[str, object]:
    if value is None:
        raise PolicyOutputError(rule, "returned no result - add a default rule")
    return _object(rule, value)


def _optional_string(rule: Rule, result: Mapping[str, object], key: str) -> str:
    value = result.get(key, "")
    if not isinstance(value, str):
        raise PolicyOutputError(rule, f"{key} must be a string, got {value!r}")
    return value


def normalise_environment(environment: str) -> str:
    """Production, Staging, Development, Test or Unknown, whatever their case; any other value as written."""
    return ENVIRONMENTS.get(environment.lower(), environment)


def interpret_severity(value: object) -> str:
    """The answer, a plain string in `SEVERITIES`; there is no fallback but the policy's own default."""
    if value is None:
        raise PolicyOutputError(Rule.SEVERITY, "returned no result - add a default rule")
    if not isinstance(value, str):
        raise PolicyOutputError(Rule.SEVERITY, f"result must be a string, got {type(value).__name__}")
    if value not in SEVERITIES:
        raise PolicyOutputError(Rule.SEVERITY, f"{value!r} is not one of {', '.join(SEVERITIES)}")
    return value


def interpret_environment(value: object) -> EnvironmentClassification:
    rule = Rule.ENVIRONMENT
    result = _required_object(rule, value)
    environment = _optional_string(rule, result, "environment")
    if not environment:
        raise PolicyOutputError(rule, f"result has no environment: {dict(result)!r}")
    source = _optional_string(rule, result, "source") or "default"
    return EnvironmentClassification(normalise_environment(environment), source)


def interpret_priority(value: object) -> PriorityAssignment:
    rule = Rule.PRIORITY
    result = _required_object(rule, value)
    priority = result.get("priority")
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise PolicyOutputError(rule, f"invalid priority value: {priority!r} (expected P0..P3)")
    return PriorityAssignment(priority, _optional_string(rule, result, "policy_name"))


def interpret_cluster(value: object) -> str:
    """The cluster classification: a string (empty when undefined); raises for anything else."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PolicyOutputError(Rule.CLUSTER, f"result must be a string, got {type(value).__name__}")
    if len(value) > MAX_CLUSTER_CLASSIFICATION_LENGTH:
        raise PolicyOutputError(
            Rule.CLUSTER, f"result is {len(value)} characters, over {MAX_CLUSTER_CLASSIFICATION_LENGTH}"
        )
    return value


def _cluster_outcome(decisions: Decisions) -> ClusterOutcome:
    try:
        return ClusterOutcome(interpret_cluster(decisions.value(Rule.CLUSTER)))
    except PolicyError as error:
        return ClusterOutcome(error=str(error))


def _from_labels(key: str, *sources: Mapping[str, str]) -> str | None:
    """The first usable label value, namespace before workload; invalid tiers are skipped."""
    allowed = _BUSINESS_ALLOWED.get(key)
    for labels in sources:
        value = labels.get(_BUSINESS_LABELS[key], "").strip()
        if allowed is not None:
            if value.lower() in allowed:
                return allowed[value.lower()]
        elif value:
            return value
    return None


def decide_business(
    value: object, namespace_labels: Mapping[str, str], workload: Mapping[str, str]
) -> BusinessClassification:
    """Labels, then the policy's answer (undefined, an empty string or a missing key mean no opinion),
    then defaults."""
    rule = Rule.BUSINESS
    result = _object(rule, value)
    decided = {}
    for key, default in _BUSINESS_DEFAULTS.items():
        from_labels = _from_labels(key, namespace_labels, workload)
        if from_labels is not None:
            decided[key] = from_labels
            continue
        from_policy = _optional_string(rule, result, key)
        allowed = _BUSINESS_ALLOWED.get(key)
        if allowed is not None and from_policy:
            if from_policy.lower() not in allowed:
                raise PolicyOutputError(
                    rule, f"{key} {from_policy!r} is not one of {', '.join(allowed.values())} (any case)"
                )
            from_policy = allowed[from_policy.lower()]
        decided[key] = from_policy or default
    return BusinessClassification(
        business_unit=decided["business_unit"],
        service_owner=decided["service_owner"],
        criticality=decided["criticality"],
        sla_requirement=decided["sla"],
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
    result = _object(Rule.LABELS, value)
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


def interpret_custom_labels(
    value: object, namespace_labels: Mapping[str, str], workload: Mapping[str, str]
) -> CustomLabels:
    """The sanitised answer; when it is empty, each fallback label from the namespace, else the workload."""
    labels, reserved = sanitise_custom_labels(value)
    if labels:
        return CustomLabels(MappingProxyType(labels), "policy", reserved)
    fallback = {}
    for label, name in _FALLBACK_LABELS:
        found = namespace_labels.get(label) or workload.get(label)
        if found:
            fallback[name] = (truncate_text(found, MAX_CUSTOM_LABEL_VALUE_LENGTH),)
    return CustomLabels(MappingProxyType(fallback), "label-fallback", reserved)


# --------------------------------------------------------------------------------------------------
# Classifying: input, evaluation, reading

_SIGNAL_RULES: Final = (Rule.SEVERITY, Rule.ENVIRONMENT, Rule.PRIORITY, Rule.CLUSTER)


async def classify_signal(
    evaluator: PolicyEvaluator, kubernetes: KubernetesContext, target: TargetResource, signal: Signal
) -> SignalVerdict:
    """Severity, environment, priority and cluster, from one policy text (the Classifying step)."""
    decisions = await evaluator.evaluate(_SIGNAL_RULES, policy_input(kubernetes, target, signal))
    return SignalVerdict(
        severity=interpret_severity(decisions.value(Rule.SEVERITY)),
        environment=interpret_environment(decisions.value(Rule.ENVIRONMENT)),
        priority=interpret_priority(decisions.value(Rule.PRIORITY)),
        cluster=_cluster_outcome(decisions),
        policy_hash=decisions.policy_hash,
    )


async def classify_business(
    evaluator: PolicyEvaluator, kubernetes: KubernetesContext, target: TargetResource, signal: Signal
) -> tuple[BusinessClassification, str]:
    """The business classification (the Categorizing step), and the hash of the text that decided it."""
    decisions = await evaluator.evaluate((Rule.BUSINESS,), policy_input(kubernetes, target, signal))
    business = decide_business(
        decisions.value(Rule.BUSINESS), kubernetes.namespace_labels, workload_labels(kubernetes, target)
    )
    return business, decisions.policy_hash


async def extract_custom_labels(
    evaluator: PolicyEvaluator, kubernetes: KubernetesContext, target: TargetResource, signal: Signal
) -> CustomLabels:
    """The custom labels (in the Enriching step, once the context is read)."""
    decisions = await evaluator.evaluate((Rule.LABELS,), policy_input(kubernetes, target, signal))
    return interpret_custom_labels(
        decisions.value(Rule.LABELS), kubernetes.namespace_labels, workload_labels(kubernetes, target)
    )


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
    """Classify one typical production signal with every rule; raises if a required answer is unusable.

    The cluster rule's failure is not one: as for an SP, it never stops anything.
    """
    kubernetes = KubernetesContext(namespace=SMOKE_NAMESPACE, deployment=SMOKE_DEPLOYMENT)
    await extract_custom_labels(evaluator, kubernetes, SMOKE_TARGET, SMOKE_SIGNAL)
    await classify_signal(evaluator, kubernetes, SMOKE_TARGET, SMOKE_SIGNAL)
    await classify_business(evaluator, kubernetes, SMOKE_TARGET, SMOKE_SIGNAL)
