{{/* Names, labels, and the pieces every workload and RBAC variant shares (one definition each). */}}

{{- define "toolcatalog.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "toolcatalog.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "toolcatalog.labels" -}}
app.kubernetes.io/name: {{ include "toolcatalog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: toolcatalog
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "toolcatalog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "toolcatalog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "toolcatalog.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "toolcatalog.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "toolcatalog.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "toolcatalog.fullname" .)) .Values.webhook.certificate.secretName -}}
{{- end -}}

{{/*
The operator's namespaced rules: granted cluster-wide by the ClusterRole, or in each watched namespace
by a Role. The same rules as deploy/base/rbac.yaml (tests/e2e/test_deploy.py compares them).
*/}}
{{- define "toolcatalog.namespacedRules" -}}
# The resources it serves: watched, never written except through the status subresource.
- apiGroups: ["toolcatalog.dev"]
  resources: ["toolservers", "connectorconfigs", "toolallowlists"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["toolcatalog.dev"]
  resources: ["toolservers/status", "connectorconfigs/status", "toolallowlists/status"]
  verbs: ["patch"]
# ToolAllowlists' toolhive targets: MCPToolConfigs, never deleted (the garbage collector does).
- apiGroups: ["toolhive.stacklok.dev"]
  resources: ["mcptoolconfigs"]
  verbs: ["get", "create", "patch"]
# Cache ConfigMaps (deletion is left to the garbage collector), and CA bundles it watches (metadata only).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Credentials named by auth.*.secretKeyRef and tls.caBundle.secretKeyRef: read by name; watched for
# rotation as metadata only (never their data).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* Cluster-wide only, for kopf: CRDs installed or upgraded while it runs, namespace patterns. */}}
{{- define "toolcatalog.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}

{{- define "toolcatalog.args" -}}
- run
{{- if .Values.namespaces }}
{{- range .Values.namespaces }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
- --standalone
- --liveness=http://0.0.0.0:{{ .Values.probes.liveness.port }}/healthz
- --readiness=http://0.0.0.0:{{ .Values.probes.readiness.port }}/readyz
{{- if .Values.metrics.enabled }}
- --metrics-port={{ .Values.metrics.port }}
{{- end }}
- --log-format={{ .Values.logFormat }}
{{- if .Values.webhook.enabled }}
- --webhook-port={{ .Values.webhook.port }}
- --webhook-cert-dir=/etc/toolcatalog/webhook
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The operator's pod: the same for the Deployment and for each shard of the StatefulSet. */}}
{{- define "toolcatalog.podTemplate" -}}
metadata:
  labels:
    {{- include "toolcatalog.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "toolcatalog.serviceAccountName" . }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  containers:
    - name: operator
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "toolcatalog.args" . | nindent 8 }}
      ports:
        - name: healthz
          containerPort: {{ .Values.probes.liveness.port }}
          protocol: TCP
        - name: readyz
          containerPort: {{ .Values.probes.readiness.port }}
          protocol: TCP
        {{- if .Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
        {{- end }}
        {{- if .Values.webhook.enabled }}
        - name: webhook
          containerPort: {{ .Values.webhook.port }}
          protocol: TCP
        {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: healthz
        initialDelaySeconds: {{ .Values.probes.liveness.initialDelaySeconds }}
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: readyz
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
      env:
        - name: PYTHONUNBUFFERED
          value: "1"
        - name: PYTHONDONTWRITEBYTECODE
          value: "1"
        {{- if .Values.sharding.enabled }}
        - name: TOOLCATALOG_POD
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: TOOLCATALOG_POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if .Values.webhook.enabled }}
        - name: webhook-tls
          mountPath: /etc/toolcatalog/webhook
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.webhook.enabled }}
    - name: webhook-tls
      secret:
        secretName: {{ include "toolcatalog.webhookSecretName" . }}
        defaultMode: 0440
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
NetworkPolicy peers for a list of CIDRs; none: every address but link-local ones (cloud metadata
endpoints, which --egress-deny refuses too).
*/}}
{{- define "toolcatalog.networkPolicyBlocks" -}}
{{- if . }}
{{- range . }}
- ipBlock:
    cidr: {{ . | quote }}
{{- end }}
{{- else }}
- ipBlock:
    cidr: 0.0.0.0/0
    except: ["169.254.0.0/16"]
- ipBlock:
    cidr: ::/0
    except: ["fe80::/10"]
{{- end }}
{{- end -}}
