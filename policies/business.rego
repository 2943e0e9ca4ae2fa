# Business classification (BR-SP-002, BR-SP-080, BR-SP-081).
#
# The controller applies the `kubernaut.ai/business-unit`, `.../service-owner`,
# `.../criticality` and `.../sla-tier` labels itself, before this policy, so
# no policy edit can override what a team declared on its namespace or
# deployment. This policy decides the rest: criticality and SLA by
# environment, and the business unit from the namespace's `kubernaut.ai/team`
# label. An empty string means "no opinion" and lets the controller's
# default (`unknown`) apply.
package signalprocessing.business

environment := lower(object.get(input, "environment", ""))

default tiers := {"criticality": "medium", "sla": "bronze"}

tiers := {"criticality": "high", "sla": "gold"} if {
	environment in {"production", "prod"}
} else := {"criticality": "medium", "sla": "silver"} if {
	environment in {"staging", "stage"}
} else := {"criticality": "low", "sla": "bronze"} if {
	environment in {"development", "dev"}
}

default team := ""

team := value if {
	value := input.namespace.labels["kubernaut.ai/team"]
	is_string(value)
}

result := {
	"business_unit": team,
	"service_owner": "",
	"criticality": tiers.criticality,
	"sla": tiers.sla,
}
