# A policy.rego as a kubernaut 2026 user writes it for the unified layout (ADR-060): one package,
# the rules kubernaut queries, the input document kubernaut sends. Nothing in it is specific to this
# controller (no business rule, no cluster rule), so it must classify here as it does there.
package signalprocessing

import rego.v1

# Environment: the namespace label, else a guess from the namespace name.
default environment := {"environment": "unknown", "source": "default"}

environment := {"environment": input.namespace.labels["kubernaut.ai/environment"], "source": "namespace-label"} if {
	input.namespace.labels["kubernaut.ai/environment"] != ""
} else := {"environment": "production", "source": "namespace-name"} if {
	startswith(input.namespace.name, "prod-")
}

# Severity: what the monitoring tools send, mapped onto kubernaut's five values.
default severity := "unknown"

severity := "critical" if lower(input.signal.severity) in {"critical", "sev1", "p0"}

severity := "high" if lower(input.signal.severity) in {"high", "sev2", "p2"}

severity := "warning" if lower(input.signal.severity) in {"warning", "medium", "sev3"}

severity := "info" if lower(input.signal.severity) in {"info", "low", "sev4"}

# Priority: environment x severity, using the two rules above.
default priority := {"priority": "P3", "policy_name": "default"}

env := lower(environment.environment)

priority := {"priority": "P0", "policy_name": "prod-critical"} if {
	env == "production"
	severity == "critical"
} else := {"priority": "P1", "policy_name": "prod-high-or-warning"} if {
	env == "production"
	severity in {"high", "warning"}
} else := {"priority": "P1", "policy_name": "critical-elsewhere"} if {
	severity == "critical"
} else := {"priority": "P2", "policy_name": "staging"} if {
	env == "staging"
}

# Custom labels: the team and the workload's app, as lists.
labels["team"] := [input.namespace.labels["kubernaut.ai/team"]] if input.namespace.labels["kubernaut.ai/team"]

labels["app"] := [input.workload.labels.app] if input.workload.labels.app

labels["kind"] := [lower(input.workload.kind)] if input.workload.kind != ""
