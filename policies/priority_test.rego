package signalprocessing.priority_test

import data.signalprocessing.priority

decide(severity, env, tier) := decision if {
	decision := priority.result with input as {
		"signal": {"severity": severity, "source": "prometheus"},
		"environment": env,
		"namespace_labels": {"tier": tier},
		"deployment_labels": {},
	}
}

test_matrix if {
	decide("critical", "production", "") == {"priority": "P0", "policy_name": "critical-production"}
	decide("critical", "staging", "") == {"priority": "P1", "policy_name": "critical-staging"}
	decide("warning", "production", "") == {"priority": "P1", "policy_name": "warning-production"}
	decide("warning", "staging", "") == {"priority": "P2", "policy_name": "warning-staging"}
	decide("info", "production", "") == {"priority": "P2", "policy_name": "info-production"}
	decide("critical", "development", "") == {"priority": "P2", "policy_name": "critical-development"}
	decide("critical", "test", "") == {"priority": "P2", "policy_name": "critical-test"}
	decide("warning", "development", "") == {"priority": "P3", "policy_name": "warning-development"}
	decide("warning", "test", "") == {"priority": "P3", "policy_name": "warning-test"}
	decide("info", "staging", "") == {"priority": "P3", "policy_name": "info-staging"}
	decide("info", "development", "") == {"priority": "P3", "policy_name": "info-development"}
	decide("info", "test", "") == {"priority": "P3", "policy_name": "info-test"}
}

test_severity_and_environment_are_case_insensitive if {
	decide("CRITICAL", "Production", "") == {"priority": "P0", "policy_name": "critical-production"}
}

test_tier_label_escalates_critical if {
	decide("critical", "unknown", "critical") == {"priority": "P0", "policy_name": "critical-tier-label"}
	decide("critical", "unknown", "high") == {"priority": "P1", "policy_name": "critical-tier-high"}
}

test_tier_label_does_not_escalate_warning if {
	decide("warning", "unknown", "critical") == {"priority": "P2", "policy_name": "default-catch-all"}
}

# Each of these matched two rows of the original policy and failed with
# eval_conflict_error; here the most urgent row wins.
test_former_conflicts_resolve_to_the_most_urgent_row if {
	decide("critical", "production", "critical") == {"priority": "P0", "policy_name": "critical-production"}
	decide("critical", "production", "high") == {"priority": "P0", "policy_name": "critical-production"}
	decide("critical", "staging", "critical") == {"priority": "P0", "policy_name": "critical-tier-label"}
	decide("critical", "staging", "high") == {"priority": "P1", "policy_name": "critical-staging"}
	decide("critical", "development", "critical") == {"priority": "P0", "policy_name": "critical-tier-label"}
	decide("critical", "development", "high") == {"priority": "P1", "policy_name": "critical-tier-high"}
	decide("critical", "test", "critical") == {"priority": "P0", "policy_name": "critical-tier-label"}
	decide("critical", "test", "high") == {"priority": "P1", "policy_name": "critical-tier-high"}
}

test_unmatched_is_default if {
	decide("warning", "unknown", "") == {"priority": "P2", "policy_name": "default-catch-all"}
	decide("info", "", "") == {"priority": "P2", "policy_name": "default-catch-all"}
}

test_missing_tier_label if {
	priority.result == {"priority": "P0", "policy_name": "critical-tier-label"} with input as {
		"signal": {"severity": "critical", "source": "prometheus"},
		"environment": "unknown",
		"namespace_labels": {"tier": "critical"},
		"deployment_labels": {"tier": "low"},
	}
	priority.result == {"priority": "P2", "policy_name": "default-catch-all"} with input as {
		"signal": {"severity": "critical", "source": "prometheus"},
		"environment": "unknown",
		"namespace_labels": {},
		"deployment_labels": {},
	}
}
