{{/*
The chart name, cut at 63 characters (a DNS label).
*/}}
{{- define "ladder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified name (release + chart, unless the release name already holds the chart name), cut at
63 characters. The gateway's resources carry this name: its Service is what clients call.
*/}}
{{- define "ladder.fullname" -}}
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

{{/*
The Triton resources' name: the full name cut to leave room for "-triton" within 63 characters.
*/}}
{{- define "ladder.triton.fullname" -}}
{{- printf "%s-triton" (include "ladder.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "ladder.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "ctx" $ "component" "gateway").
*/}}
{{- define "ladder.labels" -}}
helm.sh/chart: {{ include "ladder.chart" .ctx }}
{{ include "ladder.selectorLabels" . }}
{{- if .ctx.Chart.AppVersion }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: ladder
{{- end }}

{{/*
Selector labels (stable across upgrades). Call with (dict "ctx" $ "component" "gateway").
*/}}
{{- define "ladder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ladder.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The service account the pods run as.
*/}}
{{- define "ladder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ladder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference; the tag defaults to the chart's appVersion, a digest (when set) pins it:
repository:tag@sha256:... Call with (dict "image" .Values.x.image "ctx" $).
*/}}
{{- define "ladder.image" -}}
{{- $ref := printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- if .image.digest }}
{{- $ref = printf "%s@%s" $ref .image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Where the gateway's ConfigMap is mounted, and the files in it.
*/}}
{{- define "ladder.configDir" -}}/etc/ladder{{- end }}

{{/*
The gateway's settings file (ladder/gateway/settings.py keys): the user's gateway.settings, plus the Triton
scorer wiring when Triton is enabled. host, port and pool are passed on the command line.
*/}}
{{- define "ladder.gateway.settings" -}}
{{- $settings := deepCopy (default (dict) .Values.gateway.settings) }}
{{- if .Values.triton.enabled }}
{{- $url := printf "%s.%s.svc:%d" (include "ladder.triton.fullname" .) .Release.Namespace (int .Values.triton.service.grpcPort) }}
{{- $client := merge (dict "url" $url) (deepCopy (default (dict) .Values.triton.client)) }}
{{- $_ := set $settings "scorer" "triton" }}
{{- $_ := set $settings "triton" $client }}
{{- end }}
{{- if $settings }}
{{- toYaml $settings }}
{{- else }}
{}
{{- end }}
{{- end }}

{{/*
Triton's OTLP/HTTP trace URL: the collector's endpoint + /v1/traces (the gateway's SDK appends the same).
*/}}
{{- define "ladder.triton.traceUrl" -}}
{{- printf "%s/v1/traces" (.Values.tracing.otlpEndpoint | trimSuffix "/") }}
{{- end }}

{{/*
The model repository Triton loads: the cpu image's own (/models), or as triton.modelRepository says. `ladder export` stages next to its output and renames into place, so
the init container writes into a folder inside the shared volume, not onto the mount point itself.
*/}}
{{- define "ladder.triton.repository" -}}
{{- if eq .Values.triton.flavour "cpu" }}
{{- print "/models" }}
{{- else if eq .Values.triton.modelRepository.source "export" }}
{{- printf "%s/repository" (.Values.triton.modelRepository.path | trimSuffix "/") }}
{{- else }}
{{- .Values.triton.modelRepository.path }}
{{- end }}
{{- end }}

{{/*
The retrain CronJob's name (and its ServiceAccount, Role, RoleBinding): cut so that the Jobs it creates
(name + 11 characters) stay within 63.
*/}}
{{- define "ladder.retrain.fullname" -}}
{{- printf "%s-retrain" (include "ladder.fullname" . | trunc 44 | trimSuffix "-") }}
{{- end }}

{{/* Where the gateway and its helpers find their credentials as files (LADDER_SECRETS_DIR). */}}
{{- define "ladder.secretsDir" -}}/var/run/secrets/ladder{{- end }}

{{/*
The gateway's credentials as projected Secret sources: each key becomes a file named like the variable it
replaces (LADDER_API_KEYS, LADDER_KEY_PROFILES, LADDER_REDIS_URL, LADDER_TRAFFIC_DB, the upstream keys).
*/}}
{{- define "ladder.gateway.secretSources" -}}
{{- $gw := .Values.gateway -}}
{{- if not $gw.auth.disabled }}
- secret:
    name: {{ $gw.auth.existingSecret }}
    items:
      - key: {{ $gw.auth.secretKey }}
        path: LADDER_API_KEYS
{{- end }}
{{- with $gw.auth.keyProfiles }}
{{- if .existingSecret }}
- secret:
    name: {{ .existingSecret }}
    items:
      - key: {{ .secretKey }}
        path: LADDER_KEY_PROFILES
{{- end }}
{{- end }}
{{- if $gw.redis.enabled }}
- secret:
    name: {{ $gw.redis.existingSecret }}
    items:
      - key: {{ $gw.redis.secretKey }}
        path: LADDER_REDIS_URL
{{- end }}
{{- if $gw.postgres.enabled }}
- secret:
    name: {{ $gw.postgres.existingSecret }}
    items:
      - key: {{ $gw.postgres.secretKey }}
        path: LADDER_TRAFFIC_DB
{{- end }}
{{- if and $gw.upstreamKeys.existingSecret $gw.upstreamKeys.env }}
- secret:
    name: {{ $gw.upstreamKeys.existingSecret }}
    optional: {{ $gw.upstreamKeys.optional }}
    items:
      {{- range $gw.upstreamKeys.env }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end }}
