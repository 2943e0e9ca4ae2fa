package signalprocessing_test

import rego.v1

import data.signalprocessing

# The input document as the controller builds it; `doc` changes the severity and namespace labels.
base_input := {
	"namespace": {"name": "payments", "labels": {}, "annotations": {}},
	"signal": {"severity": "critical", "type": "prometheus-alert", "source": "prometheus", "labels": {}},
	"workload": {"kind": "Deployment", "name": "checkout", "labels": {}, "annotations": {}},
	"cluster": {"labels": {}},
}

doc(severity, ns_labels) := object.union(base_input, {
	"namespace": {"name": "payments", "labels": ns_labels, "annotations": {}},
	"signal": object.union(base_input.signal, {"severity": severity}),
})

# --- severity ---------------------------------------------------------------------------------------

test_severity_aliases if {
	every raw, expected in {
		"critical": "critical", "Critical": "critical", "SEV1": "critical", "sev1": "critical", "P0": "critical",
		"high": "high", "Sev2": "high", "p1": "high", "P2": "high",
		"warning": "warning", "medium": "warning", "sev3": "warning",
		"info": "info", "low": "info", "Sev4": "info",
	} {
		signalprocessing.severity == expected with input as doc(raw, {})
	}
}

test_unmapped_severity_is_unknown if {
	every raw in ["error", "p3", "sev5", "", "urgent"] {
		signalprocessing.severity == "unknown" with input as doc(raw, {})
	}
}

# --- environment ------------------------------------------------------------------------------------

test_environment_label_is_lower_cased if {
	signalprocessing.environment == {"environment": "production", "source": "namespace-labels"} with input as doc("critical", {"kubernaut.ai/environment": "Production"})
}

test_any_environment_label_value_is_accepted if {
	signalprocessing.environment == {"environment": "uat", "source": "namespace-labels"} with input as doc("critical", {"kubernaut.ai/environment": "UAT"})
}

test_no_or_empty_environment_label_is_unknown if {
	signalprocessing.environment == {"environment": "unknown", "source": "default"} with input as doc("critical", {"team": "payments"})
	signalprocessing.environment == {"environment": "unknown", "source": "default"} with input as doc("critical", {"kubernaut.ai/environment": ""})
}

test_signal_labels_are_not_trusted_for_the_environment if {
	alert := object.union(base_input, {"signal": object.union(
		base_input.signal,
		{"labels": {"kubernaut.ai/environment": "production", "environment": "production"}},
	)})
	signalprocessing.environment == {"environment": "unknown", "source": "default"} with input as alert
}

# --- priority ---------------------------------------------------------------------------------------

priority_of(severity, env, tier) := answer if {
	ns_labels := object.union({"kubernaut.ai/environment": env}, tier_label(tier))
	answer := signalprocessing.priority with input as doc(severity, ns_labels)
}

tier_label(tier) := {"tier": tier} if tier != ""

tier_label(tier) := {} if tier == ""

test_priority_matrix if {
	every row in [
		["critical", "production", "P0", "critical-production"],
		["critical", "staging", "P1", "critical-staging"],
		["high", "production", "P1", "high-production"],
		["high", "staging", "P1", "high-staging"],
		["warning", "production", "P1", "warning-production"],
		["warning", "staging", "P2", "warning-staging"],
		["info", "production", "P2", "info-production"],
		["critical", "development", "P2", "critical-development"],
		["critical", "test", "P2", "critical-test"],
		["high", "development", "P2", "high-development"],
		["high", "test", "P2", "high-test"],
		["warning", "development", "P3", "warning-development"],
		["warning", "test", "P3", "warning-test"],
		["info", "staging", "P3", "info-staging"],
		["info", "development", "P3", "info-development"],
		["info", "test", "P3", "info-test"],
	] {
		priority_of(row[0], row[1], "") == {"priority": row[2], "policy_name": row[3]}
	}
}

test_priority_uses_the_normalised_severity_and_environment if {
	priority_of("Sev1", "Production", "") == {"priority": "P0", "policy_name": "critical-production"}
	priority_of("P1", "staging", "") == {"priority": "P1", "policy_name": "high-staging"}
	priority_of("medium", "staging", "") == {"priority": "P2", "policy_name": "warning-staging"}
}

test_tier_label_escalates_critical_only if {
	priority_of("critical", "unknown", "critical") == {"priority": "P0", "policy_name": "critical-tier-label"}
	priority_of("critical", "unknown", "high") == {"priority": "P1", "policy_name": "critical-tier-high"}
	priority_of("warning", "unknown", "critical") == {"priority": "P2", "policy_name": "default-catch-all"}
}

# Each of these matches two rows; the most urgent row wins instead of a conflict error.
test_overlapping_rows_resolve_to_the_most_urgent if {
	priority_of("critical", "production", "critical") == {"priority": "P0", "policy_name": "critical-production"}
	priority_of("critical", "staging", "critical") == {"priority": "P0", "policy_name": "critical-tier-label"}
	priority_of("critical", "staging", "high") == {"priority": "P1", "policy_name": "critical-staging"}
	priority_of("critical", "development", "high") == {"priority": "P1", "policy_name": "critical-tier-high"}
}

test_unmatched_priority_is_the_default if {
	priority_of("warning", "unknown", "") == {"priority": "P2", "policy_name": "default-catch-all"}
	priority_of("error", "production", "") == {"priority": "P2", "policy_name": "default-catch-all"}
}

# --- labels -----------------------------------------------------------------------------------------

test_prefixed_namespace_labels_become_custom_labels if {
	signalprocessing.labels == {"team": ["payments"], "region": ["eu-west-1"]} with input as doc("critical", {
		"kubernaut.ai/team": "payments",
		"kubernaut.ai/region": "eu-west-1",
		"app": "checkout",
	})
}

test_no_prefixed_labels_and_the_bare_prefix_give_nothing if {
	signalprocessing.labels == {} with input as doc("critical", {"app": "checkout"})
	signalprocessing.labels == {} with input as doc("critical", {"kubernaut.ai/": "x"})
}

# --- cluster ----------------------------------------------------------------------------------------

test_no_cluster_rule_is_shipped if {
	not signalprocessing.cluster with input as base_input
}

# --- business ---------------------------------------------------------------------------------------

business_of(env, ns_labels) := answer if {
	labels := object.union({"kubernaut.ai/environment": env}, ns_labels)
	answer := signalprocessing.business with input as doc("critical", labels)
}

test_business_tiers_by_environment if {
	every row in [
		["production", "High", "Gold"], ["prod", "High", "Gold"],
		["staging", "Medium", "Silver"], ["stage", "Medium", "Silver"],
		["development", "Low", "Bronze"], ["dev", "Low", "Bronze"],
		["test", "Medium", "Bronze"], ["unknown", "Medium", "Bronze"],
	] {
		business_of(row[0], {}) == {"business_unit": "", "service_owner": "", "criticality": row[1], "sla": row[2]}
	}
}

test_business_environment_is_case_insensitive if {
	business_of("Production", {}).criticality == "High"
}

test_team_label_is_the_business_unit if {
	business_of("production", {"kubernaut.ai/team": "payments"}).business_unit == "payments"
}

test_no_environment_label_gets_the_business_defaults if {
	signalprocessing.business == {
		"business_unit": "", "service_owner": "", "criticality": "Medium", "sla": "Bronze",
	} with input as base_input
}
