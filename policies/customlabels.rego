# Custom labels (BR-SP-102): every namespace label `kubernaut.ai/<key>`
# becomes the custom label `<key>` with its value as a one-element list.
#
# Stripping the prefix is one-to-one, so the object comprehension cannot
# produce two values for one key. The controller sanitises the output
# (reserved prefixes, counts, lengths) and falls back to the team,
# cost-center and region labels when this yields nothing.
package signalprocessing.labels

prefix := "kubernaut.ai/"

labels := {key: [value] |
	some name, value in input.kubernetes.namespaceLabels
	startswith(name, prefix)
	key := trim_prefix(name, prefix)
	key != ""
	is_string(value)
}
