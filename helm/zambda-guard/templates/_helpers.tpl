{{/*
Helpers. Every template here takes the chart's root context (`.`). Another chart
that has zambda-guard as a dependency passes the subchart's own context:
`(index .Subcharts "zambda-guard")` — see README, "Adding the sidecar to your own chart".
*/}}

{{/* Chart name. */}}
{{- define "zambda-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every object name. */}}
{{- define "zambda-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name derived from the full name with a suffix, kept within 63 characters. */}}
{{- define "zambda-guard.suffixed" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "zambda-guard.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "zambda-guard.configMapName" -}}
{{- include "zambda-guard.suffixed" (list . "config") }}
{{- end }}

{{- define "zambda-guard.policiesConfigMapName" -}}
{{- .Values.policies.existingConfigMap | default (include "zambda-guard.suffixed" (list . "policies")) }}
{{- end }}

{{- define "zambda-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release. */}}
{{- define "zambda-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zambda-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "zambda-guard.labels" -}}
helm.sh/chart: {{ include "zambda-guard.chart" . }}
{{ include "zambda-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ include "zambda-guard.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zambda-guard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "zambda-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zambda-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images. */}}
{{- define "zambda-guard.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "zambda-guard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "zambda-guard.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "zambda-guard.functionImage" -}}
{{- $img := .Values.function.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else if $img.tag }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- else }}
{{- $img.repository }}
{{- end }}
{{- end }}

{{/* Mount points inside the zambda-guard container. */}}
{{- define "zambda-guard.configDir" -}}/etc/zambda-guard/config{{- end }}
{{- define "zambda-guard.policiesDir" -}}/etc/zambda-guard/policies{{- end }}
{{- define "zambda-guard.tlsDir" -}}/etc/zambda-guard/tls{{- end }}
{{- define "zambda-guard.upstreamCaDir" -}}/etc/zambda-guard/upstream-ca{{- end }}
{{- define "zambda-guard.syncDir" -}}/etc/zambda-guard/oystehr{{- end }}

{{/* Whether `zambda-guard sync` runs (sync.enabled): "sidecar", "cronjob" or "". */}}
{{- define "zambda-guard.syncMode" -}}
{{- $sync := .Values.sync | default dict }}
{{- if and $sync.enabled (ne .Values.mode "embedded") }}{{ $sync.mode | default "sidecar" }}{{- end }}
{{- end }}

{{/* Whether zambda-guard serves HTTPS from the Secret tls.secretName: "true" or "". */}}
{{- define "zambda-guard.tlsEnabled" -}}
{{- if (.Values.tls | default dict).enabled }}true{{- end }}
{{- end }}

{{/*
Where the upstream CA comes from: "secret", "configMap", or "" (none: the
system roots, or whatever config.upstream.ca_file names).
*/}}
{{- define "zambda-guard.upstreamCaSource" -}}
{{- $ca := .Values.upstreamCA | default dict }}
{{- if and $ca.secretName $ca.configMapName }}
{{- fail (printf "upstreamCA: set secretName (%s) or configMapName (%s), not both" $ca.secretName $ca.configMapName) }}
{{- else if $ca.secretName }}secret
{{- else if $ca.configMapName }}configMap
{{- end }}
{{- end }}

{{/* Ports, taken from config.listen and config.admin_listen ("host:port"). */}}
{{- define "zambda-guard.proxyPort" -}}
{{- regexFind "[0-9]+$" (dig "listen" "0.0.0.0:8080" .Values.config | toString) }}
{{- end }}

{{- define "zambda-guard.adminPort" -}}
{{- regexFind "[0-9]+$" (dig "admin_listen" "0.0.0.0:9901" .Values.config | toString) }}
{{- end }}

{{/* Whether the decision-only service runs (authz.enabled): "true" or "". */}}
{{- define "zambda-guard.authzEnabled" -}}
{{- if (.Values.authz | default dict).enabled }}true{{- end }}
{{- end }}

{{/* The decision service's port (container and Service). */}}
{{- define "zambda-guard.authzPort" -}}
{{- int .Values.authz.port }}
{{- end }}

{{/* The Service port: service.port, else 443 when zambda-guard serves HTTPS, else 80. */}}
{{- define "zambda-guard.servicePort" -}}
{{- if .Values.service.port }}
{{- int .Values.service.port }}
{{- else if include "zambda-guard.tlsEnabled" . }}
{{- 443 }}
{{- else }}
{{- 80 }}
{{- end }}
{{- end }}

{{/* The Service port's name and appProtocol: what the proxy port speaks. */}}
{{- define "zambda-guard.proxyScheme" -}}
{{- ternary "https" "http" (eq (include "zambda-guard.tlsEnabled" .) "true") }}
{{- end }}

{{/* The upstream zambda-guard forwards to in sidecar and embedded modes. */}}
{{- define "zambda-guard.localUpstream" -}}
{{- printf "127.0.0.1:%d" (int .Values.function.port) }}
{{- end }}

{{/*
The config.yaml zambda-guard reads: `config` values with `policies.dir` set to
the mounted directory, `upstream.address` set to the function on localhost
in sidecar and embedded modes, `tls` set to the mounted Secret's files with
tls.enabled, `upstream.ca_file` to the mounted CA with upstreamCA, and
`authz_listen` and `authz` with authz.enabled. Also checks what the schema
cannot.
*/}}
{{- define "zambda-guard.configYaml" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $policies := deepCopy (get $cfg "policies" | default dict) }}
{{- $_ := set $policies "dir" (include "zambda-guard.policiesDir" .) }}
{{- $_ := set $cfg "policies" $policies }}
{{- if include "zambda-guard.syncMode" . }}
{{- include "zambda-guard.checkSync" . }}
{{- $oystehr := deepCopy (get $cfg "oystehr" | default dict) }}
{{- $_ := set $oystehr "dir" (include "zambda-guard.syncDir" .) }}
{{- $_ := set $oystehr "admin_listen" (printf "0.0.0.0:%d" (int .Values.sync.adminPort)) }}
{{- $_ := set $cfg "oystehr" $oystehr }}
{{- $_ := set $policies "dir" (list (include "zambda-guard.policiesDir" .) (include "zambda-guard.syncDir" .)) }}
{{- else if get $cfg "oystehr" }}
{{- fail "config.oystehr configures `zambda-guard sync`, which runs only with sync.enabled (and not in mode=embedded): set sync.enabled=true or remove config.oystehr" }}
{{- end }}
{{- $upstream := deepCopy (get $cfg "upstream" | default dict) }}
{{- if eq .Values.mode "standalone" }}
{{- $address := get $upstream "address" | default "" }}
{{- if not $address }}
{{- fail "mode=standalone needs config.upstream.address: the backend's host:port" }}
{{- end }}
{{- if regexMatch "^(127\\.|localhost:|\\[::1\\]:)" $address }}
{{- fail (printf "mode=standalone: config.upstream.address %s is a loopback address, which nothing serves in a standalone pod; use mode=sidecar to put the function in the same pod" $address) }}
{{- end }}
{{- else }}
{{- $local := include "zambda-guard.localUpstream" . }}
{{- $address := get $upstream "address" | default $local }}
{{- if ne $address $local }}
{{- fail (printf "mode=%s: zambda-guard forwards to the function at %s (from function.port); remove config.upstream.address (%s)" .Values.mode $local $address) }}
{{- end }}
{{- $_ := set $upstream "address" $local }}
{{- $_ := set $cfg "upstream" $upstream }}
{{- end }}
{{- if include "zambda-guard.tlsEnabled" . }}
{{- if not .Values.tls.secretName }}
{{- fail "tls.enabled needs tls.secretName: the existing kubernetes.io/tls Secret (keys tls.crt and tls.key) to serve" }}
{{- end }}
{{- if get $cfg "tls" }}
{{- fail "tls.enabled points config.tls at the files of the Secret tls.secretName: remove config.tls" }}
{{- end }}
{{- $dir := include "zambda-guard.tlsDir" . }}
{{- $_ := set $cfg "tls" (dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir)) }}
{{- end }}
{{- if include "zambda-guard.upstreamCaSource" . }}
{{- if not (get $upstream "tls") }}
{{- fail "upstreamCA is the CA the upstream's certificate is verified against: it needs config.upstream.tls: true" }}
{{- end }}
{{- if get $upstream "ca_file" }}
{{- fail "upstreamCA points config.upstream.ca_file at the mounted CA: remove config.upstream.ca_file" }}
{{- end }}
{{- if get $upstream "insecure_skip_verify" }}
{{- fail "upstreamCA contradicts config.upstream.insecure_skip_verify: true (which skips every certificate check); remove one" }}
{{- end }}
{{- $_ := set $upstream "ca_file" (printf "%s/ca.crt" (include "zambda-guard.upstreamCaDir" .)) }}
{{- $_ := set $cfg "upstream" $upstream }}
{{- end }}
{{- if include "zambda-guard.authzEnabled" . }}
{{- include "zambda-guard.checkAuthz" . }}
{{- $listen := dig "listen" "0.0.0.0:8080" $cfg | toString }}
{{- $_ := set $cfg "authz_listen" (printf "%s:%s" (regexReplaceAll ":[0-9]+$" $listen "") (include "zambda-guard.authzPort" .)) }}
{{- $authz := dict "source" .Values.authz.source }}
{{- with .Values.authz.pathPrefix }}
{{- $_ := set $authz "path_prefix" . }}
{{- end }}
{{- $_ := set $cfg "authz" $authz }}
{{- end }}
{{- $declared := dict }}
{{- range .Values.hmacSecrets }}
{{- $_ := set $declared .env true }}
{{- end }}
{{- range $i, $issuer := (dig "auth" "issuers" list $cfg) }}
{{- with (get $issuer "hmac_secret_env") }}
{{- if not (hasKey $declared .) }}
{{- fail (printf "config.auth.issuers[%d].hmac_secret_env is %s, but no hmacSecrets entry has env: %s (name the Secret and key that hold it)" $i . .) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
What the schema cannot check about authz.enabled: a port of its own, a prefix
only where the product reads one, and a Service that stays inside the cluster.
The decision port answers "allowed" with identity headers to whoever asks, so
a client that reached it could learn what the front proxy would let through;
it is for the front proxy alone. Renders nothing.
*/}}
{{- define "zambda-guard.checkAuthz" -}}
{{- $port := include "zambda-guard.authzPort" . }}
{{- if or (eq $port (include "zambda-guard.proxyPort" .)) (eq $port (include "zambda-guard.adminPort" .)) }}
{{- fail (printf "authz.port %s is already the proxy port (config.listen) or the admin port (config.admin_listen); give the decision service a port of its own" $port) }}
{{- end }}
{{- if eq $port (include "zambda-guard.servicePort" .) }}
{{- fail (printf "authz.port %s is also the Service's proxy port (service.port); the Service needs a port number for each" $port) }}
{{- end }}
{{- if and .Values.authz.pathPrefix (ne .Values.authz.source "request") }}
{{- fail (printf "authz.pathPrefix applies only to authz.source=request (it is %s); remove authz.pathPrefix" .Values.authz.source) }}
{{- end }}
{{- if ne .Values.service.type "ClusterIP" }}
{{- fail (printf "authz.enabled puts the decision port on the Service, and service.type %s would open it outside the cluster; use service.type=ClusterIP (the front proxy calls it from inside)" .Values.service.type) }}
{{- end }}
{{- end }}

{{/*
What the schema cannot check about sync.enabled: the section it reads, the
Secret it takes credentials from, the CronJob's volume, and a port of its own.
Renders nothing.
*/}}
{{- define "zambda-guard.checkSync" -}}
{{- $oystehr := .Values.config.oystehr | default dict }}
{{- if not $oystehr.issuer }}
{{- fail "sync.enabled needs config.oystehr.issuer: the configured issuer of the project's tokens, written on its M2M clients and default role" }}
{{- end }}
{{- if not (or $oystehr.project_id .Values.config.project_id) }}
{{- fail "sync.enabled needs config.oystehr.project_id (or config.project_id): the Oystehr project to read" }}
{{- end }}
{{- if not .Values.sync.credentials.secretName }}
{{- fail "sync.enabled needs sync.credentials.secretName: the existing Secret holding the M2M client's id and secret" }}
{{- end }}
{{- $port := toString (int .Values.sync.adminPort) }}
{{- if or (eq $port (include "zambda-guard.proxyPort" .)) (eq $port (include "zambda-guard.adminPort" .)) }}
{{- fail (printf "sync.adminPort %s is already the proxy or the admin port; give the sync loop a port of its own" $port) }}
{{- end }}
{{- if eq (include "zambda-guard.syncMode" .) "cronjob" }}
{{- if ne .Values.mode "standalone" }}
{{- fail "sync.mode=cronjob is for mode=standalone (in sidecar mode every pod runs its own sync: use sync.mode=sidecar)" }}
{{- end }}
{{- if not .Values.sync.cronJob.claimName }}
{{- fail "sync.mode=cronjob needs sync.cronJob.claimName: an existing ReadWriteMany PersistentVolumeClaim the CronJob writes and the proxy pods read" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A sync container (`zambda-guard sync`), as one item of a `containers:` or
`initContainers:` list: `once` runs one sync and exits (the init container,
the CronJob), else the loop with its admin port and liveness probe. It
alone gets the M2M client's credentials. Takes (list root once).
*/}}
{{- define "zambda-guard.syncContainer" -}}
{{- $root := index . 0 }}
{{- $once := index . 1 }}
{{- $oystehr := $root.Values.config.oystehr | default dict }}
- name: {{ ternary "zambda-guard-sync-init" "zambda-guard-sync" $once }}
  image: {{ include "zambda-guard.image" $root | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    - sync
    - --config
    - {{ include "zambda-guard.configDir" $root }}/config.yaml
    {{- if $once }}
    - --once
    {{- end }}
  env:
    - name: {{ $oystehr.client_id_env | default "OYSTEHR_CLIENT_ID" }}
      valueFrom:
        secretKeyRef:
          name: {{ $root.Values.sync.credentials.secretName }}
          key: {{ $root.Values.sync.credentials.clientIdKey | quote }}
    - name: {{ $oystehr.client_secret_env | default "OYSTEHR_CLIENT_SECRET" }}
      valueFrom:
        secretKeyRef:
          name: {{ $root.Values.sync.credentials.secretName }}
          key: {{ $root.Values.sync.credentials.clientSecretKey | quote }}
  {{- if not $once }}
  ports:
    - name: sync-admin
      containerPort: {{ int $root.Values.sync.adminPort }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /healthz
      port: sync-admin
    {{- toYaml $root.Values.sync.liveness | nindent 4 }}
  {{- end }}
  {{- with $root.Values.sync.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: zambda-guard-config
      mountPath: {{ include "zambda-guard.configDir" $root }}
      readOnly: true
    # Read as well: the synced file is written only when the whole set loads.
    - name: zambda-guard-policies
      mountPath: {{ include "zambda-guard.policiesDir" $root }}
      readOnly: true
    - name: zambda-guard-oystehr
      mountPath: {{ include "zambda-guard.syncDir" $root }}
{{- end }}

{{/* Hash of the rendered config.yaml: rolls the pods when the config changes, and only then. */}}
{{- define "zambda-guard.configChecksum" -}}
{{- include "zambda-guard.configYaml" . | sha256sum }}
{{- end }}

{{/*
Shutdown timing (seconds). On pod deletion both containers' preStop hooks start
together:
  zambda-guard: preStop pause, then SIGTERM; it keeps serving for
                shutdown.grace_period_seconds, then drains in-flight requests
                for up to shutdown.drain_timeout_seconds.
  function:     preStop pause longer than all of that, then SIGTERM.
terminationGracePeriodSeconds covers the function's pause and its exit.
*/}}
{{- define "zambda-guard.proxyStopSeconds" -}}
{{- $grace := dig "shutdown" "grace_period_seconds" 5 .Values.config | int }}
{{- $drain := dig "shutdown" "drain_timeout_seconds" 25 .Values.config | int }}
{{- add (int .Values.shutdown.preStopSleepSeconds) $grace $drain }}
{{- end }}

{{- define "zambda-guard.functionPreStopSeconds" -}}
{{- $proxy := include "zambda-guard.proxyStopSeconds" . | int }}
{{- if .Values.function.preStopSleepSeconds }}
{{- $seconds := int .Values.function.preStopSleepSeconds }}
{{- if le $seconds $proxy }}
{{- fail (printf "function.preStopSleepSeconds (%d) must be longer than zambda-guard's shutdown (%d s: preStop + grace + drain), or the function stops while the proxy still drains" $seconds $proxy) }}
{{- end }}
{{- $seconds }}
{{- else }}
{{- add $proxy 2 }}
{{- end }}
{{- end }}

{{- define "zambda-guard.terminationGracePeriodSeconds" -}}
{{- $needed := 0 }}
{{- if eq .Values.mode "standalone" }}
{{- $needed = add (include "zambda-guard.proxyStopSeconds" . | int) 5 }}
{{- else }}
{{- $needed = add (include "zambda-guard.functionPreStopSeconds" . | int) (int .Values.function.shutdownSeconds) }}
{{- end }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- $given := int .Values.terminationGracePeriodSeconds }}
{{- if lt $given (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) is shorter than the shutdown it must cover (%d s); raise it or leave it empty to compute it" $given (int $needed)) }}
{{- end }}
{{- $given }}
{{- else }}
{{- $needed }}
{{- end }}
{{- end }}

{{/*
Pod annotations zambda-guard needs: the config checksum and, when enabled,
Prometheus scrape annotations. For a pod template's `metadata.annotations`.
*/}}
{{- define "zambda-guard.podAnnotations" -}}
checksum/zambda-guard-config: {{ include "zambda-guard.configChecksum" . }}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "zambda-guard.adminPort" . | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/*
The zambda-guard container, as one item of a `containers:` list. Forwards to
127.0.0.1:<function.port> (sidecar, embedded) or config.upstream.address
(standalone). Needs the volumes from "zambda-guard.volumes".
*/}}
{{- define "zambda-guard.container" -}}
- name: zambda-guard
  image: {{ include "zambda-guard.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - run
    - --config
    - {{ include "zambda-guard.configDir" . }}/config.yaml
  ports:
    - name: proxy
      containerPort: {{ include "zambda-guard.proxyPort" . }}
      protocol: TCP
    - name: admin
      containerPort: {{ include "zambda-guard.adminPort" . }}
      protocol: TCP
    {{- if include "zambda-guard.authzEnabled" . }}
    - name: authz
      containerPort: {{ include "zambda-guard.authzPort" . }}
      protocol: TCP
    {{- end }}
  {{- $otel := .Values.telemetry | default dict }}
  {{- if or .Values.hmacSecrets .Values.env .Values.extraEnv $otel.otlpEndpoint $otel.serviceName $otel.resourceAttributes }}
  env:
    {{- range .Values.hmacSecrets }}
    - name: {{ .env }}
      valueFrom:
        secretKeyRef:
          name: {{ .secretName }}
          key: {{ .key | quote }}
    {{- end }}
    {{- with $otel.otlpEndpoint }}
    - name: OTEL_EXPORTER_OTLP_ENDPOINT
      value: {{ . | quote }}
    {{- end }}
    {{- with $otel.serviceName }}
    - name: OTEL_SERVICE_NAME
      value: {{ . | quote }}
    {{- end }}
    {{- with $otel.resourceAttributes }}
    - name: OTEL_RESOURCE_ATTRIBUTES
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  {{- if gt (int .Values.shutdown.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ int .Values.shutdown.preStopSleepSeconds }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: zambda-guard-config
      mountPath: {{ include "zambda-guard.configDir" . }}
      readOnly: true
    - name: zambda-guard-policies
      mountPath: {{ include "zambda-guard.policiesDir" . }}
      readOnly: true
    {{- if include "zambda-guard.tlsEnabled" . }}
    - name: zambda-guard-tls
      mountPath: {{ include "zambda-guard.tlsDir" . }}
      readOnly: true
    {{- end }}
    {{- if include "zambda-guard.upstreamCaSource" . }}
    - name: zambda-guard-upstream-ca
      mountPath: {{ include "zambda-guard.upstreamCaDir" . }}
      readOnly: true
    {{- end }}
    {{- if include "zambda-guard.syncMode" . }}
    - name: zambda-guard-oystehr
      mountPath: {{ include "zambda-guard.syncDir" . }}
      readOnly: true
    {{- end }}
    - name: zambda-guard-tmp
      mountPath: /tmp
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The policies volume, as one item of a `volumes:` list: the policies ConfigMap,
or with policies.extraConfigMaps one projected volume of all of them (it
updates in place too). One directory either way.
*/}}
{{- define "zambda-guard.policiesVolume" -}}
- name: zambda-guard-policies
{{- with .Values.policies.extraConfigMaps }}
  projected:
    sources:
      - configMap:
          name: {{ include "zambda-guard.policiesConfigMapName" $ }}
      {{- range . }}
      - configMap:
          name: {{ . }}
      {{- end }}
{{- else }}
  configMap:
    name: {{ include "zambda-guard.policiesConfigMapName" . }}
{{- end }}
{{- end }}

{{/*
The volumes the zambda-guard container mounts, as items of a `volumes:` list.
Every one is mounted as a directory (never with subPath), so the kubelet's
`..data` symlink swap reaches zambda-guard's watches: policies reload in place,
and a renewed certificate in the tls.secretName Secret is served without a
restart. The upstream CA volume holds only the chosen key, as ca.crt.
*/}}
{{- define "zambda-guard.volumes" -}}
- name: zambda-guard-config
  configMap:
    name: {{ include "zambda-guard.configMapName" . }}
{{ include "zambda-guard.policiesVolume" . }}
{{- with include "zambda-guard.syncMode" . }}
- name: zambda-guard-oystehr
  {{- if eq . "cronjob" }}
  persistentVolumeClaim:
    claimName: {{ $.Values.sync.cronJob.claimName }}
    readOnly: true
  {{- else }}
  emptyDir:
    sizeLimit: {{ $.Values.sync.sizeLimit }}
  {{- end }}
{{- end }}
{{- if include "zambda-guard.tlsEnabled" . }}
- name: zambda-guard-tls
  secret:
    secretName: {{ required "tls.enabled needs tls.secretName: the existing kubernetes.io/tls Secret (keys tls.crt and tls.key) to serve" .Values.tls.secretName }}
{{- end }}
{{- with include "zambda-guard.upstreamCaSource" . }}
{{- $ca := $.Values.upstreamCA }}
- name: zambda-guard-upstream-ca
  {{- if eq . "secret" }}
  secret:
    secretName: {{ $ca.secretName }}
  {{- else }}
  configMap:
    name: {{ $ca.configMapName }}
  {{- end }}
    items:
      - key: {{ $ca.key | default "ca.crt" | quote }}
        path: ca.crt
{{- end }}
- name: zambda-guard-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end }}

{{/* PromQL label matchers selecting this release's series. */}}
{{- define "zambda-guard.promSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else if eq .Values.mode "embedded" }}
{{- printf "namespace=%q" .Release.Namespace }}
{{- else }}
{{- printf "namespace=%q,pod=~%q" .Release.Namespace (printf "%s-.+" (include "zambda-guard.fullname" .)) }}
{{- end }}
{{- end }}
