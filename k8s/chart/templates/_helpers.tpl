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
Values the schema (values.schema.json) cannot judge, refused before anything is applied: every
app-python.validateValues.* check prints its message or nothing, and the chart fails once with
all of them (Bitnami's validateValues).
*/}}
{{- define "app-python.validateValues" -}}
{{- $messages := list (include "app-python.validateValues.immutableFields" .) | compact }}
{{- if $messages }}
{{- fail (printf "\n%s" (join "\n\n" $messages)) }}
{{- end }}
{{- end }}

{{/*
What the values would change on the live StatefulSet that the API server refuses to (its
immutable fields), and what to do instead. Nothing on install, or under `helm template`.
*/}}
{{- define "app-python.validateValues.immutableFields" -}}
{{- $fullname := include "app-python.fullname" . }}
{{- $live := lookup "apps/v1" "StatefulSet" .Release.Namespace $fullname }}
{{- if $live }}
{{- $claim := index $live.spec.volumeClaimTemplates 0 }}
{{- $changed := list }}
{{- if ne $live.spec.podManagementPolicy .Values.podManagementPolicy }}
{{- $changed = append $changed (printf "podManagementPolicy (%s -> %s)" $live.spec.podManagementPolicy .Values.podManagementPolicy) }}
{{- end }}
{{- if ne (include "app-python.bytes" $claim.spec.resources.requests.storage) (include "app-python.bytes" .Values.persistence.size) }}
{{- $changed = append $changed (printf "persistence.size (%s -> %s)" $claim.spec.resources.requests.storage .Values.persistence.size) }}
{{- end }}
{{- if ne (toJson $claim.spec.accessModes) (toJson .Values.persistence.accessModes) }}
{{- $changed = append $changed "persistence.accessModes" }}
{{- end }}
{{- if and .Values.persistence.storageClass (ne (default "" $claim.spec.storageClassName) (ternary "" .Values.persistence.storageClass (eq .Values.persistence.storageClass "-"))) }}
{{- $changed = append $changed "persistence.storageClass" }}
{{- end }}
{{- if $changed }}
{{- printf `%s cannot change on the live StatefulSet %s/%s: the API server refuses it (immutable field). Keep the old value, or delete the StatefulSet but not its pods and claims, then upgrade again; the new StatefulSet adopts the pods and their volumes:
  kubectl delete statefulset %s -n %s --cascade=orphan
  helm upgrade %s ... (same values)
A new persistence size or class applies to new claims only: existing claims keep theirs.` (join ", " $changed) .Release.Namespace $fullname $fullname .Release.Namespace .Release.Name }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The sha256 of templates' renders, for the annotations that roll the pods when one changes:
(list $ "a.yaml" "b.yaml"). The renders are joined as Helm joins documents, and an empty one
(an object turned off) is left out: the ConfigMaps, one file each, keep the checksum they had
as one file, and an upgrade to this chart rolls no pod.
*/}}
{{- define "app-python.checksum" -}}
{{- $root := first . }}
{{- $renders := list }}
{{- range rest . }}
{{- $render := include (print $root.Template.BasePath "/" .) $root }}
{{- if trim $render }}
{{- $renders = append $renders $render }}
{{- end }}
{{- end }}
{{- join "---" $renders | sha256sum }}
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

{{/*
Probes send Host: localhost; peers and clients use the Services' names, short or full
(<name>.<namespace>.svc.<cluster domain>; a leading dot admits a pod's name under the headless
one). Never a wildcard for every Service of the cluster. $(POD_NAMESPACE) is expanded by
Kubernetes in the container's environment (statefulset.yaml), so a kustomize render works in any
namespace.
*/}}
{{- define "app-python.allowedHosts" -}}
{{- $names := list }}
{{- range $service := list (include "app-python.fullname" .) (printf ".%s" (include "app-python.headless" .)) }}
{{- range $suffix := list "" ".$(POD_NAMESPACE)" ".$(POD_NAMESPACE).svc" (printf ".$(POD_NAMESPACE).svc.%s" $.Values.clusterDomain) }}
{{- $names = append $names (print $service $suffix) }}
{{- end }}
{{- end }}
{{- default (printf "localhost,127.0.0.1,%s" (join "," $names)) .Values.config.DJANGO_ALLOWED_HOSTS }}
{{- end }}

{{/* Litestream's own port for its metrics, on the pod's loopback only (the app relays them). */}}
{{- define "app-python.litestreamMetricsPort" -}}
9091
{{- end }}

{{/*
The Litestream containers' common part (the restore init container and the sidecar): the app's
volume and security context, the replica's credentials from the named Secret, and POD_NAME,
which the configuration's replica path names.
*/}}
{{- define "app-python.litestream" -}}
{{ include "app-python.litestreamImage" . }}
{{ include "app-python.litestreamCredentials" . }}
resources:
  {{- toYaml .Values.backup.resources | nindent 2 }}
securityContext:
  {{- include "app-python.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  - name: data
    mountPath: /app/data
  - name: litestream
    mountPath: /etc/litestream
    readOnly: true
{{- end }}

{{- define "app-python.litestreamImage" -}}
{{- $image := .Values.backup.image }}
image: {{ printf "%s:%s%s" $image.repository $image.tag (ternary (printf "@%s" $image.digest) "" (not (empty $image.digest))) }}
imagePullPolicy: {{ .Values.backup.image.pullPolicy }}
{{- end }}

{{/* POD_NAME names the replica's path in the configuration; the key pair from the Secret. */}}
{{- define "app-python.litestreamCredentials" -}}
{{- $credentials := .Values.backup.credentials -}}
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef:
        name: {{ $credentials.secretName }}
        key: {{ $credentials.accessKeyIdKey }}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $credentials.secretName }}
        key: {{ $credentials.secretAccessKeyKey }}
{{- end }}

{{/*
A pod's stop, step by step, in seconds: what its grace period must cover, in the order the
steps run. The app's first (gunicorn's graceful_timeout is gunicorn.conf.py's, which
tests/test_chart.py holds to it); with backup, the native sidecar stops only once the app has
exited.
*/}}
{{- define "app-python.stopSteps" -}}
{{- $steps := list (list "the preStop pause" (int .Values.preStopSleepSeconds)) }}
{{- $steps = append $steps (list "gunicorn's graceful shutdown (graceful_timeout)" 20) }}
{{- $steps = append $steps (list "gunicorn's master exiting after its workers" 5) }}
{{- if .Values.backup.enabled }}
{{- $steps = append $steps (list "Litestream's final sync (shutdown-sync-timeout)" (int (include "app-python.litestreamShutdownSync" .))) }}
{{- $steps = append $steps (list "the sidecar's report of the replica's position" 5) }}
{{- end }}
{{- toJson $steps }}
{{- end }}

{{/* Seconds Litestream's final sync may retry at its stop: its configuration's shutdown-sync-timeout. */}}
{{- define "app-python.litestreamShutdownSync" -}}
10
{{- end }}

{{/*
A NetworkPolicy peer from Bitnami's pair of values (list NSMatchLabels NSPodMatchLabels): the
namespaces with those labels (every namespace, if only pod labels are given) and, if given, only
their pods with those labels. Nothing when both are empty: an empty selector would select all.
*/}}
{{- define "app-python.peerSelector" -}}
{{- $namespaces := index . 0 }}
{{- $pods := index . 1 }}
{{- if or $namespaces $pods }}
- namespaceSelector:
    {{- if $namespaces }}
    matchLabels:
      {{- toYaml $namespaces | nindent 6 }}
    {{- else }} {}
    {{- end }}
  {{- with $pods }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
  {{- end }}
{{- end }}
{{- end }}
