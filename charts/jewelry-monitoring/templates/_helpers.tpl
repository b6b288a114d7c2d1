{{- /* The chart's name in names and labels: nameOverride replaces it. */ -}}
{{- define "jm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The prefix of every object's name: fullnameOverride, else the release name, followed
       by the chart's name unless the release name contains it. */ -}}
{{- define "jm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "jm.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* On every object of the release, with additionalLabels (whose schema refuses the keys
       the chart sets itself). */ -}}
{{- define "jm.labels" -}}
app.kubernetes.io/name: {{ include "jm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "jm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The operator's pods and Deployment: found by `jewelry-monitoring doctor` through these
       two, which neither nameOverride nor the release name changes. */ -}}
{{- define "jm.operatorLabels" -}}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: jewelry-monitoring
{{- end -}}

{{- /* An image of the chart: repository (with global.imageRegistry in place of its registry
       host), then @digest if given, else :tag. Call with (dict "image" <values> "tag"
       <default tag> "global" .Values.global). */ -}}
{{- define "jm.image" -}}
{{- $repository := .image.repository -}}
{{- with (.global | default dict).imageRegistry -}}
{{- $parts := splitList "/" $repository -}}
{{- $host := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $host) (contains ":" $host) (eq $host "localhost")) -}}
{{- $repository = join "/" (rest $parts) -}}
{{- end -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.image.tag | default .tag) -}}
{{- end -}}
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

{{- /* A NetworkPolicy peer from {podSelector, namespaceSelector}: an empty or missing
       namespaceSelector means every namespace. */ -}}
{{- define "jm.networkPeer" -}}
podSelector:
  matchLabels: {{- toYaml .podSelector | nindent 4 }}
namespaceSelector:
  {{- with .namespaceSelector }}
  matchLabels: {{- toYaml . | nindent 4 }}
  {{- else }} {}
  {{- end }}
{{- end -}}
