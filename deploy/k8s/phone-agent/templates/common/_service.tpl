{{/*
A Service for one component. HTTP (metrics and health) is exposed unless "http" is false (the
edge's public SIP Service, whose HTTP goes on an internal Service of its own); callers add
their own ports (the edge: SIP, and its browser page when enabled).
Args: (dict "root" $ "name" "asr" "svc" .Values.asr "ports" (list ...) "spec" (dict ...)
"suffix" "-internal" "type" "ClusterIP" "http" true)
*/}}
{{- define "phone-agent.service" -}}
{{- $ctx := dict "root" .root "name" .name }}
{{- $svcValues := .svc.service | default dict }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "phone-agent.componentName" $ctx }}{{ .suffix | default "" }}
  labels:
    {{- include "phone-agent.componentLabels" $ctx | nindent 4 }}
  {{- if not .type }}
  {{- with $svcValues.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
spec:
  type: {{ .type | default $svcValues.type | default "ClusterIP" }}
  {{- with .spec }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  selector:
    {{- include "phone-agent.selectorLabels" $ctx | nindent 4 }}
  ports:
    {{- if ne (toString .http) "false" }}
    - name: http
      port: {{ .root.Values.http.port }}
      targetPort: http
      protocol: TCP
    {{- end }}
    {{- with .ports }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
