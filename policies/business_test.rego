package signalprocessing.business_test

import data.signalprocessing.business

decide(env, ns_labels) := decision if {
	decision := business.result with input as {
		"environment": env,
		"namespace": {"name": "payments", "labels": ns_labels},
		"deployment": {"labels": {}},
	}
}

test_tiers_by_environment if {
	decide("production", {}) == {"business_unit": "", "service_owner": "", "criticality": "high", "sla": "gold"}
	decide("prod", {}) == {"business_unit": "", "service_owner": "", "criticality": "high", "sla": "gold"}
	decide("staging", {}) == {"business_unit": "", "service_owner": "", "criticality": "medium", "sla": "silver"}
	decide("stage", {}) == {"business_unit": "", "service_owner": "", "criticality": "medium", "sla": "silver"}
	decide("development", {}) == {"business_unit": "", "service_owner": "", "criticality": "low", "sla": "bronze"}
	decide("dev", {}) == {"business_unit": "", "service_owner": "", "criticality": "low", "sla": "bronze"}
}

test_other_environments_get_the_defaults if {
	decide("test", {}) == {"business_unit": "", "service_owner": "", "criticality": "medium", "sla": "bronze"}
	decide("unknown", {}) == {"business_unit": "", "service_owner": "", "criticality": "medium", "sla": "bronze"}
	decide("", {}) == {"business_unit": "", "service_owner": "", "criticality": "medium", "sla": "bronze"}
}

test_environment_is_case_insensitive if {
	decide("Production", {}).criticality == "high"
}

test_team_label_is_the_business_unit if {
	decide("production", {"kubernaut.ai/team": "payments"}).business_unit == "payments"
}

test_missing_environment_key if {
	business.result == {"business_unit": "", "service_owner": "", "criticality": "medium", "sla": "bronze"} with input as {
		"namespace": {"name": "payments", "labels": {}},
		"deployment": {"labels": {}},
	}
}
