package signalprocessing.environment_test

import data.signalprocessing.environment

test_label_is_lower_cased if {
	environment.result == {"environment": "production", "source": "namespace-labels"} with input as {
		"namespace": {"name": "payments", "labels": {"kubernaut.ai/environment": "Production"}},
		"signal": {"labels": {}},
	}
}

test_any_label_value_is_accepted if {
	environment.result == {"environment": "uat", "source": "namespace-labels"} with input as {
		"namespace": {"name": "payments", "labels": {"kubernaut.ai/environment": "UAT"}},
		"signal": {"labels": {}},
	}
}

test_no_label_is_unknown if {
	environment.result == {"environment": "unknown", "source": "default"} with input as {
		"namespace": {"name": "prod-payments", "labels": {"team": "payments"}},
		"signal": {"labels": {}},
	}
}

test_empty_label_is_unknown if {
	environment.result == {"environment": "unknown", "source": "default"} with input as {
		"namespace": {"name": "payments", "labels": {"kubernaut.ai/environment": ""}},
		"signal": {"labels": {}},
	}
}

test_signal_labels_are_not_trusted if {
	environment.result == {"environment": "unknown", "source": "default"} with input as {
		"namespace": {"name": "payments", "labels": {}},
		"signal": {"labels": {"kubernaut.ai/environment": "production", "environment": "production"}},
	}
}

test_missing_namespace_is_unknown if {
	environment.result == {"environment": "unknown", "source": "default"} with input as {
		"namespace": {"name": "", "labels": {}},
		"signal": {"labels": {}},
	}
}
