{{/*
Autoscaling for a model service (asr, llm, tts): a KEDA ScaledObject or an HPA,
chosen by autoscaling.mode. Scaling follows the sessions each stage owns
(pa_active_sessions, one session per call) and, with KEDA, the stage's bus backlog:
messages waiting in its handler queues (pa_queue_depth{queue="<stage>:<subject kind>"},
summed over calls and replicas). Live stage work travels on core NATS subjects to the
replica that claimed the call; deferrable work (the llm's post-call summaries) is a
JetStream work queue, and "work" names its stream and durable consumer for a
nats-jetstream trigger on the consumer's lag (the jobs waiting).
Args: (dict "root" $ "name" "asr" "svc" .Values.asr [ "work" (dict "stream" S "consumer" C "lag" N) ])
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
    {{- if $k.backlog.enabled }}
    - type: prometheus
      name: bus-backlog
      metadata:
        serverAddress: {{ $k.prometheus.serverAddress | quote }}
        query: {{ printf "sum(pa_queue_depth{namespace=%q,queue=~%q})" .root.Release.Namespace (printf "%s:.+" .name) | quote }}
        threshold: {{ $a.backlogPerReplica | quote }}
        ignoreNullValues: "true"
    {{- end }}
    {{- if and .work $k.jetstream.enabled }}
    - type: nats-jetstream
      name: work-queue
      metadata:
        natsServerMonitoringEndpoint: {{ include "phone-agent.natsMonitoringEndpoint" .root | quote }}
        account: {{ .root.Values.bus.account | quote }}
        stream: {{ .work.stream | quote }}
        consumer: {{ .work.consumer | quote }}
        lagThreshold: {{ .work.lag | quote }}
        useHttps: {{ $k.jetstream.useHttps | quote }}
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
