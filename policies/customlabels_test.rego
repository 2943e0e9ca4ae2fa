package signalprocessing.labels_test

import data.signalprocessing.labels

decide(ns_labels) := decision if {
	decision := labels.labels with input as {
		"kubernetes": {
			"namespace": "payments",
			"namespaceLabels": ns_labels,
			"namespaceAnnotations": {},
		},
		"signal": {"type": "prometheus-alert", "severity": "critical", "source": "prometheus"},
	}
}

test_prefixed_namespace_labels_become_custom_labels if {
	decide({
		"kubernaut.ai/team": "payments",
		"kubernaut.ai/region": "eu-west-1",
		"app": "checkout",
	}) == {"team": ["payments"], "region": ["eu-west-1"]}
}

test_no_prefixed_labels_is_empty if {
	decide({"app": "checkout"}) == {}
}

test_bare_prefix_is_ignored if {
	decide({"kubernaut.ai/": "x"}) == {}
}

test_missing_kubernetes_context_is_empty if {
	labels.labels == {} with input as {"signal": {"type": "", "severity": "info", "source": ""}}
}
