{{/*
PodDisruptionBudget and ServiceMonitor for one component.
Args: (dict "root" $ "name" "asr" "svc" .Values.asr)
*/}}
{{- define "phone-agent.pdb" -}}
{{- $ctx := dict "root" .root "name" .name }}
{{- $pdb := .svc.podDisruptionBudget }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "phone-agent.componentName" $ctx }}
  labels:
    {{- include "phone-agent.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "phone-agent.selectorLabels" $ctx | nindent 6 }}
{{- end }}

{{- define "phone-agent.serviceMonitor" -}}
{{- $ctx := dict "root" .root "name" .name }}
{{- $sm := .root.Values.metrics.serviceMonitor }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "phone-agent.componentName" $ctx }}
  labels:
    {{- include "phone-agent.componentLabels" $ctx | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "phone-agent.selectorLabels" $ctx | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
      # Keep the metrics' own "service" label (pa_service_ready) instead of the target's.
      honorLabels: true
{{- end }}
