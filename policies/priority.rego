# Priority assignment (BR-SP-070): severity x environment, escalated by the
# namespace label `tier`.
#
# The rows are one `else` chain ordered from the highest priority down, so
# when several rows match (critical + production + tier=critical, critical +
# staging + tier=high, ...) the first, most urgent row wins instead of
# the conflict error that separate complete rules would raise.
package signalprocessing.priority

default result := {"priority": "P2", "policy_name": "default-catch-all"}

severity := lower(input.signal.severity)

environment := lower(input.environment)

tier := input.namespace_labels.tier

result := {"priority": "P0", "policy_name": "critical-production"} if {
	severity == "critical"
	environment == "production"
} else := {"priority": "P0", "policy_name": "critical-tier-label"} if {
	severity == "critical"
	tier == "critical"
} else := {"priority": "P1", "policy_name": "critical-staging"} if {
	severity == "critical"
	environment == "staging"
} else := {"priority": "P1", "policy_name": "warning-production"} if {
	severity == "warning"
	environment == "production"
} else := {"priority": "P1", "policy_name": "critical-tier-high"} if {
	severity == "critical"
	tier == "high"
} else := {"priority": "P2", "policy_name": "warning-staging"} if {
	severity == "warning"
	environment == "staging"
} else := {"priority": "P2", "policy_name": "info-production"} if {
	severity == "info"
	environment == "production"
} else := {"priority": "P2", "policy_name": "critical-development"} if {
	severity == "critical"
	environment == "development"
} else := {"priority": "P2", "policy_name": "critical-test"} if {
	severity == "critical"
	environment == "test"
} else := {"priority": "P3", "policy_name": "warning-development"} if {
	severity == "warning"
	environment == "development"
} else := {"priority": "P3", "policy_name": "warning-test"} if {
	severity == "warning"
	environment == "test"
} else := {"priority": "P3", "policy_name": "info-staging"} if {
	severity == "info"
	environment == "staging"
} else := {"priority": "P3", "policy_name": "info-development"} if {
	severity == "info"
	environment == "development"
} else := {"priority": "P3", "policy_name": "info-test"} if {
	severity == "info"
	environment == "test"
}
