{{/* Names, labels and the pieces every patchgate container shares. */}}

{{- define "patchgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "patchgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "root" $ "component" "worker") */}}
{{- define "patchgate.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "patchgate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "patchgate.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "patchgate.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "patchgate.kafkaSecret" -}}
{{ .Values.kafka.config.existingSecret | default (printf "%s-kafka" (include "patchgate.fullname" .)) }}
{{- end -}}

{{- define "patchgate.hasKafkaConfig" -}}
{{- if or .Values.kafka.config.existingSecret .Values.kafka.config.properties -}}true{{- end -}}
{{- end -}}

{{/* kafka.metadataTopicMode, checked: shared or per-tenant (PATCHGATE_METADATA_TOPIC_MODE) */}}
{{- define "patchgate.metadataTopicMode" -}}
{{- $mode := .Values.kafka.metadataTopicMode -}}
{{- if not (has $mode (list "shared" "per-tenant")) -}}
{{- fail (printf "kafka.metadataTopicMode must be shared or per-tenant, got %q" (toString $mode)) -}}
{{- end -}}
{{- if hasKey .Values.extraEnv "PATCHGATE_METADATA_TOPIC_MODE" -}}
{{- fail "set kafka.metadataTopicMode, not extraEnv.PATCHGATE_METADATA_TOPIC_MODE: the KEDA trigger and the edge example follow the value" -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/* The one tenant the edge example's connectors name (per-tenant topic mode), checked like the edge does. */}}
{{- define "patchgate.edgeTenant" -}}
{{- $config := fromToml .Values.edgeExample.config -}}
{{- if hasKey $config "Error" -}}
{{- fail (printf "edgeExample.config is not TOML: %s" $config.Error) -}}
{{- end -}}
{{- $tenants := list -}}
{{- range $config.connector | default list -}}
{{- $tenants = append $tenants (toString .tenant_id) -}}
{{- end -}}
{{- $tenants = $tenants | uniq | sortAlpha -}}
{{- if ne (len $tenants) 1 -}}
{{- fail (printf "kafka.metadataTopicMode=per-tenant: an edge serves one tenant, edgeExample.config's connectors name %d (%s)" (len $tenants) (join ", " $tenants | default "none")) -}}
{{- end -}}
{{- $tenant := first $tenants -}}
{{- if not (regexMatch "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$" $tenant) -}}
{{- fail (printf "kafka.metadataTopicMode=per-tenant: edgeExample.config's tenant_id %q is no tenant id the workers admit" $tenant) -}}
{{- end -}}
{{- $tenant -}}
{{- end -}}

{{/* The environment every component reads (processors.settings, edge.settings), as a container's env
list; the components that use Redis add patchgate.redisEnv (the edge does not: it gets no Redis URL). */}}
{{- define "patchgate.env" -}}
- name: PATCHGATE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if .Values.kafka.bootstrap }}
- name: PATCHGATE_KAFKA_BOOTSTRAP
  value: {{ .Values.kafka.bootstrap | quote }}
{{- end }}
{{- if include "patchgate.hasKafkaConfig" . }}
- name: PATCHGATE_KAFKA_CONFIG
  value: /etc/patchgate/kafka/client.properties
{{- end }}
- name: PATCHGATE_TOPIC_METADATA
  value: {{ .Values.kafka.topics.metadata | quote }}
- name: PATCHGATE_TOPIC_VERDICTS
  value: {{ .Values.kafka.topics.verdicts | quote }}
- name: PATCHGATE_TOPIC_NOTIFICATIONS
  value: {{ .Values.kafka.topics.notifications | quote }}
- name: PATCHGATE_TOPIC_DEADLETTER
  value: {{ .Values.kafka.topics.deadletter | quote }}
- name: PATCHGATE_TOPIC_COMMANDS
  value: {{ .Values.kafka.topics.commands | quote }}
- name: PATCHGATE_METADATA_TOPIC_MODE
  value: {{ include "patchgate.metadataTopicMode" . | quote }}
- name: PATCHGATE_TOPIC_REPLICATION_FACTOR
  value: {{ .Values.kafka.topics.replicationFactor | quote }}
- name: PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS
  value: {{ .Values.kafka.topics.minInsyncReplicas | quote }}
{{- if .Values.policy.enabled }}
- name: PATCHGATE_POLICY_FILE
  value: {{ printf "%s/policy.toml" .Values.policy.mountPath | quote }}
{{- if .Values.policy.catalog }}
- name: PATCHGATE_CATALOG_FILE
  value: {{ printf "%s/exchange-builds.csv" .Values.policy.mountPath | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* volumeMounts of the shared files (Kafka properties, policy) and a writable /tmp */}}
{{- define "patchgate.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "patchgate.hasKafkaConfig" . }}
- name: kafka-config
  mountPath: /etc/patchgate/kafka
  readOnly: true
{{- end }}
{{- if .Values.policy.enabled }}
- name: policy
  mountPath: {{ .Values.policy.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "patchgate.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if include "patchgate.hasKafkaConfig" . }}
- name: kafka-config
  secret:
    secretName: {{ include "patchgate.kafkaSecret" . }}
    defaultMode: 0440
{{- end }}
{{- if .Values.policy.enabled }}
- name: policy
  configMap:
    name: {{ include "patchgate.fullname" . }}-policy
{{- end }}
{{- end -}}

{{/* The Redis pieces of the components that use Redis (worker, API, notifier; not the edge): the URL,
and the CA and client certificate (redis.caSecret, redis.clientCertSecret) as files in one folder. */}}
{{- define "patchgate.redisTlsDir" -}}/etc/patchgate/redis-tls{{- end -}}

{{/* the URL's query parameters naming the mounted files, the file each names, the value mounting it */}}
{{- define "patchgate.redisTlsFiles" -}}
- {param: ssl_ca_certs, file: ca.crt, source: caSecret}
- {param: ssl_certfile, file: tls.crt, source: clientCertSecret}
- {param: ssl_keyfile, file: tls.key, source: clientCertSecret}
{{- end -}}

{{/* An inline redis.url must use the mounted files over TLS, and name no mount that is absent. The
query is read as processors.state.urls reads it (last value wins; a %2F is a slash). No message shows
the URL: it may hold a password. With redis.existingSecret the chart cannot see the URL (NOTES say so). */}}
{{- define "patchgate.checkRedisTls" -}}
{{- if not .Values.redis.existingSecret -}}
{{- $url := toString .Values.redis.url -}}
{{- $scheme := regexFind "^[A-Za-z][A-Za-z0-9+.-]*://" $url | trimSuffix "://" -}}
{{- $query := dict -}}
{{- range splitList "&" (regexFind "[?][^#]*" $url | trimPrefix "?") -}}
{{- $pair := splitn "=" 2 . -}}
{{- $_ := set $query $pair._0 ($pair._1 | default "" | replace "%2F" "/" | replace "%2f" "/") -}}
{{- end -}}
{{- range fromYamlArray (include "patchgate.redisTlsFiles" .) -}}
{{- $path := printf "%s/%s" (include "patchgate.redisTlsDir" $) .file -}}
{{- $given := get $query .param -}}
{{- if index $.Values.redis .source -}}
{{- if not (has $scheme (list "rediss" "rediss+cluster" "rediss+sentinel")) -}}
{{- fail (printf "redis.%s is set, so redis.url must use TLS (rediss://, rediss+cluster:// or rediss+sentinel://), got %s" .source (ternary (printf "%s://" $scheme) "no scheme" (ne $scheme ""))) -}}
{{- end -}}
{{- if ne $given $path -}}
{{- fail (printf "redis.%s is set, so redis.url must carry %s=%s (where the chart mounts it), got %s" .source .param $path (ternary (printf "%s=%s" .param $given) (printf "no %s" .param) (hasKey $query .param))) -}}
{{- end -}}
{{- else if eq $given $path -}}
{{- fail (printf "redis.url names %s=%s, but redis.%s is empty: the chart mounts nothing there" .param $path .source) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "patchgate.redisEnv" -}}
{{- include "patchgate.checkRedisTls" . -}}
{{- if .Values.redis.existingSecret }}
- name: PATCHGATE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.key }}
{{- else }}
- name: PATCHGATE_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- end -}}

{{- define "patchgate.redisVolumeMounts" -}}
{{- if or .Values.redis.caSecret .Values.redis.clientCertSecret -}}
- name: redis-tls
  mountPath: {{ include "patchgate.redisTlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* one projected volume: the CA and the client pair may come from different Secrets, or one (cert-manager's) */}}
{{- define "patchgate.redisVolumes" -}}
{{- if or .Values.redis.caSecret .Values.redis.clientCertSecret -}}
- name: redis-tls
  projected:
    defaultMode: 0440
    sources:
{{- with .Values.redis.caSecret }}
      - secret:
          name: {{ . }}
          items:
            - {key: {{ required "redis.caKey: the key of redis.caSecret holding the CA" $.Values.redis.caKey }}, path: ca.crt}
{{- end }}
{{- with .Values.redis.clientCertSecret }}
      - secret:
          name: {{ . }}
          items:
            - {key: tls.crt, path: tls.crt}
            - {key: tls.key, path: tls.key}
{{- end }}
{{- end }}
{{- end -}}

{{/* liveness and readiness probes on a named port */}}
{{- define "patchgate.probes" -}}
startupProbe:
  httpGet: {path: /livez, port: {{ . }}}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /livez, port: {{ . }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ . }}}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/* egress every component needs: DNS, Kafka, Redis */}}
{{- /* Egress of a component: DNS, Kafka, Redis when "redis" is true (the edge never reads Redis), the
token endpoint. Called with (dict "root" $ "redis" bool). */ -}}
{{- define "patchgate.egress" -}}
{{- $values := .root.Values -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
- ports:
{{- range (ternary (concat $values.kafka.ports $values.redis.ports) $values.kafka.ports .redis) }}
    - {port: {{ . }}, protocol: TCP}
{{- end }}
{{- with $values.networkPolicy.egressCIDRs }}
  to:
{{- range . }}
    - ipBlock: {cidr: {{ . | quote }}}
{{- end }}
{{- end }}
{{- with $values.kafka.tokenEndpointPorts }}
- ports:
{{- range . }}
    - {port: {{ . }}, protocol: TCP}
{{- end }}
{{- end }}
{{- end -}}
