{{/*
One Deployment for a service. Every service has the same shape: HTTP port with
/metrics, /healthz and /readyz; distinct startup, readiness and liveness probes;
a preStop pause followed by the service's own SIGTERM drain, with a grace period
that covers both.
Args: (dict "root" $ "name" "asr" "svc" .Values.asr "ports" (list ...) "env" (list ...))
*/}}
{{- define "phone-agent.deployment" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $svc := .svc }}
{{- $gpu := eq (include "phone-agent.onGpu" $svc) "true" }}
{{- $agent := eq (include "phone-agent.agentConfigured" $root) "true" }}
{{- $ctx := dict "root" $root "name" .name }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "phone-agent.componentName" $ctx }}
  labels:
    {{- include "phone-agent.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if ne (include "phone-agent.autoscaled" (dict "root" $root "svc" $svc)) "true" }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- if .recreate }}
    # A ReadWriteOnce volume can be attached to one pod at a time.
    type: Recreate
    {{- else }}
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
    {{- end }}
  selector:
    matchLabels:
      {{- include "phone-agent.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "phone-agent.selectorLabels" $ctx | nindent 8 }}
      annotations:
        checksum/agent: {{ include (print $root.Template.BasePath "/common/configmap-agent.yaml") $root | sha256sum }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "phone-agent.serviceAccountName" $root }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ include "phone-agent.gracePeriodSeconds" $root }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .hostNetwork }}
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- $nodeSelector := $svc.nodeSelector }}
      {{- $tolerations := $svc.tolerations }}
      {{- if $gpu }}
      {{- $nodeSelector = merge (deepCopy $svc.gpu.nodeSelector) $svc.nodeSelector }}
      {{- $tolerations = concat $svc.tolerations $svc.gpu.tolerations }}
      {{- end }}
      {{- with $nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .affinity }}
      affinity:
        {{- toYaml .affinity | nindent 8 }}
      {{- else if $svc.affinity }}
      affinity:
        {{- toYaml $svc.affinity | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "phone-agent.image" (dict "root" $root "name" .name "svc" $svc) }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: ["serve", {{ .name | quote }}]
          ports:
            - name: http
              containerPort: {{ $v.http.port }}
              protocol: TCP
            {{- with .ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            {{- include "phone-agent.commonEnv" (dict "root" $root "name" .name "svc" $svc) | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $svc.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
            failureThreshold: {{ div (add $svc.startupTimeoutSeconds $v.probes.startup.periodSeconds -1) $v.probes.startup.periodSeconds }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ $v.drain.preStopSleepSeconds | toString | quote }}]
          resources:
            {{- if $gpu }}
            {{- $res := deepCopy $svc.gpu.resources }}
            {{- $limits := merge (dict $svc.gpu.resourceName ($svc.gpu.count | toString)) ($res.limits | default dict) }}
            {{- $_ := set $res "limits" $limits }}
            {{- toYaml $res | nindent 12 }}
            {{- else }}
            {{- toYaml $svc.resources | nindent 12 }}
            {{- end }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            {{- if $agent }}
            - name: agent
              mountPath: /etc/phone-agent
              readOnly: true
            {{- end }}
            - name: tmp
              mountPath: /tmp
            {{- if $gpu }}
            - name: shm
              mountPath: /dev/shm
            {{- end }}
            {{- if $v.models.volume.enabled }}
            - name: models
              mountPath: {{ $v.models.volume.mountPath }}
              readOnly: true
            {{- end }}
            {{- if $v.bus.auth.enabled }}
            - name: bus-password
              mountPath: /etc/phone-agent/bus
              readOnly: true
            {{- end }}
            {{- if $v.bus.tls.enabled }}
            - name: bus-ca
              mountPath: /etc/phone-agent/bus-ca
              readOnly: true
            {{- end }}
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- if $v.bus.auth.enabled }}
        # this service's own bus password, no other's
        - name: bus-password
          secret:
            secretName: {{ $v.bus.auth.secretName }}
            defaultMode: 0400
            items:
              - key: {{ .name }}
                path: password
        {{- end }}
        {{- if $v.bus.tls.enabled }}
        - name: bus-ca
          secret:
            secretName: {{ required "bus.tls.caSecretName is required when bus.tls.enabled" $v.bus.tls.caSecretName }}
            items:
              - key: ca.crt
                path: ca.crt
        {{- end }}
        {{- if $agent }}
        - name: agent
          configMap:
            name: {{ include "phone-agent.agentConfigMapName" $root }}
            items:
              - key: agent.yaml
                path: agent.yaml
        {{- end }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpSizeLimit }}
        {{- if $gpu }}
        # PyTorch and vLLM share tensors through /dev/shm; the runtime default (64Mi) is too small.
        - name: shm
          emptyDir:
            medium: Memory
            sizeLimit: {{ $svc.gpu.shmSize }}
        {{- end }}
        {{- if $v.models.volume.enabled }}
        - name: models
          persistentVolumeClaim:
            claimName: {{ required "models.volume.existingClaim is required when models.volume.enabled" $v.models.volume.existingClaim }}
            readOnly: true
        {{- end }}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}

{{/* Environment every service reads. Args: (dict "root" $ "name" "asr" "svc" .Values.asr) */}}
{{- define "phone-agent.commonEnv" -}}
{{- $v := .root.Values -}}
- name: PA_NATS_URL
  value: {{ include "phone-agent.natsUrl" .root | quote }}
{{- if $v.bus.auth.enabled }}
- name: PA_NATS_USER
  value: {{ .name | quote }}
- name: PA_NATS_PASSWORD_FILE
  value: /etc/phone-agent/bus/password
{{- end }}
{{- if $v.bus.tls.enabled }}
- name: PA_NATS_TLS_CA_FILE
  value: /etc/phone-agent/bus-ca/ca.crt
{{- end }}
- name: PA_NATS_STREAM_REPLICAS
  value: {{ include "phone-agent.streamReplicas" .root | quote }}
- name: PA_SERVICE_REPLICA_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PA_HTTP_HOST
  value: "0.0.0.0"
- name: PA_HTTP_PORT
  value: {{ $v.http.port | quote }}
- name: PA_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: PA_DRAIN_TIMEOUT_S
  value: {{ $v.drain.timeoutSeconds | quote }}
{{- if eq (include "phone-agent.agentConfigured" .root) "true" }}
- name: PA_AGENT_FILE
  value: /etc/phone-agent/agent.yaml
{{- end }}
{{- if $v.models.volume.enabled }}
- name: PA_MODEL_DIR
  value: {{ $v.models.volume.mountPath | quote }}
{{- end }}
{{- if $v.otlp.endpoint }}
- name: PA_OTLP_ENDPOINT
  value: {{ $v.otlp.endpoint | quote }}
{{- end }}
{{- if and (hasKey .svc "engine") .svc.engine }}
- name: {{ printf "PA_%s_ENGINE" (upper .name) }}
  value: {{ .svc.engine | quote }}
{{- end }}
{{- if eq .name "tts" }}
{{- /* pre-rendered greeting and notices: written at start-up, kept across container restarts */}}
- name: PA_TTS_PROMPT_DIR
  value: /tmp/tts-prompts
{{- end }}
{{- end }}
