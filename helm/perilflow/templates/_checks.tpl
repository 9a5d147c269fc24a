{{/*
Check-values rules that a JSON schema cannot express: cross-key consistency between Perilflow's
values and the Airflow chart's. Each failure names the values to change. Included by
configmap-env.yaml, so `helm template`, `helm lint` and `helm install` all stop on them.
*/}}
{{- define "perilflow.checks" -}}
{{- $af := .Values.airflow | default dict -}}

{{- /* Airflow 3 has no hybrid executors; a comma list runs several executors at once. */ -}}
{{- $executor := $af.executor | default "CeleryExecutor" -}}
{{- range list "CeleryKubernetesExecutor" "LocalKubernetesExecutor" -}}
{{- if has . (splitList "," ($executor | replace " " "")) -}}
{{- fail (printf "airflow.executor: %s does not exist in Airflow 3; use a list such as \"CeleryExecutor,KubernetesExecutor\"" .) -}}
{{- end -}}
{{- end -}}

{{- /* The platform image must be the Perilflow image: the plugin, policy and DAGs live in it. */ -}}
{{- $img := (($af.images | default dict).airflow | default dict) -}}
{{- if or (not $img.repository) (eq (toString $img.repository) "apache/airflow") -}}
{{- fail "airflow.images.airflow.repository: set it to the Perilflow platform image (docker/platform.Dockerfile); apache/airflow has no Perilflow plugin, policy or DAGs" -}}
{{- end -}}

{{- /* Model-worker pods share nothing with the Airflow workers but object storage. */ -}}
{{- if and (eq .Values.settings.backend "kubernetes") (not (hasPrefix "s3://" .Values.storage.url)) -}}
{{- fail (printf "storage.url=%q: with settings.backend=kubernetes the storage must be s3:// (model-worker pods see no shared folder)" .Values.storage.url) -}}
{{- end -}}

{{- /* Keys in values, or your own Secret: not both. */ -}}
{{- if and .Values.storage.existingSecret (or .Values.storage.accessKeyId .Values.storage.secretAccessKey) -}}
{{- fail "storage: give either existingSecret or accessKeyId/secretAccessKey, not both" -}}
{{- end -}}
{{- if ne (empty .Values.storage.accessKeyId) (empty .Values.storage.secretAccessKey) -}}
{{- fail "storage: accessKeyId and secretAccessKey go together (or leave both empty for IRSA / workload identity)" -}}
{{- end -}}

{{- /* The API and the listener read PERILFLOW_DATABASE_URL from the same Secret the migration uses. */ -}}
{{- $dbEnv := dict -}}
{{- range ($af.secret | default list) -}}
{{- if eq .envName "PERILFLOW_DATABASE_URL" -}}{{- $dbEnv = . -}}{{- end -}}
{{- end -}}
{{- if not $dbEnv -}}
{{- fail (printf "airflow.secret: add {envName: PERILFLOW_DATABASE_URL, secretName: %s, secretKey: %s} so the API reaches the product DB" .Values.database.existingSecret .Values.database.secretKey) -}}
{{- end -}}
{{- if or (ne $dbEnv.secretName .Values.database.existingSecret) (ne ($dbEnv.secretKey | default "value") .Values.database.secretKey) -}}
{{- fail (printf "airflow.secret PERILFLOW_DATABASE_URL reads %s/%s but database.existingSecret/secretKey is %s/%s; make them the same" $dbEnv.secretName ($dbEnv.secretKey | default "value") .Values.database.existingSecret .Values.database.secretKey) -}}
{{- end -}}

{{- /* Every Airflow container gets PERILFLOW_* from perilflow-env, and the storage keys. */ -}}
{{- $envFrom := toString ($af.extraEnvFrom | default "") -}}
{{- if not (contains (include "perilflow.envConfigMap" .) $envFrom) -}}
{{- fail (printf "airflow.extraEnvFrom: add a configMapRef to %s (the PERILFLOW_* settings)" (include "perilflow.envConfigMap" .)) -}}
{{- end -}}
{{- $storageRef := contains (include "perilflow.storageSecret" .) $envFrom -}}
{{- if and (hasPrefix "s3://" .Values.storage.url) (not $storageRef) -}}
{{- fail (printf "airflow.extraEnvFrom: add a secretRef to %s (the storage keys of the Airflow side)" (include "perilflow.storageSecret" .)) -}}
{{- end -}}
{{- if and (not (hasPrefix "s3://" .Values.storage.url)) $storageRef -}}
{{- fail (printf "airflow.extraEnvFrom: remove the secretRef to %s; no storage Secret exists for %s" (include "perilflow.storageSecret" .) .Values.storage.url) -}}
{{- end -}}

{{- /* The network policy keeps model-worker pods away from the databases. */ -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $ports := .Values.networkPolicy.egressPorts | default list -}}
{{- with include "perilflow.storageEndpointPort" . -}}{{- $ports = append $ports (atoi .) -}}{{- end -}}
{{- $dbPorts := list -}}
{{- range (.Values.networkPolicy.databasePorts | default list) -}}{{- $dbPorts = append $dbPorts (toString (int .)) -}}{{- end -}}
{{- range $ports -}}
{{- if has (toString (int .)) $dbPorts -}}
{{- fail (printf "networkPolicy: port %v is a database port (networkPolicy.databasePorts); model-worker pods must not reach it" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
