{{/* The chart's name, or nameOverride. */}}
{{- define "coldfront.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object's name: the release name when it already contains the chart's (so a
release named `coldfront` gives `coldfront`, `coldfront-config`, `coldfront-peers`, the names of
deploy/base), else <release>-<chart>. Kept to 55 characters, so "-config" and "-peers" fit 63.
*/}}
{{- define "coldfront.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "coldfront.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* What the Services, the PDB and the spread constraint select: the proxy pods of this release. */}}
{{- define "coldfront.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coldfront.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{/* Labels of every object but the peers Service (component: peers, so the ServiceMonitor skips it). */}}
{{- define "coldfront.labels" -}}
{{ include "coldfront.selectorLabels" . }}
{{ include "coldfront.commonLabels" . }}
{{- end -}}

{{- define "coldfront.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coldfront
{{- end -}}

{{- define "coldfront.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "coldfront.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: the ServiceAccount to run as, when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* 2 coldfront replicas, 3 with the ha profile, unless replicaCount says. */}}
{{- define "coldfront.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount -}}
{{- if eq .Values.profile "ha" }}3{{ else }}2{{ end -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The model's replica floor for the profile (deploy/overlays/cost|dev|ha). */}}
{{- define "coldfront.minReplicaCount" -}}
{{- $floors := dict "cost" 0 "dev" 1 "ha" 2 -}}
{{- if not (hasKey $floors .Values.profile) -}}
{{- fail (printf "profile: expected cost, dev or ha, got %q" .Values.profile) -}}
{{- end -}}
{{- get $floors .Values.profile -}}
{{- end -}}

{{/*
coldfront's config as YAML: .Values.config with its templates rendered, plus auth.apiKeys.file
when auth.existingSecret is set.
*/}}
{{- define "coldfront.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.auth.existingSecret -}}
{{- $_ := set $config "auth" (dict "apiKeys" (dict "file" (printf "/etc/coldfront/keys/%s" .Values.auth.secretKey))) -}}
{{- end -}}
{{- tpl (toYaml $config) . -}}
{{- end -}}

{{/* The config, rendered and parsed back, for the templates that read it. */}}
{{- define "coldfront.configValues" -}}
{{- include "coldfront.config" . | fromYaml | toJson -}}
{{- end -}}

{{/* The port of an address "host:port" from the config. */}}
{{- define "coldfront.port" -}}
{{- $port := regexFind "[0-9]+$" . -}}
{{- if not $port -}}{{- fail (printf "config: %q has no port" .) -}}{{- end -}}
{{- $port -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the preStop sleep, then shutdown.gracePeriod (coldfront's
duration syntax: 250ms, 30s, 1.5m, 1h; 30s when unset), then 10 s to exit. Past it the kubelet
sends SIGKILL and what is still held would get a reset instead of a 503.
*/}}
{{- define "coldfront.terminationGracePeriodSeconds" -}}
{{- $config := include "coldfront.configValues" . | fromJson -}}
{{- $grace := "30s" -}}
{{- with $config.shutdown -}}{{- with .gracePeriod -}}{{- $grace = toString . -}}{{- end -}}{{- end -}}
{{- $m := regexFind "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$" $grace -}}
{{- if not $m -}}
{{- fail (printf "config.shutdown.gracePeriod: expected a duration with a unit (250ms, 30s, 10m), got %q" $grace) -}}
{{- end -}}
{{- $unit := regexFind "(ms|s|m|h)$" $grace -}}
{{- $n := float64 (trimSuffix $unit $grace) -}}
{{- $seconds := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit -}}
{{- add (int .Values.shutdown.preStopSeconds) (mulf $n $seconds | ceil | int) 10 -}}
{{- end -}}

{{/* True when some target of the config wakes through the scale subresource. */}}
{{- define "coldfront.wakeScale" -}}
{{- $config := include "coldfront.configValues" . | fromJson -}}
{{- range $config.targets -}}{{- if and .wake (get .wake "scale") -}}true{{- end -}}{{- end -}}
{{- end -}}

{{- define "coldfront.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
