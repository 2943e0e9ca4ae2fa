{{- define "datastorage.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "datastorage.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "datastorage.labels" -}}
{{ include "datastorage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret holding a connection URL: the user's existing one, or the one this chart makes. */}}
{{- define "datastorage.secretName" -}}
{{- $connection := index .root.Values .which -}}
{{- default (printf "%s-connections" (include "datastorage.fullname" .root)) $connection.existingSecret.name -}}
{{- end -}}
{{- define "datastorage.secretKey" -}}
{{- $connection := index .root.Values .which -}}
{{- if $connection.existingSecret.name }}{{ $connection.existingSecret.key }}{{ else }}{{ .key }}{{ end -}}
{{- end -}}
