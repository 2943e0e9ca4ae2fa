{{/* The release's full name: "<release>-signalprocessing", or the release name if it already says so. */}}
{{- define "signalprocessing.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "signalprocessing.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "signalprocessing.labels" -}}
{{ include "signalprocessing.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "signalprocessing.serviceAccountName" -}}
{{- default (include "signalprocessing.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Cluster-scoped objects carry the namespace too: two releases of the same name in two namespaces must not collide. */}}
{{- define "signalprocessing.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "signalprocessing.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "signalprocessing.peeringName" -}}
{{- default (include "signalprocessing.clusterName" .) .Values.peering.name -}}
{{- end -}}

{{/* Sharding: every replica works, each on its shards; the replicas meet through Leases, not peering. */}}
{{- define "signalprocessing.sharded" -}}
{{- if (.Values.sharding).enabled }}true{{ end -}}
{{- end -}}

{{/* kopf peering: one replica works, the others stand by. Only with several replicas and no sharding. */}}
{{- define "signalprocessing.peered" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "signalprocessing.sharded" .)) }}true{{ end -}}
{{- end -}}
