{{/*
A Service for one component. HTTP (metrics and health) is always exposed; callers add
their own ports (the edge: SIP, and its browser page when enabled).
Args: (dict "root" $ "name" "asr" "svc" .Values.asr "ports" (list ...) "spec" (dict ...))
*/}}
{{- define "phone-agent.service" -}}
{{- $ctx := dict "root" .root "name" .name }}
{{- $svcValues := .svc.service | default dict }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "phone-agent.componentName" $ctx }}
  labels:
    {{- include "phone-agent.componentLabels" $ctx | nindent 4 }}
  {{- with $svcValues.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $svcValues.type | default "ClusterIP" }}
  {{- with .spec }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  selector:
    {{- include "phone-agent.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ .root.Values.http.port }}
      targetPort: http
      protocol: TCP
    {{- with .ports }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
