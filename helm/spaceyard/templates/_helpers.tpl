{{/* Names and labels. */}}
{{- define "spaceyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spaceyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spaceyard
{{- end -}}

{{/* Selector labels of one component: include "spaceyard.selector" (list . "controlplane") */}}
{{- define "spaceyard.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "spaceyard.componentLabels" -}}
{{ include "spaceyard.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "spaceyard.image" -}}
{{- $img := index . 0 -}}{{- $root := index . 1 -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{- define "spaceyard.pullSecrets" -}}
imagePullSecrets:
{{- range .Values.images.pullSecrets }}
  - name: {{ . }}
{{- end }}
{{- end -}}

{{- define "spaceyard.secretName" -}}{{ include "spaceyard.fullname" . }}{{- end -}}
{{- define "spaceyard.gpuAgentSecretName" -}}{{ include "spaceyard.fullname" . }}-gpu-agent{{- end -}}
{{- define "spaceyard.metricsSecretName" -}}{{ include "spaceyard.fullname" . }}-metrics{{- end -}}

{{- define "spaceyard.redisEnabled" -}}{{ if not .Values.redis.external.url }}true{{ end }}{{- end -}}
{{- define "spaceyard.postgresqlEnabled" -}}{{ if not .Values.postgresql.external.url }}true{{ end }}{{- end -}}
{{- define "spaceyard.registryEnabled" -}}{{ if not .Values.registry.external.address }}true{{ end }}{{- end -}}

{{/* The address images are pushed to and pulled from (SPACEYARD_REGISTRY). */}}
{{- define "spaceyard.registry" -}}
{{- if .Values.registry.external.address -}}
{{- .Values.registry.external.address -}}
{{- else -}}
{{- printf "localhost:%v" .Values.registry.nodePort -}}
{{- end -}}
{{- end -}}

{{- define "spaceyard.scheme" -}}{{ if .Values.ingress.tls.secretName }}https{{ else }}http{{ end }}{{- end -}}

{{- define "spaceyard.publicUrl" -}}
{{- if .Values.domains.publicUrl -}}
{{- .Values.domains.publicUrl | trimSuffix "/" -}}
{{- else -}}
{{- printf "%s://%s" (include "spaceyard.scheme" .) .Values.domains.dashboard -}}
{{- end -}}
{{- end -}}

{{/* GPU pools: those with a gpuResource. Renders a JSON list. */}}
{{- define "spaceyard.gpuPools" -}}
{{- $pools := list -}}
{{- range .Values.nodePools -}}
{{- if .gpuResource -}}{{- $pools = append $pools . -}}{{- end -}}
{{- end -}}
{{- toJson $pools -}}
{{- end -}}

{{/* Label values every Space pool uses, by label key: {"spaceyard.dev/pool": ["cpu", "t4"]}. */}}
{{- define "spaceyard.poolLabelValues" -}}
{{- $byKey := dict -}}
{{- range .Values.nodePools -}}
{{- range $k, $v := .nodeSelector -}}
{{- $_ := set $byKey $k (append (get $byKey $k | default list) $v | uniq) -}}
{{- end -}}
{{- end -}}
{{- toJson $byKey -}}
{{- end -}}

{{/*
Cross-field checks values.schema.json cannot express. Each failure names the offending value.
Mirrors controlplane/tiers.py (pool serves unknown tier, duplicate names) and adds what a
cluster needs: every tier has exactly one pool, GPU tiers run on GPU pools, builds stay off pools.
*/}}
{{- define "spaceyard.validate" -}}
{{- $tierNames := list -}}
{{- $gpuTiers := list -}}
{{- range .Values.tiers -}}
{{- if has .name $tierNames -}}
{{- fail (printf "tiers: tier %q is listed twice; tier names must be unique" .name) -}}
{{- end -}}
{{- $tierNames = append $tierNames .name -}}
{{- if gt (int (default 0 .gpuCount)) 0 -}}{{- $gpuTiers = append $gpuTiers .name -}}{{- end -}}
{{- end -}}
{{- $servedBy := dict -}}
{{- $poolNames := list -}}
{{- range .Values.nodePools -}}
{{- $pool := . -}}
{{- if has .name $poolNames -}}
{{- fail (printf "nodePools: pool %q is listed twice; pool names must be unique" .name) -}}
{{- end -}}
{{- $poolNames = append $poolNames .name -}}
{{- range .tiers -}}
{{- if not (has . $tierNames) -}}
{{- fail (printf "nodePools[%s].tiers: tier %q is not in the tiers catalog (known tiers: %s)" $pool.name . (join ", " $tierNames)) -}}
{{- end -}}
{{- if hasKey $servedBy . -}}
{{- fail (printf "nodePools[%s].tiers: tier %q is already served by pool %q; a tier runs on exactly one pool" $pool.name . (get $servedBy .)) -}}
{{- end -}}
{{- $_ := set $servedBy . $pool.name -}}
{{- if and (has . $gpuTiers) (not $pool.gpuResource) -}}
{{- fail (printf "nodePools[%s]: serves GPU tier %q but sets no gpuResource (e.g. nvidia.com/gpu)" $pool.name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $tierNames -}}
{{- if not (hasKey $servedBy .) -}}
{{- fail (printf "tiers: tier %q is not served by any node pool; add it to a nodePools[].tiers list or remove it from tiers" .) -}}
{{- end -}}
{{- end -}}
{{- $poolLabels := include "spaceyard.poolLabelValues" . | fromJson -}}
{{- if .Values.builder.avoidSpacePools -}}
{{- range $k, $v := .Values.builder.nodeSelector -}}
{{- if has $v (get $poolLabels $k | default list) -}}
{{- fail (printf "builder.nodeSelector: %s=%s selects a Space node pool; builds must run on their own nodes (or set builder.avoidSpacePools: false on a one-node cluster)" $k $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "spaceyard.validateBuilder" . -}}
{{- end -}}

{{- define "spaceyard.validateBuilder" -}}
{{- if and (eq .Values.builder.engine "node") (ne .Values.builder.baseImageSource "debootstrap") (not .Values.builder.nodeEngine.groupId) -}}
{{- fail "builder.nodeEngine.groupId: the worker runs as uid 10001 and reaches the node's Docker socket only through its group; set the gid of the socket (e.g. the node's docker group)" -}}
{{- end -}}
{{- if and .Values.builder.dind.cache.persistence (gt (int .Values.builder.replicas) 1) -}}
{{- fail "builder.dind.cache.persistence: a persistent build cache is one ReadWriteOnce volume; set builder.replicas to 1 or turn persistence off" -}}
{{- end -}}
{{- end -}}

{{/* The tier catalog in the format controlplane/tiers.py reads (SPACEYARD_TIERS_FILE). */}}
{{- define "spaceyard.catalog" -}}
{{- $tiers := list -}}
{{- range .Values.tiers -}}
{{- $t := dict "name" .name "pretty_name" .prettyName "vcpu" .vcpu "memory_gb" .memoryGb "price_per_hour" .pricePerHour -}}
{{- if hasKey . "gpuModel" }}{{ $_ := set $t "gpu_model" .gpuModel }}{{ end -}}
{{- if hasKey . "gpuCount" }}{{ $_ := set $t "gpu_count" (int .gpuCount) }}{{ end -}}
{{- if hasKey . "gpuMemoryGb" }}{{ $_ := set $t "gpu_memory_gb" .gpuMemoryGb }}{{ end -}}
{{- $tiers = append $tiers $t -}}
{{- end -}}
{{- $pools := list -}}
{{- range .Values.nodePools -}}
{{- $p := dict "name" .name "tiers" .tiers "node_selector" .nodeSelector "capacity" (int (default 1 .capacity)) -}}
{{- if hasKey . "capacity" }}{{ $_ := set $p "capacity" (int .capacity) }}{{ end -}}
{{- with .tolerations }}{{ $_ := set $p "tolerations" . }}{{ end -}}
{{- with .gpuResource }}{{ $_ := set $p "gpu_resource" . }}{{ end -}}
{{- $pools = append $pools $p -}}
{{- end -}}
{{- toYaml (dict "tiers" $tiers "pools" $pools) -}}
{{- end -}}

{{/*
The "data" volume of a component (list $ component [claimName]): its claim, a hostPath directory or an
emptyDir, as storage.volumes says. StatefulSets pass no claim: in claim mode their volumeClaimTemplate is it.
*/}}
{{- define "spaceyard.dataVolume" -}}
{{- $root := index . 0 -}}
{{- $mode := $root.Values.storage.volumes -}}
{{- if eq $mode "hostPath" -}}
- name: data
  {{- /* One directory per release and component: two releases on one node must not share data. */}}
  {{- $dir := printf "%s/%s-%s/%s" (trimSuffix "/" $root.Values.storage.hostPath) $root.Release.Namespace (include "spaceyard.fullname" $root) (index . 1) }}
  hostPath: {path: {{ $dir | quote }}, type: DirectoryOrCreate}
{{- else if eq $mode "emptyDir" -}}
- name: data
  emptyDir: {}
{{- else if gt (len .) 2 -}}
- name: data
  persistentVolumeClaim: {claimName: {{ index . 2 }}}
{{- end -}}
{{- end -}}

{{/*
With hostPath volumes (list $ image uid): the kubelet creates the directory root-owned and fsGroup does not
apply to hostPath, so an init container hands it to the app's user; CHOWN is the one capability it keeps.
*/}}
{{- define "spaceyard.dataVolumeOwner" -}}
{{- if eq (index . 0).Values.storage.volumes "hostPath" -}}
initContainers:
  - name: data-owner
    image: {{ index . 1 }}
    command: [chown, {{ printf "%v:%v" (index . 2) (index . 2) | quote }}, /data]
    securityContext:
      runAsUser: 0
      runAsNonRoot: false
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL], add: [CHOWN]}
    resources:
      requests: {cpu: 10m, memory: 16Mi}
      limits: {memory: 64Mi}
    volumeMounts:
      - {name: data, mountPath: /data}
{{- end -}}
{{- end -}}
