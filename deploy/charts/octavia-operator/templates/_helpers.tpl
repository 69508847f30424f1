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
# Exactly what the operator uses (tests/test_rbac.py compares these rules with the requests the
# operator made against a real API server during the test suite; nothing unused is granted).
# The OctaviaDeployment resources: watch them, read one, patch finalizers and kopf's annotations.
- apiGroups: ["octavia-operator.dev"]
  resources: ["octaviadeployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["octavia-operator.dev"]
  resources: ["octaviadeployments/status"]
  verbs: ["patch"]
# Children carry an owner reference with blockOwnerDeletion: with the admission plugin
# OwnerReferencesPermissionEnforcement (OpenShift, hardened clusters) that needs update on finalizers.
- apiGroups: ["octavia-operator.dev"]
  resources: ["octaviadeployments/finalizers"]
  verbs: ["update"]
# Children, written by server-side apply (create + patch) and watched (a deleted or edited child is
# restored): the configuration and credentials (ConfigMaps; Secrets, including the user's clouds.yaml
# and CA Secrets, which are only read), the API's Service, the components' ServiceAccounts, the
# Octavia Deployments, the host agent's DaemonSet and the API's PodDisruptionBudget. Never deleted.
- apiGroups: [""]
  resources: ["configmaps", "secrets", "services", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments", "daemonsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# spec.api.expose: the Ingress, the HTTPRoute or the LoadBalancer Service in front of the API; the
# one of a previous type is deleted when the type changes.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["delete"]
# The embedded MariaDB/RabbitMQ: deleted only to change the storage of a claim that never bound.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "delete"]
# The db-sync Job: a failed one is replaced, earlier ones are removed once a migration succeeded.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods: the host agents' readiness, the db-sync pod and the tail of its log (listed when needed,
# never watched: pod churn must not turn into reconciles).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Events: posted on the resources (kopf and the operator); read to say why a claim does not bind.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end }}

{{/* Cluster-scoped rules, needed in both modes. */}}
{{- define "octavia-operator.clusterRules" -}}
# Nodes: the operator creates a Neutron port per health-manager node and reads the node's
# name/annotations to find its Neutron binding:host_id; it patches one label per deployment
# (<name>.<namespace>.octavia-operator.dev/o-hm0=ready) where the host agent has plumbed o-hm0,
# so that the worker, health manager and housekeeping run only there.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch", "patch"]
# kopf (framework): notices when CRDs appear or disappear.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if not .Values.watchNamespace }}
# kopf (framework): follows namespaces appearing and disappearing in --all-namespaces mode.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
