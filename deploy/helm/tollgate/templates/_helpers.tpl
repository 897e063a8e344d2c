{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, unless overridden or the release name already holds the chart name. */}}
{{- define "tollgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.controlPlane.fullname" -}}
{{- printf "%s-control-plane" (include "tollgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tollgate.dataPlane.fullname" -}}
{{- printf "%s-data-plane" (include "tollgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tollgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every object. */}}
{{- define "tollgate.labels" -}}
helm.sh/chart: {{ include "tollgate.chart" . }}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "control-plane"). */}}
{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image of one component; call with (dict "root" $ "tag" .Values.controlPlane.imageTag). */}}
{{- define "tollgate.image" -}}
{{- $tag := .tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .root.Values.image.repository $tag -}}
{{- end -}}

{{/* The Secret holding the database URL, the sync token and the secrets key. */}}
{{- define "tollgate.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if .Values.secrets.create -}}
{{- printf "%s-env" (include "tollgate.fullname" .) -}}
{{- else -}}
{{- fail "set secrets.existingSecret (a Secret with database-url, sync-token and secrets-key) or secrets.create=true with secrets.databaseUrl, secrets.syncToken and secrets.secretsKey" -}}
{{- end -}}
{{- end -}}

{{/* Data plane termination grace: preStop + drain + usage flush + margin, unless set. */}}
{{- define "tollgate.dataPlane.terminationGracePeriodSeconds" -}}
{{- if .Values.dataPlane.terminationGracePeriodSeconds -}}
{{- .Values.dataPlane.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (int .Values.dataPlane.preStopSleepSeconds) (mul 2 (int .Values.dataPlane.shutdownDrainTimeoutSecs)) 15 -}}
{{- end -}}
{{- end -}}

{{/* OTEL_* variables, when export is enabled. */}}
{{- define "tollgate.otelEnv" -}}
{{- if .Values.otel.enabled -}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "otel.endpoint is required when otel.enabled" .Values.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otel.protocol | quote }}
{{- with .Values.otel.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.headersSecret }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: headers
{{- end }}
{{- end }}
{{- end -}}
