{{- define "tessera.fullname" -}}{{ .Release.Name }}-tessera{{- end -}}
{{- define "tessera.labels" -}}
app.kubernetes.io/name: tessera
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "tessera.secretName" -}}{{ .Values.existingSecret | default (printf "%s-secrets" (include "tessera.fullname" .)) }}{{- end -}}
{{- define "tessera.env" -}}
envFrom:
  - configMapRef: {name: {{ include "tessera.fullname" . }}-config}
  - secretRef: {name: {{ include "tessera.secretName" . }}}
{{- end -}}
