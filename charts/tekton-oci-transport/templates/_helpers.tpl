{{/*
Names. Every object is prefixed with the full name so two releases never clash;
the release name alone is used when it already contains the chart name, so the
default install ("tekton-oci-transport" in namespace "tekton-oci-transport")
gets exactly the names the webhook's flag defaults assume.
*/}}
{{- define "tot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tot.fullname" -}}
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

{{/* zot's objects; its Service name is part of the default registry address. */}}
{{- define "tot.zotName" -}}
{{- printf "%s-zot" (include "tot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret with the serving certificate (cert-manager's or the webhook's own). */}}
{{- define "tot.tlsSecret" -}}
{{- printf "%s-tls" (include "tot.fullname" .) }}
{{- end }}

{{- define "tot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "tot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tekton-oci-transport
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment selector is immutable). */}}
{{- define "tot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tot.webhookSelectorLabels" -}}
{{ include "tot.selectorLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Non-empty when zot runs as a scale-out cluster (zot.replicas > 1, s3 storage). */}}
{{- define "tot.zotCluster" -}}
{{- if gt (int .Values.zot.replicas) 1 }}true{{ end }}
{{- end }}

{{/* The headless Service that gives each cluster member a stable DNS name. */}}
{{- define "tot.zotClusterName" -}}
{{- printf "%s-cluster" (include "tot.zotName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tot.zotSelectorLabels" -}}
{{ include "tot.selectorLabels" . }}
app.kubernetes.io/component: registry
{{- end }}

{{- define "tot.testSelectorLabels" -}}
{{ include "tot.selectorLabels" . }}
app.kubernetes.io/component: test
{{- end }}

{{/*
image renders repository:tag, or repository@digest when a digest is set (a
digest pins the exact bytes; a tag can move). The tag defaults to appVersion.
Call with (dict "image" .Values.x.image "root" $).
*/}}
{{- define "tot.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The registry the steps use: registry.address, else the bundled zot Service. */}}
{{- define "tot.registry" -}}
{{- if .Values.registry.address }}
{{- .Values.registry.address }}
{{- else if .Values.zot.enabled }}
{{- printf "%s.%s.svc:%v" (include "tot.zotName" .) .Release.Namespace .Values.zot.port }}
{{- else }}
{{- fail "registry.address is required when zot.enabled is false" }}
{{- end }}
{{- end }}

{{/*
Restricted Pod Security Standard for every container: non-root, no privilege
escalation, no capabilities, RuntimeDefault seccomp, read-only root filesystem
(whatever a container writes goes to an explicit emptyDir).
*/}}
{{- define "tot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* imagePullSecrets, or nothing at all when there are none. */}}
{{- define "tot.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Registry credentials (registry.auth.mode). token: the registry token service
runs in the webhook pod; the registry trusts the bundle in its Secret.
*/}}
{{- define "tot.tokenMode" -}}
{{- if eq .Values.registry.auth.mode "token" }}true{{ end }}
{{- end }}

{{- define "tot.htpasswdMode" -}}
{{- if eq .Values.registry.auth.mode "htpasswd" }}true{{ end }}
{{- end }}

{{/* The token service's Secret: signing key, and bundle.pem for the registry. */}}
{{- define "tot.tokenSecret" -}}
{{- default (printf "%s-registry-token" (include "tot.fullname" .)) .Values.registry.auth.token.signingSecret }}
{{- end }}

{{/* The realm the registry names in its challenge: the webhook Service's token port. */}}
{{- define "tot.tokenRealm" -}}
{{- printf "%s://%s.%s.svc:%v/token" (ternary "https" "http" .Values.registry.auth.token.tls) (include "tot.fullname" .) .Release.Namespace .Values.registry.auth.token.port }}
{{- end }}

{{/* Checks that values fit together; the schema checks each value alone. */}}
{{- define "tot.validate" -}}
{{- if gt (int .Values.webhook.resolutionPickupTimeoutSeconds) (int .Values.webhook.resolutionTimeoutSeconds) }}
{{- fail "webhook.resolutionPickupTimeoutSeconds must be at most webhook.resolutionTimeoutSeconds" }}
{{- end }}
{{- if and (include "tot.htpasswdMode" .) .Values.zot.enabled (not .Values.registry.auth.htpasswdSecret) }}
{{- fail "registry.auth.htpasswdSecret is required when registry.auth.mode is htpasswd and zot.enabled" }}
{{- end }}
{{- if and (include "tot.htpasswdMode" .) .Values.test.enabled (not .Values.registry.auth.dockerConfigSecret) }}
{{- fail "registry.auth.dockerConfigSecret is required when registry.auth.mode is htpasswd and test.enabled (the test pod logs in with it)" }}
{{- end }}
{{- if include "tot.tokenMode" . }}
{{- $port := int .Values.registry.auth.token.port }}
{{- if has $port (list (int .Values.webhook.port) (int .Values.webhook.metricsPort) (int .Values.webhook.healthPort)) }}
{{- fail (printf "registry.auth.token.port %d is already a webhook port (webhook.port, metricsPort, healthPort)" $port) }}
{{- end }}
{{- end }}
{{- if and .Values.zot.enabled (eq .Values.zot.storage.type "s3") (or (not .Values.zot.storage.s3.bucket) (not .Values.zot.storage.s3.region)) }}
{{- fail "zot.storage.s3.bucket and zot.storage.s3.region are required when zot.storage.type is s3" }}
{{- end }}
{{- if and .Values.zot.enabled (gt (int .Values.zot.replicas) 1) (ne .Values.zot.storage.type "s3") }}
{{- fail (printf "zot.replicas is %d but zot.storage.type is %s: more than one zot pod needs zot.storage.type s3 (emptyDir and pvc storage belong to one pod; docs/registry-scale-out.md)" (int .Values.zot.replicas) .Values.zot.storage.type) }}
{{- end }}
{{- end }}
