{{/* Name of the chart, overridable. */}}
{{- define "octavia-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name, else "<release>-<chart>". */}}
{{- define "octavia-operator.fullname" -}}
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

{{- define "octavia-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "octavia-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "octavia-operator.labels" -}}
{{ include "octavia-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: octavia-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "octavia-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "octavia-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "octavia-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Rules for the namespaced resources the operator manages (a ClusterRole when watching all
namespaces, a Role in watchNamespace otherwise). docs/install.md explains each rule.
*/}}
{{- define "octavia-operator.namespacedRules" -}}
# The OctaviaDeployment resources: watch them, patch finalizers/annotations (kopf keeps its
# handler progress in annotations) and write their status.
- apiGroups: ["octavia-operator.dev"]
  resources: ["octaviadeployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["octavia-operator.dev"]
  resources: ["octaviadeployments/status"]
  verbs: ["get", "patch"]
# Owner references with blockOwnerDeletion on the children need update on the finalizers
# subresource (OwnerReferencesPermissionEnforcement).
- apiGroups: ["octavia-operator.dev"]
  resources: ["octaviadeployments/finalizers"]
  verbs: ["update"]
# What it creates for each OctaviaDeployment (it creates, merge-patches and deletes; never
# replaces: no "update"): configuration and credentials (ConfigMaps,
# Secrets: octavia.conf, certificates, generated passwords; it also reads the user's
# clouds.yaml Secret), Services, the components' ServiceAccounts, the embedded databases' PVCs.
- apiGroups: [""]
  resources: ["secrets", "configmaps", "services", "serviceaccounts", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The Octavia components (Deployments), the embedded MariaDB/RabbitMQ (StatefulSets), the
# host agent (DaemonSet).
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The database migration Job (octavia-db-manage upgrade head).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The API's PodDisruptionBudget.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Read-only: find the db-sync Job's pod and read the tail of its log for the status message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# kopf posts Kubernetes Events about handler progress and errors on the resources.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and .Values.peering.enabled .Values.watchNamespace }}
# kopf peering (leader election) in the watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Cluster-scoped rules, needed in both modes. */}}
{{- define "octavia-operator.clusterRules" -}}
# Nodes: the operator creates a Neutron port per health-manager node and reads the node's
# name/annotations to find its Neutron binding:host_id; it patches one label per deployment
# (<name>.<namespace>.octavia-operator.dev/o-hm0=ready) where the host agent has plumbed o-hm0,
# so that the worker, health manager and housekeeping run only there.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch", "patch"]
# kopf (framework): notices when CRDs appear or disappear.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if not .Values.watchNamespace }}
# kopf (framework): follows namespaces appearing and disappearing in --all-namespaces mode.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- if .Values.peering.enabled }}
# kopf peering (leader election) across the cluster.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
{{- end }}
