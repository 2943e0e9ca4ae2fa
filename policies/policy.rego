# The SignalProcessing policy (kubernaut 2026's unified policy.rego, ADR-060).
#
# One module, one package; the controller queries each rule on its own
# (data.signalprocessing.<rule>) with one input document:
#
#   input.namespace  {name, labels, annotations}
#   input.signal     {severity, type, source, labels}
#   input.workload   {kind, name, labels, annotations}   the signal's target
#   input.cluster    {labels}                            the signal's cluster's, from cluster-registry.yaml
#
# Required rules (an undefined answer fails the SP): severity, environment,
# priority. Optional: labels, cluster, business. See the README, "The policy".
package signalprocessing

import rego.v1

# --- severity: the source's severity, normalised -------------------------------------
#
# Answers a plain string: critical, high, warning, info or unknown. The
# controller adds no fallback of its own: this default is the fallback.
# p1 maps to high (kubernaut's example has no p1 line; p0 is critical and p2
# high, so p1 is high too).

severity_aliases := {
	"critical": "critical", "sev1": "critical", "p0": "critical",
	"high": "high", "sev2": "high", "p1": "high", "p2": "high",
	"warning": "warning", "medium": "warning", "sev3": "warning",
	"info": "info", "low": "info", "sev4": "info",
}

default severity := "unknown"

severity := severity_aliases[lower(input.signal.severity)]

# --- environment (BR-SP-051) ---------------------------------------------------------------------
#
# The namespace label `kubernaut.ai/environment` is the only trusted source:
# signal labels come from the alert sender and are deliberately ignored.
# The controller maps production/staging/development/test/unknown onto
# Production/Staging/Development/Test/Unknown and keeps any other value.

default environment := {"environment": "unknown", "source": "default"}

environment := {"environment": lower(value), "source": "namespace-labels"} if {
	value := input.namespace.labels["kubernaut.ai/environment"]
	is_string(value)
	value != ""
}

# --- priority (BR-SP-070): severity x environment, escalated by the namespace label `tier` -------
#
# Keyed on the normalised severity above; high ranks between critical and
# warning. The rows are one `else` chain from the most urgent down, so when
# several match (critical + production + tier=critical) the first wins
# instead of a conflict error.

default priority := {"priority": "P2", "policy_name": "default-catch-all"}

env := environment.environment

tier := object.get(input.namespace.labels, "tier", "")

priority := {"priority": "P0", "policy_name": "critical-production"} if {
	severity == "critical"
	env == "production"
} else := {"priority": "P0", "policy_name": "critical-tier-label"} if {
	severity == "critical"
	tier == "critical"
} else := {"priority": "P1", "policy_name": "critical-staging"} if {
	severity == "critical"
	env == "staging"
} else := {"priority": "P1", "policy_name": "high-production"} if {
	severity == "high"
	env == "production"
} else := {"priority": "P1", "policy_name": "high-staging"} if {
	severity == "high"
	env == "staging"
} else := {"priority": "P1", "policy_name": "warning-production"} if {
	severity == "warning"
	env == "production"
} else := {"priority": "P1", "policy_name": "critical-tier-high"} if {
	severity == "critical"
	tier == "high"
} else := {"priority": "P2", "policy_name": "warning-staging"} if {
	severity == "warning"
	env == "staging"
} else := {"priority": "P2", "policy_name": "info-production"} if {
	severity == "info"
	env == "production"
} else := {"priority": "P2", "policy_name": "critical-development"} if {
	severity == "critical"
	env == "development"
} else := {"priority": "P2", "policy_name": "critical-test"} if {
	severity == "critical"
	env == "test"
} else := {"priority": "P2", "policy_name": "high-development"} if {
	severity == "high"
	env == "development"
} else := {"priority": "P2", "policy_name": "high-test"} if {
	severity == "high"
	env == "test"
} else := {"priority": "P3", "policy_name": "warning-development"} if {
	severity == "warning"
	env == "development"
} else := {"priority": "P3", "policy_name": "warning-test"} if {
	severity == "warning"
	env == "test"
} else := {"priority": "P3", "policy_name": "info-staging"} if {
	severity == "info"
	env == "staging"
} else := {"priority": "P3", "policy_name": "info-development"} if {
	severity == "info"
	env == "development"
} else := {"priority": "P3", "policy_name": "info-test"} if {
	severity == "info"
	env == "test"
}

# --- labels (BR-SP-102): custom labels ------------------------------------------------------------
#
# Every namespace label `kubernaut.ai/<key>` becomes the custom label `<key>`
# with its value as a one-element list. Stripping the prefix is one-to-one,
# so no key gets two values. The controller sanitises the answer (reserved
# prefixes, counts, lengths) and, when it comes out empty, falls back to the
# team, tier, cost-center and region labels of the namespace, then the workload.

label_prefix := "kubernaut.ai/"

labels := {key: [value] |
	some name, value in input.namespace.labels
	startswith(name, label_prefix)
	key := trim_prefix(name, label_prefix)
	key != ""
	is_string(value)
}

# --- cluster: no rule ------------------------------------------------------------------------------
#
# Optional; undefined records no cluster classification. A policy may answer a
# string from input.cluster.labels (the registry's labels of the signal's cluster; {} for an
# unregistered one), e.g.
#
#   cluster := input.cluster.labels["kubernaut.ai/cluster-class"]

# --- business (BR-SP-002, BR-SP-080, BR-SP-081): this controller's own rule -----------------------
#
# The controller applies the `kubernaut.ai/business-unit`, `.../service-owner`,
# `.../criticality` and `.../sla-tier` labels (namespace, then workload)
# itself, before this rule, so no policy edit can override what a team
# declared. This rule decides the rest: criticality and SLA by environment,
# the business unit from the namespace's `kubernaut.ai/team` label. An empty
# string means "no opinion" and lets the controller's default apply.
# Criticality is Critical, High, Medium or Low, SLA Platinum, Gold, Silver or
# Bronze (kubernaut 2026's values); the controller accepts them in any case.

default business_tiers := {"criticality": "Medium", "sla": "Bronze"}

business_tiers := {"criticality": "High", "sla": "Gold"} if {
	env in {"production", "prod"}
} else := {"criticality": "Medium", "sla": "Silver"} if {
	env in {"staging", "stage"}
} else := {"criticality": "Low", "sla": "Bronze"} if {
	env in {"development", "dev"}
}

default team := ""

team := value if {
	value := input.namespace.labels["kubernaut.ai/team"]
	is_string(value)
}

business := {
	"business_unit": team,
	"service_owner": "",
	"criticality": business_tiers.criticality,
	"sla": business_tiers.sla,
}
