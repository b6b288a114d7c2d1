{{- define "jm.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "jm.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "jm.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name the existing ServiceAccount to run as (serviceAccount.create is false); without one the operator's roles would go to the namespace's default ServiceAccount, so to every pod that names none" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* Leader election is on with more than one replica: the Lease they compete for. */ -}}
{{- define "jm.leaseName" -}}
{{- if gt (int .Values.replicas) 1 -}}{{ include "jm.fullname" . | trunc 56 | trimSuffix "-" }}-leader{{- end -}}
{{- end -}}

{{- define "jm.metricsName" -}}
{{ include "jm.fullname" . | trunc 55 | trimSuffix "-" }}-metrics
{{- end -}}

{{- define "jm.metricsLabels" -}}
{{ include "jm.selectorLabels" . }}
app.kubernetes.io/component: operator-metrics
{{- end -}}

