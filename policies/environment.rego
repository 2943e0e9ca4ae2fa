# Environment classification (BR-SP-051).
#
# The namespace label `kubernaut.ai/environment` is the only trusted source:
# signal labels come from the alert sender and are deliberately ignored.
# Without the label the environment is `unknown`, so the result is never
# empty. One rule plus a default cannot produce two values.
package signalprocessing.environment

default result := {"environment": "unknown", "source": "default"}

result := {"environment": lower(value), "source": "namespace-labels"} if {
	value := input.namespace.labels["kubernaut.ai/environment"]
	is_string(value)
	value != ""
}
