{{/* Names, labels and the pieces every Weir pod shares. */}}

{{- define "weir.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "weir.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "weir.image" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- printf "%s/%s:%s" $root.Values.image.registry $name (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end -}}

{{- define "weir.controlPlaneUrl" -}}
{{- printf "%s://%s-control-plane:%v" (ternary "https" "http" .Values.tls.enabled) (include "weir.fullname" .) .Values.controlPlane.service.grpcPort -}}
{{- end -}}

{{/* Pod metadata shared by every Weir pod: observability labels and annotations. */}}
{{- define "weir.podMetadata" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $extraLabels := index . 2 -}}{{- $extraAnnotations := index . 3 -}}
labels:
  {{- include "weir.labels" $root | nindent 2 }}
  app.kubernetes.io/component: {{ $component }}
  {{- with $extraLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with $root.Values.observability.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $annotations := merge (dict) $extraAnnotations $root.Values.observability.podAnnotations }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "weir.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Environment of the control plane and its migration job. */}}
{{- define "weir.controlPlaneEnv" -}}
- name: WEIR_DATA_DIR
  value: /var/lib/weir
- name: WEIR_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "controlPlane.database.existingSecret is required: the control plane needs Postgres" .Values.controlPlane.database.existingSecret }}
      key: {{ .Values.controlPlane.database.urlKey }}
- name: WEIR_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.adminTokenKey }}
- name: WEIR_DATAPLANE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.dataplaneTokenKey }}
{{- if .Values.auth.groupTokensKey }}
- name: WEIR_GROUP_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.groupTokensKey }}
{{- end }}
{{- if .Values.controlPlane.secretsKey.existingSecret }}
- name: WEIR_SECRETS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.controlPlane.secretsKey.existingSecret }}
      key: {{ .Values.controlPlane.secretsKey.key }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: WEIR_TLS_CERT
  value: /etc/weir/tls/tls.crt
- name: WEIR_TLS_KEY
  value: /etc/weir/tls/tls.key
{{- end }}
{{- with .Values.observability.env }}
{{ toYaml . }}
{{- end }}
{{- with .Values.controlPlane.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The migration hook runs before the ConfigMap exists, so only the Deployment mounts it. */}}
{{- define "weir.controlPlaneVolumeMounts" -}}
- name: state
  mountPath: /var/lib/weir
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/weir/tls
  readOnly: true
{{- end }}
{{- with .Values.observability.volumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "weir.controlPlaneVolumes" -}}
- name: state
  emptyDir: {}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.secretName is required when tls.enabled" .Values.tls.secretName }}
{{- end }}
{{- with .Values.observability.volumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
