{{/* The chart's name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "app-python.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
The StatefulSet's name, which every object shares: the release name when it contains the
chart's name (release app-python: the kustomize base's names), else <release>-<name>. 52
characters at most: the controller-revision-hash label value is the StatefulSet's name plus 11.
*/}}
{{- define "app-python.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The governing Service: a DNS name per pod, <fullname>-N.<fullname>-headless. */}}
{{- define "app-python.headless" -}}
{{- printf "%s-headless" (include "app-python.fullname" .) }}
{{- end }}

{{/* Selectors are immutable on a StatefulSet: only these two stable labels, never a version. */}}
{{- define "app-python.selectorLabels" -}}
app.kubernetes.io/name: {{ include "app-python.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "app-python.labels" -}}
{{ include "app-python.selectorLabels" . }}
app.kubernetes.io/component: web
app.kubernetes.io/part-of: app-python
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "app-python.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "app-python.secretName" -}}
{{- default (include "app-python.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* The pods' restricted security context: shared by the app and the helm test pod. */}}
{{- define "app-python.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
# The volume is made group-writable for 10001; only when its root is not already.
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "app-python.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
A storage quantity in bytes, to compare the values' size with the live claim template's: the
API server answers quantities in canonical form (1024Mi comes back as 1Gi).
*/}}
{{- define "app-python.bytes" -}}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 }}
{{- $text := toString . }}
{{- mulf (regexReplaceAll "[^0-9.]+$" $text "" | float64) (get $units (regexReplaceAll "^[0-9.]+" $text "")) }}
{{- end }}

{{/* Probes send Host: localhost; peers and clients use the Services' names. */}}
{{- define "app-python.allowedHosts" -}}
{{- $fullname := include "app-python.fullname" . }}
{{- default (printf "localhost,127.0.0.1,%s,.%s,.svc,.svc.cluster.local" $fullname (include "app-python.headless" .)) .Values.config.DJANGO_ALLOWED_HOSTS }}
{{- end }}

{{/*
The Litestream containers' common part (the restore init container and the sidecar): the app's
volume and security context, the replica's credentials from the named Secret, and POD_NAME,
which the configuration's replica path names.
*/}}
{{- define "app-python.litestream" -}}
{{- $backup := .Values.backup -}}
image: {{ printf "%s:%s" $backup.image.repository $backup.image.tag }}
imagePullPolicy: {{ $backup.image.pullPolicy }}
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef:
        name: {{ $backup.credentials.secretName }}
        key: {{ $backup.credentials.accessKeyIdKey }}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $backup.credentials.secretName }}
        key: {{ $backup.credentials.secretAccessKeyKey }}
resources:
  {{- toYaml $backup.resources | nindent 2 }}
securityContext:
  {{- include "app-python.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  - name: data
    mountPath: /app/data
  - name: litestream
    mountPath: /etc/litestream
    readOnly: true
{{- end }}
