{{/* Chart name, overridable; DNS-1123 label, at most 63 characters. */}}
{{- define "dripml-endpoint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the objects: the release name, with the chart name unless it contains it. */}}
{{- define "dripml-endpoint.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dripml-endpoint.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: immutable on a Deployment, so only name and instance. */}}
{{- define "dripml-endpoint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dripml-endpoint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The app.kubernetes.io labels every object carries. */}}
{{- define "dripml-endpoint.labels" -}}
helm.sh/chart: {{ include "dripml-endpoint.chart" . }}
{{ include "dripml-endpoint.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: model-endpoint
app.kubernetes.io/part-of: dripml
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dripml-endpoint.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dripml-endpoint.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image by digest: repository@sha256:<hex>. */}}
{{- define "dripml-endpoint.image" -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- end }}
