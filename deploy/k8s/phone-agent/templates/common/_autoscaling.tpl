{{/*
Autoscaling for a model service (asr, llm, tts): a KEDA ScaledObject or an HPA,
chosen by autoscaling.mode. Scaling follows the sessions each stage owns
(pa_active_sessions, one session per call) and, optionally, a JetStream consumer backlog.
Args: (dict "root" $ "name" "asr" "svc" .Values.asr)
*/}}
{{- define "phone-agent.scaledObject" -}}
{{- $ctx := dict "root" .root "name" .name }}
{{- $k := .root.Values.autoscaling.keda }}
{{- $a := .svc.autoscaling }}
{{- $name := include "phone-agent.componentName" $ctx }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  labels:
    {{- include "phone-agent.componentLabels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  pollingInterval: {{ $k.pollingInterval }}
  cooldownPeriod: {{ $k.cooldownPeriod }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          # Scale down slowly: a replica drains its calls before it exits.
          stabilizationWindowSeconds: {{ .root.Values.autoscaling.scaleDownStabilizationSeconds }}
          policies:
            - type: Pods
              value: 1
              periodSeconds: 60
  triggers:
    - type: prometheus
      name: active-sessions
      metadata:
        serverAddress: {{ required "autoscaling.keda.prometheus.serverAddress is required with autoscaling.mode=keda" $k.prometheus.serverAddress | quote }}
        query: {{ printf "sum(pa_active_sessions{namespace=%q,stage=%q})" .root.Release.Namespace .name | quote }}
        threshold: {{ $a.sessionsPerReplica | quote }}
        ignoreNullValues: "true"
    {{- if and $k.jetstream.enabled $a.jetstreamConsumer }}
    - type: nats-jetstream
      name: jetstream-backlog
      metadata:
        natsServerMonitoringEndpoint: {{ include "phone-agent.natsMonitoringEndpoint" .root | quote }}
        account: {{ $k.jetstream.account | quote }}
        stream: {{ required "autoscaling.keda.jetstream.stream is required when the jetstream trigger is on" $k.jetstream.stream | quote }}
        consumer: {{ $a.jetstreamConsumer | quote }}
        lagThreshold: {{ $k.jetstream.lagThreshold | quote }}
    {{- end }}
{{- end }}

{{- define "phone-agent.natsMonitoringEndpoint" -}}
{{- if .Values.autoscaling.keda.jetstream.monitoringEndpoint }}
{{- .Values.autoscaling.keda.jetstream.monitoringEndpoint }}
{{- else if .Values.nats.enabled }}
{{- printf "%s-headless.%s.svc.cluster.local:8222" (include "phone-agent.natsServiceName" .) .Release.Namespace }}
{{- else }}
{{- fail "autoscaling.keda.jetstream.monitoringEndpoint is required when nats.enabled is false" }}
{{- end }}
{{- end }}

{{- define "phone-agent.hpa" -}}
{{- $ctx := dict "root" .root "name" .name }}
{{- $h := .root.Values.autoscaling.hpa }}
{{- $a := .svc.autoscaling }}
{{- $name := include "phone-agent.componentName" $ctx }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "phone-agent.componentLabels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ .root.Values.autoscaling.scaleDownStabilizationSeconds }}
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $h.cpuUtilization }}
    {{- if $h.sessionsMetric }}
    # Served by prometheus-adapter (or another custom metrics API) from pa_active_sessions.
    - type: Pods
      pods:
        metric:
          name: pa_active_sessions
          selector:
            matchLabels:
              stage: {{ .name }}
        target:
          type: AverageValue
          averageValue: {{ $a.sessionsPerReplica | quote }}
    {{- end }}
{{- end }}
