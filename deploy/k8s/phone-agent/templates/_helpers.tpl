{{/*
Names, labels and small computed values shared by every template.
*/}}

{{- define "phone-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "phone-agent.fullname" -}}
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

{{/* Name of one service's objects: <fullname>-<service>. Args: (dict "root" $ "name" "asr") */}}
{{- define "phone-agent.componentName" -}}
{{- printf "%s-%s" (include "phone-agent.fullname" .root | trunc 50 | trimSuffix "-") .name }}
{{- end }}

{{- define "phone-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "phone-agent.labels" -}}
helm.sh/chart: {{ include "phone-agent.chart" . }}
app.kubernetes.io/name: {{ include "phone-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: phone-agent
{{- end }}

{{/* Args: (dict "root" $ "name" "asr") */}}
{{- define "phone-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phone-agent.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Args: (dict "root" $ "name" "asr") */}}
{{- define "phone-agent.componentLabels" -}}
{{ include "phone-agent.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "phone-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "phone-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Copies of each JetStream stream and bucket: bus.streamReplicas, or (0) 3 on the bundled
NATS cluster and 1 on a single server. */}}
{{- define "phone-agent.streamReplicas" -}}
{{- $v := .Values -}}
{{- $cluster := dig "config" "cluster" "enabled" false $v.nats -}}
{{- if gt (int $v.bus.streamReplicas) 0 -}}
{{- $v.bus.streamReplicas -}}
{{- else if and $v.nats.enabled $cluster -}}
{{- min 3 (int (dig "config" "cluster" "replicas" 3 $v.nats)) -}}
{{- else -}}
1
{{- end -}}
{{- end }}

{{/* NATS client URL: the bundled subchart's Service, or bus.externalUrl. */}}
{{- define "phone-agent.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- $svc := include "phone-agent.natsServiceName" . }}
{{- printf "%s://%s.%s.svc:%d" (ternary "tls" "nats" .Values.bus.tls.enabled) $svc .Release.Namespace (int .Values.bus.clientPort) }}
{{- else if .Values.bus.externalUrl }}
{{- .Values.bus.externalUrl }}
{{- else }}
{{- fail "nats.enabled is false: set bus.externalUrl to your NATS server (nats://host:4222)" }}
{{- end }}
{{- end }}

{{/*
NATS monitoring endpoint (host:port) KEDA's nats-jetstream trigger reads consumer lag from: the
bundled subchart's headless Service on nats.config.monitor.port (in a NATS cluster KEDA asks the
consumer's leader as <pod>.<headless service>), or bus.externalMonitoringEndpoint.
*/}}
{{- define "phone-agent.natsMonitoringEndpoint" -}}
{{- if .Values.nats.enabled }}
{{- $svc := include "phone-agent.natsServiceName" . }}
{{- printf "%s-headless.%s.svc:%d" $svc .Release.Namespace (int .Values.nats.config.monitor.port) }}
{{- else if .Values.bus.externalMonitoringEndpoint }}
{{- .Values.bus.externalMonitoringEndpoint }}
{{- else }}
{{- fail "nats.enabled is false: set bus.externalMonitoringEndpoint (host:8222) for the KEDA nats-jetstream trigger, or autoscaling.keda.jetstream.enabled=false" }}
{{- end }}
{{- end }}

{{/* Service name the nats subchart creates (its own fullname rule). */}}
{{- define "phone-agent.natsServiceName" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "nats" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Image reference. Args: (dict "root" $ "name" "asr" "svc" .Values.asr) */}}
{{- define "phone-agent.image" -}}
{{- $img := .root.Values.image }}
{{- $repo := .svc.image.repository | default (printf "%s/%s-%s" $img.registry $img.repositoryPrefix .name) }}
{{- $tag := .svc.image.tag | default $img.tag }}
{{- if eq (include "phone-agent.onGpu" .svc) "true" }}
{{- $tag = printf "%s%s" $tag $img.gpuTagSuffix }}
{{- end }}
{{- if or (eq $tag "latest") (hasPrefix "latest-" $tag) }}
{{- fail (printf "%s: image tag %q is not pinned; use a version" .name $tag) }}
{{- end }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/* "true" when a model service runs on a GPU. Arg: the service's values. */}}
{{- define "phone-agent.onGpu" -}}
{{- if and (hasKey . "device") (eq (toString .device) "gpu") }}true{{ else }}false{{ end }}
{{- end }}

{{- define "phone-agent.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "phone-agent.fullname" .)) }}
{{- end }}

{{/* "true" when an agent file is supplied (inline or an existing ConfigMap); otherwise the bundled demo agent runs. */}}
{{- define "phone-agent.agentConfigured" -}}
{{- if or .Values.agent.existingConfigMap .Values.agent.file }}true{{ else }}false{{ end }}
{{- end }}

{{- define "phone-agent.agentConfigMapName" -}}
{{- .Values.agent.existingConfigMap | default (printf "%s-agent" (include "phone-agent.fullname" .)) }}
{{- end }}

{{/* Seconds the kubelet waits after SIGTERM: preStop sleep + drain timeout + margin. */}}
{{- define "phone-agent.gracePeriodSeconds" -}}
{{- add (int .Values.drain.preStopSleepSeconds) (int .Values.drain.timeoutSeconds) (int .Values.drain.extraGraceSeconds) }}
{{- end }}

{{/* "true" when replicas are managed by an autoscaler. Args: (dict "root" $ "svc" .Values.asr) */}}
{{- define "phone-agent.autoscaled" -}}
{{- if and (hasKey .svc "autoscaling") (ne .root.Values.autoscaling.mode "none") }}true{{ else }}false{{ end }}
{{- end }}

{{/*
The "approvals" volume: one key of the approvals Secret (signing-key.pem for policy, public-key.pem
for the edge), readable by the pod's group only. Fails when approvals.existingSecret is not set.
*/}}
{{- define "phone-agent.approvalKeys" -}}
{{- $secret := required "approvals.existingSecret is required: the Secret with policy's Ed25519 signing-key.pem and public-key.pem (see values.yaml)" .root.Values.approvals.existingSecret -}}
name: approvals
secret:
  secretName: {{ $secret }}
  defaultMode: 288
  items:
    - key: {{ .key }}
      path: {{ .key }}
{{- end }}
