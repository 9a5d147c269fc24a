{{/*
Names, labels and values shared by Perilflow's templates.

Fixed names (one Perilflow release per namespace): the operator mounts the Secret
`perilflow-storage` by that name (operators/model_step.py), and the Airflow chart's
`extraEnvFrom` (values.yaml) names the ConfigMap `perilflow-env`.
*/}}

{{- define "perilflow.fullname" -}}
{{- if contains "perilflow" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-perilflow" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "perilflow.envConfigMap" -}}perilflow-env{{- end -}}
{{- define "perilflow.storageSecret" -}}perilflow-storage{{- end -}}

{{/* Labels of every resource; call with (dict "ctx" $ "component" "name"). */}}
{{- define "perilflow.labels" -}}
{{- $ctx := .ctx -}}
app.kubernetes.io/name: perilflow
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: perilflow
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Namespace of the model-worker pods (PERILFLOW_NAMESPACE). */}}
{{- define "perilflow.workerNamespace" -}}
{{- .Values.workers.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Claim the model-worker pods mount (PERILFLOW_MODELS_PVC). */}}
{{- define "perilflow.modelsClaim" -}}
{{- .Values.models.existingClaim | default .Values.models.claimName -}}
{{- end -}}

{{/*
The Airflow chart's fullname, as its helper `airflow.fullname` computes it (chart 1.22):
fullnameOverride, else the release name if it contains the chart name, else <release>-airflow.
*/}}
{{- define "perilflow.airflowFullname" -}}
{{- $af := .Values.airflow | default dict -}}
{{- if $af.fullnameOverride -}}
{{- $af.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := $af.nameOverride | default "airflow" -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Service account of an Airflow component ("workers", "triggerer"), as the Airflow chart names it. */}}
{{- define "perilflow.airflowServiceAccount" -}}
{{- $ctx := index . 0 -}}
{{- $key := index . 1 -}}
{{- $suffix := index . 2 -}}
{{- $component := index ($ctx.Values.airflow | default dict) $key | default dict -}}
{{- $sa := $component.serviceAccount | default dict -}}
{{- $sa.name | default (printf "%s-%s" (include "perilflow.airflowFullname" $ctx) $suffix) -}}
{{- end -}}

{{/* The Airflow service accounts that may launch model-worker pods, as a list. */}}
{{- define "perilflow.podLaunchers" -}}
{{- if .Values.workers.airflowServiceAccounts -}}
{{- toYaml .Values.workers.airflowServiceAccounts -}}
{{- else -}}
- {{ include "perilflow.airflowServiceAccount" (list . "workers" "worker") }}
- {{ include "perilflow.airflowServiceAccount" (list . "triggerer" "triggerer") }}
{{- end -}}
{{- end -}}

{{/* PERILFLOW_API_URL: the Airflow api-server Service. */}}
{{- define "perilflow.apiUrl" -}}
{{- .Values.settings.apiUrl | default (printf "http://%s-api-server:8080" (include "perilflow.airflowFullname" .)) -}}
{{- end -}}

{{/* The platform image (Airflow + Perilflow), from the Airflow chart's values. */}}
{{- define "perilflow.platformImage" -}}
{{- $af := .Values.airflow | default dict -}}
{{- $img := (($af.images | default dict).airflow | default dict) -}}
{{- printf "%s:%s" ($img.repository | default "apache/airflow") ($img.tag | default $af.defaultAirflowTag | default "latest") -}}
{{- end -}}

{{/* The Airflow metadata DB Secret (key `connection`), as the Airflow chart names it. */}}
{{- define "perilflow.airflowMetadataSecret" -}}
{{- $data := (.Values.airflow | default dict).data | default dict -}}
{{- $data.metadataSecretName | default (printf "%s-airflow-metadata" .Release.Name) -}}
{{- end -}}

{{/* Pod and container security context of this chart's Jobs (the platform image's user is airflow, 50000). */}}
{{- define "perilflow.jobPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 50000
runAsGroup: 0
fsGroup: 0
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "perilflow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Port of the storage endpoint URL, or "" (https on AWS is covered by egressPorts). */}}
{{- define "perilflow.storageEndpointPort" -}}
{{- with .Values.storage.endpointUrl -}}
{{- $url := urlParse . -}}
{{- $hostport := splitList ":" $url.host -}}
{{- if gt (len $hostport) 1 -}}
{{- last $hostport -}}
{{- else if eq $url.scheme "http" -}}
80
{{- else -}}
443
{{- end -}}
{{- end -}}
{{- end -}}
