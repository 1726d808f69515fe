{{/* Chart name, overridable; DNS-1123 label, at most 63 characters. */}}
{{- define "dripml.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-wide name prefix: the release name, with the chart name unless it contains it. */}}
{{- define "dripml.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dripml.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of a component; call with (dict "ctx" $ "component" "NAME"). */}}
{{- define "dripml.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dripml.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The app.kubernetes.io labels every object carries; same arguments. */}}
{{- define "dripml.labels" -}}
helm.sh/chart: {{ include "dripml.chart" .ctx }}
{{ include "dripml.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: dripml
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{- define "dripml.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "dripml.fullname" .) }}
{{- end }}

{{- define "dripml.pipeline.serviceAccountName" -}}
{{- default (printf "%s-pipeline" (include "dripml.fullname" .)) .Values.pipeline.serviceAccount.name }}
{{- end }}

{{/* repository@digest when a digest is set, else repository:tag. */}}
{{- define "dripml.mlflow.image" -}}
{{- with .Values.mlflow.image }}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether MLflow keeps anything on the PersistentVolumeClaim. */}}
{{- define "dripml.mlflow.usesVolume" -}}
{{- if or (eq .Values.mlflow.backendStore.type "sqlite") (eq .Values.mlflow.artifacts.type "pvc") }}true{{ end }}
{{- end }}

{{/* Whether MLflow reads a Secret into its environment. */}}
{{- define "dripml.mlflow.usesSecretEnv" -}}
{{- if or (eq .Values.mlflow.backendStore.type "postgresql") (and (eq .Values.mlflow.artifacts.type "s3") .Values.mlflow.artifacts.s3.existingSecret) }}true{{ end }}
{{- end }}

{{/* The tracking URI inside the cluster. */}}
{{- define "dripml.mlflow.internalUri" -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "dripml.mlflow.fullname" .) .Release.Namespace .Values.clusterDomain .Values.mlflow.service.port }}
{{- end }}

{{/*
Host headers MLflow accepts (MLFLOW_SERVER_ALLOWED_HOSTS, fnmatch patterns): every in-cluster
name of the Service with any port, localhost for port-forwarding, the Ingress host, extras.
*/}}
{{- define "dripml.mlflow.allowedHosts" -}}
{{- $svc := include "dripml.mlflow.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" }}
{{- range $name := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns $.Values.clusterDomain) }}
{{- $hosts = append (append $hosts $name) (printf "%s:*" $name) }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.host }}
{{- $hosts = append (append $hosts .Values.ingress.host) (printf "%s:*" .Values.ingress.host) }}
{{- end }}
{{- concat $hosts .Values.mlflow.allowedHosts | uniq | join "," }}
{{- end }}

{{/* Names of the pull Secrets: the existing ones plus the one this chart creates. */}}
{{- define "dripml.imagePullSecrets" -}}
{{- $names := .Values.imagePullSecrets }}
{{- if .Values.imagePullSecret.create }}
{{- $names = append $names .Values.imagePullSecret.name }}
{{- end }}
{{- range $names | uniq }}
- name: {{ . }}
{{- end }}
{{- end }}

{{- define "dripml.ui.fullname" -}}
{{- printf "%s-ui" (include "dripml.fullname" .) }}
{{- end }}

{{/* The UI image: the trainer image the pipeline steps use; repository@digest when set. */}}
{{- define "dripml.ui.image" -}}
{{- with .Values.ui.image }}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether the UI reads a Secret into its environment (token, database URL). */}}
{{- define "dripml.ui.usesSecretEnv" -}}
{{- if or .Values.ui.auth.existingSecret .Values.ui.database.existingSecret }}true{{ end }}
{{- end }}

{{/* Whether the UI talks to the Kubernetes API and Kubeflow Pipelines (mounts tokens). */}}
{{- define "dripml.ui.onCluster" -}}
{{- if eq .Values.ui.deployTarget "kubernetes" }}true{{ end }}
{{- end }}

{{/*
Beyond loopback the UI refuses to start without a token or a trusted user header: fail at
render time instead of in a crash-looping pod.
*/}}
{{- define "dripml.ui.checkAuth" -}}
{{- if and .Values.ui.enabled (not (or .Values.ui.auth.existingSecret .Values.ui.auth.trustedUserHeader)) }}
{{- fail "ui.enabled=true needs authentication: set ui.auth.existingSecret (a Secret whose key ui.auth.tokenKey holds the token) or ui.auth.trustedUserHeader (the header an authenticating ingress sets, e.g. X-Forwarded-User); the UI listens beyond loopback and requires one" }}
{{- end }}
{{- end }}
